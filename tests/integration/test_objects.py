"""Server-side copies of model data and validation input into the publishing region (moto S3).

``moto_aws`` includes the sandbox's S3 extension, so copies honour ``x-amz-copy-source-if-match``
as S3 does and a changed source fails the copy itself, not only the transfer's HeadObject.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from tests.fixtures.moto_world import create_bucket
from tests.fixtures.releases import PUBLISHING_BUCKET, PUBLISHING_REGION, SOURCE_REGION

from mlpublish import objects
from mlpublish.errors import ArtifactCopyFailed, SourceChanged
from mlpublish.objects import SOURCE_ETAG, SOURCE_URI, copy_objects
from mlpublish.state import PinnedObject

pytestmark = pytest.mark.integration

SOURCE_BUCKET = "acme-ml-artifacts"
MiB = 1024 * 1024


@pytest.fixture
def source_s3(moto_aws: None) -> Any:
    s3 = boto3.client("s3", region_name=SOURCE_REGION)
    create_bucket(s3, SOURCE_BUCKET, SOURCE_REGION)
    return s3


@pytest.fixture
def destination_s3(moto_aws: None) -> Any:
    return boto3.client("s3", region_name=PUBLISHING_REGION)


def upload(s3: Any, key: str, body: bytes) -> PinnedObject:
    """Upload a source object and pin it as ResolveRelease would."""
    s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=body)
    head = s3.head_object(Bucket=SOURCE_BUCKET, Key=key)
    etag = head["ETag"].strip('"')
    return PinnedObject(
        role="model_data",
        container="inference",
        source_bucket=SOURCE_BUCKET,
        source_key=key,
        etag=etag,
        size=head["ContentLength"],
        destination_bucket=PUBLISHING_BUCKET,
        destination_key=f"artifacts/acme-sentiment/1.2.0/inference/{etag.replace('-', '_')}/{key.rsplit('/', 1)[-1]}",
    )


def copy(source_s3: Any, destination_s3: Any, *items: PinnedObject) -> list[Any]:
    return copy_objects(source_s3, destination_s3, list(items), region=PUBLISHING_REGION)


def test_given_no_publishing_bucket_when_copying_then_it_is_created_private_tls_only_encrypted_and_self_cleaning(
    source_s3: Any, destination_s3: Any
) -> None:
    item = upload(source_s3, "sentiment/model.tar.gz", b"weights")

    copy(source_s3, destination_s3, item)

    location = destination_s3.get_bucket_location(Bucket=PUBLISHING_BUCKET)["LocationConstraint"]
    assert location == PUBLISHING_REGION
    block = destination_s3.get_public_access_block(Bucket=PUBLISHING_BUCKET)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    [rule] = destination_s3.get_bucket_encryption(Bucket=PUBLISHING_BUCKET)["ServerSideEncryptionConfiguration"][
        "Rules"
    ]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert destination_s3.get_bucket_tagging(Bucket=PUBLISHING_BUCKET)["TagSet"] == [
        {"Key": "managed-by", "Value": "mlpublish"}
    ]
    [lifecycle] = destination_s3.get_bucket_lifecycle_configuration(Bucket=PUBLISHING_BUCKET)["Rules"]
    assert lifecycle["Status"] == "Enabled"
    assert lifecycle["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert lifecycle["Filter"] == {"Prefix": ""}  # every key
    assert bucket_policy(destination_s3)["Statement"] == [
        {
            "Sid": "mlpublish-deny-insecure-transport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{PUBLISHING_BUCKET}", f"arn:aws:s3:::{PUBLISHING_BUCKET}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]


def bucket_policy(s3: Any) -> dict[str, Any]:
    return dict(json.loads(s3.get_bucket_policy(Bucket=PUBLISHING_BUCKET)["Policy"]))


def test_given_a_policy_the_seller_added_to_our_bucket_when_copying_twice_then_it_is_kept_with_one_tls_only_statement(
    source_s3: Any, destination_s3: Any
) -> None:
    item = upload(source_s3, "sentiment/model.tar.gz", b"weights")
    copy(source_s3, destination_s3, item)
    theirs = {
        "Sid": "ReadForAudit",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{PUBLISHING_BUCKET}/*",
    }
    policy = bucket_policy(destination_s3)
    destination_s3.put_bucket_policy(
        Bucket=PUBLISHING_BUCKET, Policy=json.dumps({**policy, "Statement": [theirs, *policy["Statement"]]})
    )

    copy(source_s3, destination_s3, item)
    copy(source_s3, destination_s3, upload(source_s3, "sentiment/other.tar.gz", b"more weights"))

    statements = bucket_policy(destination_s3)["Statement"]
    assert [statement["Sid"] for statement in statements] == ["ReadForAudit", "mlpublish-deny-insecure-transport"]
    assert statements[0] == theirs


def test_given_a_bucket_we_created_whose_set_up_was_cut_short_when_copying_then_the_set_up_is_completed(
    source_s3: Any, destination_s3: Any
) -> None:
    # As after a Lambda timeout between CreateBucket (+ its tag) and the rest of the set-up.
    create_bucket(destination_s3, PUBLISHING_BUCKET, PUBLISHING_REGION)
    destination_s3.put_bucket_tagging(Bucket=PUBLISHING_BUCKET, Tagging={"TagSet": [objects.MANAGED_BY]})

    copy(source_s3, destination_s3, upload(source_s3, "sentiment/model.tar.gz", b"weights"))

    assert destination_s3.get_public_access_block(Bucket=PUBLISHING_BUCKET)["PublicAccessBlockConfiguration"][
        "BlockPublicPolicy"
    ]
    [lifecycle] = destination_s3.get_bucket_lifecycle_configuration(Bucket=PUBLISHING_BUCKET)["Rules"]
    assert lifecycle["ID"] == "abort-incomplete-multipart-uploads"
    assert bucket_policy(destination_s3)["Statement"][0]["Sid"] == "mlpublish-deny-insecure-transport"


def test_given_a_publishing_bucket_the_seller_made_when_copying_then_its_configuration_is_left_alone(
    source_s3: Any, destination_s3: Any
) -> None:
    create_bucket(destination_s3, PUBLISHING_BUCKET, PUBLISHING_REGION)
    rules = [{"ID": "sellers-own", "Status": "Enabled", "Filter": {"Prefix": "old/"}, "Expiration": {"Days": 30}}]
    destination_s3.put_bucket_lifecycle_configuration(Bucket=PUBLISHING_BUCKET, LifecycleConfiguration={"Rules": rules})

    [copied] = copy(source_s3, destination_s3, upload(source_s3, "sentiment/model.tar.gz", b"weights"))

    assert copied.copied
    [lifecycle] = destination_s3.get_bucket_lifecycle_configuration(Bucket=PUBLISHING_BUCKET)["Rules"]
    assert lifecycle["ID"] == "sellers-own"
    with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
        destination_s3.get_bucket_policy(Bucket=PUBLISHING_BUCKET)


def test_given_a_pinned_object_when_copied_then_the_bytes_are_identical_and_the_source_is_recorded(
    source_s3: Any, destination_s3: Any
) -> None:
    body = os.urandom(256 * 1024)
    item = upload(source_s3, "sentiment/1.2.0/model.tar.gz", body)

    [result] = copy(source_s3, destination_s3, item)

    assert (result.copied, result.uri, result.etag, result.size) == (True, item.destination_uri, item.etag, len(body))
    copied = destination_s3.get_object(Bucket=item.destination_bucket, Key=item.destination_key)
    assert copied["Body"].read() == body
    assert copied["Metadata"] == {SOURCE_ETAG: item.etag, SOURCE_URI: item.source_uri}


def test_given_an_object_already_copied_when_copied_again_then_it_is_skipped_without_reading_the_source(
    source_s3: Any, destination_s3: Any
) -> None:
    item = upload(source_s3, "sentiment/model.tar.gz", b"weights")
    copy(source_s3, destination_s3, item)
    source_s3.delete_object(Bucket=SOURCE_BUCKET, Key=item.source_key)

    [result] = copy(source_s3, destination_s3, item)

    assert result.copied is False
    assert result.uri == item.destination_uri


def test_given_a_destination_from_another_source_when_copied_then_it_is_replaced_by_the_pinned_one(
    source_s3: Any, destination_s3: Any
) -> None:
    item = upload(source_s3, "sentiment/model.tar.gz", b"the pinned bytes")
    create_bucket(destination_s3, PUBLISHING_BUCKET, PUBLISHING_REGION)
    destination_s3.put_object(Bucket=PUBLISHING_BUCKET, Key=item.destination_key, Body=b"left over")

    [result] = copy(source_s3, destination_s3, item)

    assert result.copied is True
    body = destination_s3.get_object(Bucket=PUBLISHING_BUCKET, Key=item.destination_key)["Body"].read()
    assert body == b"the pinned bytes"


@pytest.mark.parametrize("threshold", [64 * MiB, 5 * MiB], ids=["single-copy", "multipart"])
def test_given_a_tagged_source_when_copied_then_the_copy_carries_no_tags(
    source_s3: Any, destination_s3: Any, monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    monkeypatch.setattr(
        objects, "_TRANSFER", TransferConfig(multipart_threshold=threshold, multipart_chunksize=threshold)
    )
    item = upload(source_s3, "sentiment/model.tar.gz", os.urandom(6 * MiB))
    source_s3.put_object_tagging(
        Bucket=SOURCE_BUCKET, Key=item.source_key, Tagging={"TagSet": [{"Key": "team", "Value": "ml"}]}
    )

    [result] = copy(source_s3, destination_s3, item)

    assert result.copied is True
    tags = destination_s3.get_object_tagging(Bucket=item.destination_bucket, Key=item.destination_key)["TagSet"]
    assert tags == []


@pytest.mark.parametrize("threshold", [64 * MiB, 5 * MiB], ids=["single-copy", "multipart"])
def test_given_the_source_changed_after_pinning_when_copied_then_source_changed_and_nothing_is_written(
    source_s3: Any, destination_s3: Any, monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    monkeypatch.setattr(
        objects, "_TRANSFER", TransferConfig(multipart_threshold=threshold, multipart_chunksize=threshold)
    )
    item = upload(source_s3, "sentiment/model.tar.gz", os.urandom(6 * MiB))
    source_s3.put_object(Bucket=SOURCE_BUCKET, Key=item.source_key, Body=b"overwritten after the release resolved")

    with pytest.raises(SourceChanged) as caught:
        copy(source_s3, destination_s3, item)

    assert item.etag in caught.value.message
    assert "start the release again" in caught.value.message
    listing = destination_s3.list_objects_v2(Bucket=PUBLISHING_BUCKET)
    assert listing.get("KeyCount") == 0
    assert destination_s3.list_multipart_uploads(Bucket=PUBLISHING_BUCKET).get("Uploads", []) == []


def failed_call(error: BaseException) -> str:
    """The S3 operation whose failure the error reports (s3transfer may wrap the ClientError)."""
    cause = error.__cause__
    while cause is not None and not isinstance(cause, ClientError):
        cause = cause.__context__
    assert isinstance(cause, ClientError), error
    return str(cause.operation_name)


@pytest.mark.parametrize(
    ("threshold", "operation"),
    [(64 * MiB, "CopyObject"), (5 * MiB, "UploadPartCopy")],
    ids=["single-copy", "multipart"],
)
def test_given_the_source_overwritten_after_the_transfer_checked_it_when_copied_then_the_copy_itself_refuses(
    source_s3: Any, destination_s3: Any, monkeypatch: pytest.MonkeyPatch, threshold: int, operation: str
) -> None:
    # The worst moment: the transfer's HeadObject saw the pinned ETag; the source changes
    # just before the copy request, so only the copy's own x-amz-copy-source-if-match holds the pin.
    monkeypatch.setattr(
        objects, "_TRANSFER", TransferConfig(multipart_threshold=threshold, multipart_chunksize=threshold)
    )
    item = upload(source_s3, "sentiment/model.tar.gz", os.urandom(12 * MiB))
    overwrite = threading.Lock()
    overwritten: list[str] = []

    def overwrite_source(**_: Any) -> None:
        with overwrite:
            if not overwritten:
                source_s3.put_object(Bucket=SOURCE_BUCKET, Key=item.source_key, Body=os.urandom(12 * MiB))
                overwritten.append(operation)

    destination_s3.meta.events.register(f"before-call.s3.{operation}", overwrite_source)

    with pytest.raises(SourceChanged) as caught:
        copy(source_s3, destination_s3, item)

    assert overwritten == [operation]
    assert failed_call(caught.value) == operation
    assert caught.value.message.startswith(f"{item.source_uri} changed after the release was resolved")
    assert item.etag in caught.value.message
    assert "start the release again" in caught.value.message
    assert destination_s3.list_objects_v2(Bucket=PUBLISHING_BUCKET)["KeyCount"] == 0
    assert destination_s3.list_multipart_uploads(Bucket=PUBLISHING_BUCKET).get("Uploads", []) == []  # aborted


def test_given_an_object_above_the_multipart_threshold_when_copied_then_parts_are_copied_server_side(
    source_s3: Any, destination_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objects, "_TRANSFER", TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    body = os.urandom(12 * MiB)
    item = upload(source_s3, "sentiment/1.2.0/big-model.tar.gz", body)

    [result] = copy(source_s3, destination_s3, item)

    assert result.copied is True
    copied = destination_s3.get_object(Bucket=item.destination_bucket, Key=item.destination_key)
    assert copied["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 2 MiB
    assert copied["Metadata"] == {SOURCE_ETAG: item.etag, SOURCE_URI: item.source_uri}
    assert copied["Body"].read() == body

    [again] = copy(source_s3, destination_s3, item)
    assert again.copied is False


def test_given_a_publishing_bucket_owned_by_someone_else_then_the_copy_fails_with_what_to_change(
    source_s3: Any, destination_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = upload(source_s3, "sentiment/model.tar.gz", b"weights")

    def forbidden(**_: Any) -> None:
        raise destination_s3.exceptions.ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadBucket")

    monkeypatch.setattr(destination_s3, "head_bucket", forbidden)

    with pytest.raises(ArtifactCopyFailed, match="set the PublishingBucketName parameter"):
        copy(source_s3, destination_s3, item)


def test_given_several_objects_for_one_bucket_when_copied_then_each_is_copied_once(
    source_s3: Any, destination_s3: Any
) -> None:
    model = upload(source_s3, "sentiment/model.tar.gz", b"weights")
    validation = upload(source_s3, "sentiment/validation/input.csv", b"text\nnice\n").model_copy(
        update={"role": "validation_input", "container": None}
    )

    results = copy(source_s3, destination_s3, model, validation)

    assert [(r.role, r.container, r.copied) for r in results] == [
        ("model_data", "inference", True),
        ("validation_input", None, True),
    ]
    keys = {item["Key"] for item in destination_s3.list_objects_v2(Bucket=PUBLISHING_BUCKET)["Contents"]}
    assert keys == {model.destination_key, validation.destination_key}


def test_given_a_publishing_bucket_in_another_region_then_nothing_is_copied_and_the_regions_are_named(
    source_s3: Any, destination_s3: Any
) -> None:
    item = upload(source_s3, "sentiment/model.tar.gz", b"weights")
    create_bucket(boto3.client("s3", region_name="eu-west-1"), PUBLISHING_BUCKET, "eu-west-1")

    with pytest.raises(ArtifactCopyFailed) as caught:
        copy(source_s3, destination_s3, item)

    assert caught.value.message.startswith(
        f"publishing bucket {PUBLISHING_BUCKET} is in eu-west-1, but this release publishes in {PUBLISHING_REGION} "
    )
    assert f"recreate the bucket in {PUBLISHING_REGION}, or set the PublishingBucketName parameter" in (
        caught.value.message
    )
    assert destination_s3.list_objects_v2(Bucket=PUBLISHING_BUCKET)["KeyCount"] == 0

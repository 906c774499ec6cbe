"""The sandbox's S3, in-process and over HTTP: 412 when a copy source's pin does not hold; TLS-only policies."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.s3.models import FakeKey

from sandbox.audit import ApiCall
from sandbox.ext_s3 import S3Extension
from sandbox.server import EmulatorServer

pytestmark = pytest.mark.integration

REGION = "us-east-1"
BUCKET = "acme-ml-artifacts"
SOURCE = {"Bucket": BUCKET, "Key": "model.tar.gz"}
PART = 5 * 1024 * 1024


@pytest.fixture(params=["in-process", "server"])
def s3(request: pytest.FixtureRequest, aws_credentials: None) -> Iterator[Any]:
    """A client of moto with the extension installed: in-process, or over moto's server as the Lambdas call it."""
    with mock_aws(), S3Extension():
        if request.param == "in-process":
            yield boto3.client("s3", region_name=REGION)
            return
        server = EmulatorServer()
        received: list[ApiCall] = []
        server.observers.append(received.append)
        server.start()
        try:
            yield boto3.client(
                "s3", region_name=REGION, endpoint_url=server.endpoint, config=Config(s3={"addressing_style": "path"})
            )
        finally:
            server.stop()
        # The requests really went over HTTP, not through moto's in-process interception.
        assert "PutObject" in {call.operation for call in received}


def source_etag(s3: Any) -> str:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(**SOURCE, Body=b"w" * PART)
    return str(s3.head_object(**SOURCE)["ETag"])


def precondition_failure(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return {
        "status": caught.value.response["ResponseMetadata"]["HTTPStatusCode"],
        "code": caught.value.response["Error"]["Code"],
    }


def upload_part_copy(s3: Any, **conditions: Any) -> Any:
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key="copy")["UploadId"]
    return s3.upload_part_copy(
        Bucket=BUCKET, Key="copy", UploadId=upload_id, PartNumber=1, CopySource=SOURCE, **conditions
    )


def test_given_a_source_with_another_etag_when_copy_object_pins_it_then_412_precondition_failed(s3: Any) -> None:
    source_etag(s3)

    failure = precondition_failure(
        s3.copy_object, Bucket=BUCKET, Key="copy", CopySource=SOURCE, CopySourceIfMatch='"0"'
    )

    assert failure == {"status": 412, "code": "PreconditionFailed"}
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="copy")


def test_given_a_source_with_another_etag_when_upload_part_copy_pins_it_then_412_precondition_failed(
    s3: Any,
) -> None:
    source_etag(s3)

    failure = precondition_failure(upload_part_copy, s3=s3, CopySourceIfMatch='"0"')

    assert failure == {"status": 412, "code": "PreconditionFailed"}


def test_given_the_pinned_etag_when_copied_then_both_copy_operations_succeed(s3: Any) -> None:
    etag = source_etag(s3)

    copied = s3.copy_object(Bucket=BUCKET, Key="copy", CopySource=SOURCE, CopySourceIfMatch=etag)
    part = upload_part_copy(s3, CopySourceIfMatch=etag.strip('"'))  # S3 takes the ETag quoted or not

    assert copied["CopyObjectResult"]["ETag"] == etag
    assert part["CopyPartResult"]["ETag"] == etag


def test_given_a_source_modified_since_the_date_when_copied_then_412_unless_its_etag_matches(s3: Any) -> None:
    etag = source_etag(s3)
    before_upload = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)

    object_failure = precondition_failure(
        s3.copy_object, Bucket=BUCKET, Key="copy", CopySource=SOURCE, CopySourceIfUnmodifiedSince=before_upload
    )
    part_failure = precondition_failure(upload_part_copy, s3=s3, CopySourceIfUnmodifiedSince=before_upload)
    # S3: when if-match holds and if-unmodified-since does not, the copy goes ahead.
    copied = s3.copy_object(
        Bucket=BUCKET,
        Key="copy",
        CopySource=SOURCE,
        CopySourceIfMatch=etag,
        CopySourceIfUnmodifiedSince=before_upload,
    )

    assert object_failure == part_failure == {"status": 412, "code": "PreconditionFailed"}
    assert copied["CopyObjectResult"]["ETag"] == etag


def test_given_part_ranges_when_copied_then_each_part_holds_its_range_and_the_whole_source_is_never_read(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    body = bytes(range(256)) * (3 * PART // 256) + b"tail"
    s3.put_object(**SOURCE, Body=body)
    whole_reads: list[str] = []
    value = FakeKey.value
    monkeypatch.setattr(
        FakeKey, "value", property(lambda key: whole_reads.append(key.name) or value.fget(key), value.fset)
    )
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key="copy")["UploadId"]
    ranges = [(0, PART - 1), (PART, 2 * PART + 7), (2 * PART + 8, len(body) - 1)]

    parts = [
        {
            "PartNumber": number,
            "ETag": s3.upload_part_copy(
                Bucket=BUCKET,
                Key="copy",
                UploadId=upload_id,
                PartNumber=number,
                CopySource=SOURCE,
                CopySourceRange=f"bytes={first}-{last}",
            )["CopyPartResult"]["ETag"],
        }
        for number, (first, last) in enumerate(ranges, start=1)
    ]
    s3.complete_multipart_upload(Bucket=BUCKET, Key="copy", UploadId=upload_id, MultipartUpload={"Parts": parts})

    assert "model.tar.gz" not in whole_reads
    assert s3.get_object(Bucket=BUCKET, Key="copy")["Body"].read() == body


def test_given_the_extension_undone_then_moto_ignores_the_pin_again(aws_credentials: None) -> None:
    # The gap the extension fills (local-aws-facts.md); should moto close it, this test says so.
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        source_etag(s3)
        with S3Extension():
            pass

        s3.copy_object(Bucket=BUCKET, Key="copy", CopySource=SOURCE, CopySourceIfMatch='"0"')

        assert s3.head_object(Bucket=BUCKET, Key="copy")["ContentLength"] == PART


def tls_only(*extra: dict[str, Any]) -> str:
    statement = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement, *extra]})


def test_given_a_tls_only_bucket_policy_then_sdk_requests_are_served(s3: Any) -> None:
    source_etag(s3)
    s3.put_bucket_policy(Bucket=BUCKET, Policy=tls_only())

    s3.put_object(Bucket=BUCKET, Key="other", Body=b"x")

    assert s3.get_object(Bucket=BUCKET, Key="other")["Body"].read() == b"x"


def test_given_a_tls_only_policy_with_a_deny_for_tls_requests_then_that_deny_holds(s3: Any) -> None:
    source_etag(s3)
    deny_reads_over_tls = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/*",
        "Condition": {"Bool": {"aws:SecureTransport": ["true"]}},
    }
    s3.put_bucket_policy(Bucket=BUCKET, Policy=tls_only(deny_reads_over_tls))

    with pytest.raises(ClientError) as caught:
        s3.get_object(**SOURCE)

    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize("operation", ["CopyObject", "UploadPartCopy"])
def test_given_a_bandwidth_cap_when_copying_then_each_copy_takes_its_bytes_over_the_cap(
    aws_credentials: None, operation: str
) -> None:
    with mock_aws(), S3Extension(bandwidth_mib_s=50):
        s3 = boto3.client("s3", region_name=REGION)
        etag = source_etag(s3)  # one part: 5 MiB, 0.1 s at 50 MiB/s
        started = time.monotonic()
        if operation == "CopyObject":
            s3.copy_object(Bucket=BUCKET, Key="copy", CopySource=SOURCE, CopySourceIfMatch=etag)
        else:
            upload = s3.create_multipart_upload(Bucket=BUCKET, Key="copy")["UploadId"]
            s3.upload_part_copy(
                Bucket=BUCKET,
                Key="copy",
                UploadId=upload,
                PartNumber=1,
                CopySource=SOURCE,
                CopySourceRange=f"bytes=0-{PART // 2 - 1}",  # half of it: 0.05 s
            )
        elapsed = time.monotonic() - started

    expected = 0.1 if operation == "CopyObject" else 0.05
    assert expected <= elapsed < expected + 0.5


def test_given_a_bandwidth_of_zero_then_the_extension_refuses_it() -> None:
    with pytest.raises(ValueError, match="more than 0 MiB/s"):
        S3Extension(bandwidth_mib_s=0)

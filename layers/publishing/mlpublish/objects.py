"""Copying model artifacts and validation data into the publishing region, server-side.

S3 copies bytes itself (CopyObject, or UploadPartCopy for large objects through the managed
transfer): nothing passes through Lambda memory. Every copy request is conditional on the
pinned ETag (the transfer's HeadObject, the CopyObject, each UploadPartCopy), so an object
overwritten after the release was resolved fails the copy with SourceChanged instead of
publishing other bytes; a failed multipart copy is aborted by the transfer. A destination
that already holds the pinned source is not copied again (its metadata records the source
ETag).
"""

from __future__ import annotations

import json
from typing import Any

import s3transfer.exceptions  # type: ignore[import-untyped]
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from mlpublish.aws import error_code, transient_errors
from mlpublish.errors import ArtifactCopyFailed, SourceChanged
from mlpublish.settings import PublishingConfig
from mlpublish.state import CopiedObject, PinnedObject

SOURCE_ETAG = "mlpublish-source-etag"
SOURCE_URI = "mlpublish-source-uri"

# Parts of 64 MiB keep a 5 GB model under ~80 UploadPartCopy calls.
_TRANSFER = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024)


# s3transfer 0.19 (dev) wraps an UploadPartCopy's PreconditionFailed in S3CopyFailedError; the
# Lambda runtime's 0.13 has no such class and raises the ClientError itself.
_WRAPPED_COPY_ERRORS: tuple[type[Exception], ...] = tuple(
    filter(None, [getattr(s3transfer.exceptions, "S3CopyFailedError", None)])
)

MANAGED_BY = {"Key": "managed-by", "Value": "mlpublish"}
TLS_ONLY_SID = "mlpublish-deny-insecure-transport"


def derived_bucket(account_id: str, region: str) -> str:
    """The publishing bucket of one region when the stack names none: SageMaker reads a model
    package's artifacts only in the package's own region, so each region has its own bucket.
    template.yaml grants ``mlpublish-ACCOUNT-*`` to match this name."""
    return f"mlpublish-{account_id}-{region}"


def publishing_bucket(config: PublishingConfig, *, account_id: str, region: str) -> str:
    """The bucket a release publishing in ``region`` copies its artifacts to.

    A PublishingBucketName the seller set is a bucket in the stack's PublishingRegion;
    preflight refuses releases for any other region before they get here.
    """
    return config.bucket_name or derived_bucket(account_id, region)


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    """Create the publishing bucket if missing: private, TLS-only, encrypted, tagged, cleaning
    up incomplete multipart uploads.

    A bucket this pipeline created is tagged first and set up again on every release, so a
    set-up cut short is completed by the next run; a bucket it did not create is left as
    its owner configured it. Either way it must be in ``region``, the model package's.
    """
    located: str | None = None
    try:
        with transient_errors(f"checking bucket {bucket}"):
            located = s3.head_bucket(Bucket=bucket).get("BucketRegion")
        exists = True
    except ClientError as exc:
        if error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
            raise ArtifactCopyFailed(
                f"publishing bucket {bucket} exists but is not usable ({error_code(exc)}); it must be "
                f"owned by this account and be in {region}, or set the PublishingBucketName parameter to "
                "another name (empty: the pipeline makes mlpublish-ACCOUNT-REGION)"
            ) from exc
        exists = False
    if located is not None and located != region:
        raise ArtifactCopyFailed(
            f"publishing bucket {bucket} is in {located}, but this release publishes in {region} and SageMaker "
            f"reads a model package's artifacts only in its own region; recreate the bucket in {region}, or set "
            f"the PublishingBucketName parameter to a bucket in {region}"
        )
    if exists and not _managed(s3, bucket):
        return
    if not exists:
        _create(s3, bucket, region)
    _configure(s3, bucket)


def _managed(s3: Any, bucket: str) -> bool:
    try:
        with transient_errors(f"reading the tags of bucket {bucket}"):
            tags = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    except ClientError as exc:
        if error_code(exc) == "NoSuchTagSet":
            return False
        raise
    return MANAGED_BY in tags


def _create(s3: Any, bucket: str, region: str) -> None:
    create: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        with transient_errors(f"creating bucket {bucket}"):
            s3.create_bucket(**create)
    except ClientError as exc:
        if error_code(exc) != "BucketAlreadyOwnedByYou":
            raise ArtifactCopyFailed(f"cannot create publishing bucket {bucket}: {exc}") from exc
    with transient_errors(f"tagging bucket {bucket}"):
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [MANAGED_BY]})


def _configure(s3: Any, bucket: str) -> None:
    with transient_errors(f"setting up bucket {bucket}"):
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        # A multipart copy cut short (Lambda timeout) leaves parts that are billed but never listed.
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "abort-incomplete-multipart-uploads",
                        "Status": "Enabled",
                        "Filter": {"Prefix": ""},
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                    }
                ]
            },
        )
    _require_tls(s3, bucket)


def tls_only_statement(bucket: str) -> dict[str, Any]:
    """Deny every request to the bucket and its objects that does not arrive over TLS."""
    return {
        "Sid": TLS_ONLY_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def _require_tls(s3: Any, bucket: str) -> None:
    """Add the TLS-only statement to the bucket policy, keeping any statement the seller added."""
    statement = tls_only_statement(bucket)
    policy: dict[str, Any] = {"Version": "2012-10-17", "Statement": []}
    try:
        with transient_errors(f"reading the policy of bucket {bucket}"):
            policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as exc:
        if error_code(exc) != "NoSuchBucketPolicy":
            raise
    statements = policy.get("Statement", [])
    statements = statements if isinstance(statements, list) else [statements]
    if statement in statements:
        return
    policy["Statement"] = [s for s in statements if s.get("Sid") != TLS_ONLY_SID] + [statement]
    with transient_errors(f"setting the policy of bucket {bucket}"):
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def already_copied(s3: Any, item: PinnedObject) -> bool:
    try:
        with transient_errors(f"checking {item.destination_uri}"):
            head = s3.head_object(Bucket=item.destination_bucket, Key=item.destination_key)
    except ClientError as exc:
        if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return bool(head.get("Metadata", {}).get(SOURCE_ETAG) == item.etag)


def copy_object(source_s3: Any, destination_s3: Any, item: PinnedObject) -> CopiedObject:
    """Copy one pinned object (or confirm it is there already)."""
    copied = not already_copied(destination_s3, item)
    if copied:
        try:
            with transient_errors(f"copying {item.source_uri}"):
                destination_s3.copy(
                    {"Bucket": item.source_bucket, "Key": item.source_key},
                    item.destination_bucket,
                    item.destination_key,
                    ExtraArgs={
                        "CopySourceIfMatch": f'"{item.etag}"',
                        "MetadataDirective": "REPLACE",
                        "Metadata": {SOURCE_ETAG: item.etag, SOURCE_URI: item.source_uri},
                        # No tags: copying the source's would need s3:GetObjectTagging on every
                        # seller bucket and s3:PutObjectTagging here, for tags nothing reads.
                        "TaggingDirective": "REPLACE",
                    },
                    SourceClient=source_s3,
                    Config=_TRANSFER,
                )
        except ClientError as exc:
            if _pin_failed(exc):
                raise _source_changed(item) from exc
            raise ArtifactCopyFailed(
                f"copying {item.source_uri} to {item.destination_uri} failed ({error_code(exc)}): {exc}"
            ) from exc
        except _WRAPPED_COPY_ERRORS as exc:
            if isinstance(exc.__context__, ClientError) and _pin_failed(exc.__context__):
                raise _source_changed(item) from exc
            raise ArtifactCopyFailed(f"copying {item.source_uri} to {item.destination_uri} failed: {exc}") from exc
    return CopiedObject(
        role=item.role,
        container=item.container,
        uri=item.destination_uri,
        etag=item.etag,
        size=item.size,
        copied=copied,
    )


def _pin_failed(exc: ClientError) -> bool:
    # CopyObject and UploadPartCopy answer PreconditionFailed; HeadObject, bodiless, a bare 412.
    return error_code(exc) in {"PreconditionFailed", "412"}


def _source_changed(item: PinnedObject) -> SourceChanged:
    return SourceChanged(
        f"{item.source_uri} changed after the release was resolved: it no longer has the pinned ETag {item.etag}, "
        f"so nothing was published to {item.destination_uri}; start the release again to pin and publish the "
        "new object"
    )


def copy_objects(source_s3: Any, destination_s3: Any, items: list[PinnedObject], *, region: str) -> list[CopiedObject]:
    buckets = sorted({item.destination_bucket for item in items})
    for bucket in buckets:
        ensure_bucket(destination_s3, bucket, region)
    return [copy_object(source_s3, destination_s3, item) for item in items]

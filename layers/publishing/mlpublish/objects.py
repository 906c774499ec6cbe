"""Copying model artifacts and validation data into the publishing region, server-side.

S3 copies bytes itself (CopyObject, or UploadPartCopy for large objects): nothing passes
through Lambda memory. Every copy request is conditional on the pinned ETag, so an object
overwritten after the release was resolved fails the copy with SourceChanged instead of
publishing other bytes. A destination that already holds the pinned source is not copied
again (its metadata records the source ETag).

Two paths (statemachine/publish.asl.json, branch CopyArtifacts):

* objects up to ``MULTIPART_THRESHOLD`` are copied whole, several per invocation
  (``copy_objects``: CopyObject);
* a larger object is copied in parts spread over invocations: ``plan_artifacts`` finds the
  multipart upload of its destination key (or starts one) and splits its parts into at most
  ``MAX_RANGES`` ranges; ``copy_part_range`` copies a range's parts that the upload does not
  list yet (UploadPartCopy), stopping while the invocation has time left and saying where to
  go on; ``complete_copy`` completes the upload and verifies it. A re-run or a retried
  invocation lists the parts already there and never copies an acknowledged part again.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import s3transfer.exceptions  # type: ignore[import-untyped]
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from mlpublish.aws import error_code, transient_errors
from mlpublish.errors import ArtifactCopyFailed, SourceChanged
from mlpublish.settings import PublishingConfig
from mlpublish.state import ArtifactCopy, ArtifactPlan, CopiedObject, PartRangeCopy, PartUpload, PinnedObject

SOURCE_ETAG = "mlpublish-source-etag"
SOURCE_URI = "mlpublish-source-uri"

MiB = 1024 * 1024
GiB = 1024 * MiB

# S3: a multipart upload or copy (UploadPartCopy, as into the publishing bucket) has at most
# 10,000 parts of 5 MiB to 5 GiB (the last may be smaller), and an object is at most 48.8 TiB,
# which is exactly that (Amazon S3 User Guide, "Amazon S3 multipart upload limits" and "Amazon S3
# objects overview": "50 TB", raised from 5 TB in late 2025; exactly 10,000 x 5 GiB).
S3_MAX_PARTS = 10_000
S3_MIN_PART_SIZE = 5 * MiB
S3_MAX_PART_SIZE = 5 * GiB
S3_MAX_OBJECT_SIZE = S3_MAX_PARTS * S3_MAX_PART_SIZE
# ListParts and ListMultipartUploads answer at most 1,000 entries a page.
S3_LIST_PAGE = 1_000

# Parts of 64 MiB keep a 5 GB model under ~80 UploadPartCopy calls; an object over 625 GiB gets
# larger parts, so that no object needs more than 10,000.
PART_SIZE = 64 * MiB
# Objects up to one part are copied whole with CopyObject (S3 takes up to 5 GiB so).
MULTIPART_THRESHOLD = PART_SIZE
# Small objects copied in one invocation: at most this many bytes.
GROUP_BYTES = 1 * GiB
# A large object's parts are split into at most this many ranges (each a Map iteration, a few at
# a time), of at least MIN_PARTS_PER_RANGE parts: the state holds the count, never the ranges.
MAX_RANGES = 32
MIN_PARTS_PER_RANGE = 4
# A range stops copying, and says where to go on, once the invocation's remaining time is below
# this plus twice its slowest part so far: the next part would risk the Lambda timeout.
TIME_MARGIN_MS = 1_000

_TRANSFER = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=PART_SIZE)


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


def copy_objects(
    source_s3: Any, destination_s3: Any, items: list[PinnedObject], *, region: str, buckets_ready: bool = False
) -> list[CopiedObject]:
    """Copy objects whole, setting up their publishing buckets first unless ``buckets_ready``."""
    if not buckets_ready:
        for bucket in sorted({item.destination_bucket for item in items}):
            ensure_bucket(destination_s3, bucket, region)
    return [copy_object(source_s3, destination_s3, item) for item in items]


# --- large objects: a multipart copy spread over invocations ------------------------------


def part_size_for(size: int) -> int:
    """The part size of an object of ``size`` bytes: PART_SIZE, or the smallest whole MiB that
    keeps it within S3's 10,000 parts. Refuses what S3 cannot hold (preflight refuses it first)."""
    if size > S3_MAX_OBJECT_SIZE:
        raise ArtifactCopyFailed(
            f"an object of {size:,} bytes is larger than the {S3_MAX_OBJECT_SIZE:,} bytes (48.8 TiB) S3 holds "
            f"({S3_MAX_PARTS:,} parts of at most 5 GiB); it cannot be copied into the publishing bucket"
        )
    return max(PART_SIZE, -(-size // (S3_MAX_PARTS * MiB)) * MiB)


def part_count(size: int, part_size: int) -> int:
    return max(1, -(-size // part_size))


def part_bytes(number: int, size: int, part_size: int) -> tuple[int, int]:
    """First and last byte (inclusive) of part ``number`` (1-based): CopySourceRange's figures."""
    first = (number - 1) * part_size
    return first, min(first + part_size, size) - 1


def range_count(parts: int) -> tuple[int, int]:
    """(parts per range, ranges): at most MAX_RANGES ranges of at least MIN_PARTS_PER_RANGE parts."""
    per_range = max(MIN_PARTS_PER_RANGE, -(-parts // MAX_RANGES))
    return per_range, -(-parts // per_range)


def range_parts(upload: PartUpload, range_index: int) -> tuple[int, int]:
    """First and last part number (inclusive) of range ``range_index`` (0-based)."""
    first = range_index * upload.parts_per_range + 1
    return first, min(first + upload.parts_per_range - 1, upload.parts)


def multipart_etag(etags: list[str]) -> str:
    """The ETag S3 gives an object completed from parts with these ETags: the MD5 of their
    digests, then the part count."""
    digests = b"".join(binascii.unhexlify(etag.strip('"')) for etag in etags)
    return f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(etags)}"


def plan_artifacts(s3: Any, items: list[PinnedObject], *, region: str) -> ArtifactPlan:
    """Make the publishing buckets ready, then plan each object's copy: small ones in groups of
    up to GROUP_BYTES (in release order), each large one over its multipart upload, found or
    started. Objects already in place join a group (its copy confirms them without copying)."""
    for bucket in sorted({item.destination_bucket for item in items}):
        ensure_bucket(s3, bucket, region)
    copies: list[ArtifactCopy] = []
    group: list[PinnedObject] = []
    group_bytes = 0
    for item in items:
        if item.size > MULTIPART_THRESHOLD and not already_copied(s3, item):
            copies.append(ArtifactCopy(object=item, upload=_multipart_upload(s3, item)))
            continue
        weight = item.size if item.size <= MULTIPART_THRESHOLD else 0
        if group and group_bytes + weight > GROUP_BYTES:
            copies.append(ArtifactCopy(objects=group))
            group, group_bytes = [], 0
        group.append(item)
        group_bytes += weight
    if group:
        copies.append(ArtifactCopy(objects=group))
    return ArtifactPlan(copies=copies)


def _multipart_upload(s3: Any, item: PinnedObject) -> PartUpload:
    """The destination key's multipart upload with parts of this plan's size, or a new one.

    The destination key names the pinned ETag (mlpublish/resolve.py), so an upload of that key
    holds parts of the pinned source. Of several, the oldest (then the lowest id) is taken, so a
    retried plan picks the same one; one whose parts have another size is aborted (parts of a
    different plan cannot be completed with this one's).
    """
    part_size = part_size_for(item.size)
    parts = part_count(item.size, part_size)
    per_range, ranges = range_count(parts)
    for upload_id in _uploads_of(s3, item):
        listed = {number: size for number, size, _ in _listed_parts(s3, item, upload_id)}
        if all(size == _expected_size(number, item.size, part_size) for number, size in listed.items()):
            return PartUpload(
                upload_id=upload_id,
                part_size=part_size,
                parts=parts,
                parts_per_range=per_range,
                ranges=ranges,
                last_range=ranges - 1,
                parts_done=len(listed),
            )
        _abort(s3, item, upload_id)
    try:
        with transient_errors(f"starting the multipart copy of {item.source_uri}"):
            started = s3.create_multipart_upload(
                Bucket=item.destination_bucket,
                Key=item.destination_key,
                Metadata={SOURCE_ETAG: item.etag, SOURCE_URI: item.source_uri},
            )
    except ClientError as exc:
        raise ArtifactCopyFailed(
            f"cannot start the multipart copy of {item.source_uri} to {item.destination_uri} ({error_code(exc)}): {exc}"
        ) from exc
    return PartUpload(
        upload_id=started["UploadId"],
        part_size=part_size,
        parts=parts,
        parts_per_range=per_range,
        ranges=ranges,
        last_range=ranges - 1,
    )


def _expected_size(number: int, size: int, part_size: int) -> int:
    first, last = part_bytes(number, size, part_size)
    return last - first + 1 if first < size else -1


def _uploads_of(s3: Any, item: PinnedObject) -> list[str]:
    """Upload ids in progress for the item's destination key, oldest first."""
    found: list[tuple[Any, str]] = []
    request: dict[str, Any] = {"Bucket": item.destination_bucket, "Prefix": item.destination_key}
    while True:
        with transient_errors(f"listing multipart uploads of {item.destination_uri}"):
            page = s3.list_multipart_uploads(**request)
        found += [(u["Initiated"], u["UploadId"]) for u in page.get("Uploads", []) if u["Key"] == item.destination_key]
        if not page.get("IsTruncated"):
            return [upload_id for _, upload_id in sorted(found)]
        request |= {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}


def _listed_parts(
    s3: Any, item: PinnedObject, upload_id: str, first: int = 1, last: int = S3_MAX_PARTS
) -> Iterator[tuple[int, int, str]]:
    """(number, size, ETag) of the upload's parts numbered first..last."""
    marker = first - 1
    while marker < last:
        with transient_errors(f"listing the parts copied to {item.destination_uri}"):
            page = s3.list_parts(
                Bucket=item.destination_bucket,
                Key=item.destination_key,
                UploadId=upload_id,
                PartNumberMarker=marker,
                MaxParts=min(S3_LIST_PAGE, last - marker),
            )
        for part in page.get("Parts", []):
            if part["PartNumber"] <= last:
                yield part["PartNumber"], part["Size"], part["ETag"]
        if not page.get("IsTruncated"):
            return
        marker = int(page["NextPartNumberMarker"])


def copy_part_range(
    source_s3: Any, destination_s3: Any, request: PartRangeCopy, remaining_ms: Callable[[], int]
) -> PartRangeCopy:
    """Copy the parts of one range that the upload does not list yet, one UploadPartCopy each
    (conditional on the pinned ETag), until the range is done or ``remaining_ms()`` (the
    invocation's time left) gets short: the result says where the next invocation goes on.
    Every invocation copies at least one part, so a range always moves."""
    item, upload = request.object, request.upload
    first, last = range_parts(upload, request.range_index)
    start = max(first, request.next_part)
    try:
        listed = {
            number
            for number, size, _ in _listed_parts(destination_s3, item, upload.upload_id, start, last)
            if size == _expected_size(number, item.size, upload.part_size)
        }
    except ClientError as exc:
        raise _copy_failed(source_s3, destination_s3, item, upload, exc) from exc
    copied = present = 0
    slowest_ms = 0.0
    for number in range(start, last + 1):
        if number in listed:
            present += 1
            continue
        if copied and remaining_ms() < TIME_MARGIN_MS + 2 * slowest_ms:
            return _progress(request, number, copied, present, done=False)
        began = time.monotonic()
        _copy_part(source_s3, destination_s3, item, upload, number)
        slowest_ms = max(slowest_ms, (time.monotonic() - began) * 1000)
        copied += 1
    return _progress(request, last + 1, copied, present, done=True)


def _progress(request: PartRangeCopy, next_part: int, copied: int, present: int, *, done: bool) -> PartRangeCopy:
    return request.model_copy(
        update={
            "next_part": next_part,
            "done": done,
            "parts_copied": request.parts_copied + copied,
            "parts_present": request.parts_present + present,
            "invocations": request.invocations + 1,
        }
    )


def _copy_part(source_s3: Any, destination_s3: Any, item: PinnedObject, upload: PartUpload, number: int) -> None:
    first, last = part_bytes(number, item.size, upload.part_size)
    try:
        with transient_errors(f"copying part {number} of {item.source_uri}"):
            destination_s3.upload_part_copy(
                Bucket=item.destination_bucket,
                Key=item.destination_key,
                UploadId=upload.upload_id,
                PartNumber=number,
                CopySource={"Bucket": item.source_bucket, "Key": item.source_key},
                CopySourceRange=f"bytes={first}-{last}",
                CopySourceIfMatch=f'"{item.etag}"',
            )
    except ClientError as exc:
        raise _copy_failed(source_s3, destination_s3, item, upload, exc) from exc


def _copy_failed(
    source_s3: Any, destination_s3: Any, item: PinnedObject, upload: PartUpload, exc: ClientError
) -> Exception:
    """The error a failed part copy or listing reports. A changed source makes the upload
    worthless: it is aborted (the other ranges then find it gone, and report the same)."""
    if _pin_failed(exc) or (error_code(exc) == "NoSuchUpload" and not _source_holds(source_s3, item)):
        _abort(destination_s3, item, upload.upload_id)
        return _source_changed(item)
    if error_code(exc) == "NoSuchUpload":
        return ArtifactCopyFailed(
            f"the multipart copy of {item.source_uri} to {item.destination_uri} (upload {upload.upload_id}) is gone: "
            "it was aborted, or the bucket's lifecycle rule removed it after a day; start the release again to copy "
            "the object afresh"
        )
    return ArtifactCopyFailed(
        f"copying {item.source_uri} to {item.destination_uri} in parts failed ({error_code(exc)}): {exc}"
    )


def _source_holds(source_s3: Any, item: PinnedObject) -> bool:
    """The source still has the pinned ETag."""
    try:
        with transient_errors(f"checking {item.source_uri}"):
            source_s3.head_object(Bucket=item.source_bucket, Key=item.source_key, IfMatch=f'"{item.etag}"')
    except ClientError as exc:
        if _pin_failed(exc) or error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


def _abort(s3: Any, item: PinnedObject, upload_id: str) -> None:
    try:
        with transient_errors(f"aborting the multipart copy to {item.destination_uri}"):
            s3.abort_multipart_upload(Bucket=item.destination_bucket, Key=item.destination_key, UploadId=upload_id)
    except ClientError as exc:
        if error_code(exc) != "NoSuchUpload":
            raise


def complete_copy(destination_s3: Any, item: PinnedObject, upload: PartUpload) -> CopiedObject:
    """Complete the upload once every part is there, then verify the object: the planned size,
    the pinned source ETag in its metadata, and the ETag S3 derives from the listed parts'
    ETags (S3 assembled exactly those parts, in order; under SSE-KMS or SSE-C, whose ETags are
    opaque, only their count). Every part was copied conditional on
    the pinned ETag, so the source held throughout. A completion whose answer was lost (the
    object is there) is not repeated; other uploads of the key left by earlier attempts are
    aborted."""
    if not already_copied(destination_s3, item):
        try:
            parts = list(_listed_parts(destination_s3, item, upload.upload_id))
        except ClientError as exc:
            # NoSuchUpload with the object in place: completed by an attempt whose answer was lost.
            if error_code(exc) != "NoSuchUpload" or not already_copied(destination_s3, item):
                raise ArtifactCopyFailed(
                    f"cannot list the parts copied to {item.destination_uri} ({error_code(exc)}); start the release "
                    "again to copy the object afresh"
                ) from exc
        else:
            _complete(destination_s3, item, upload, parts)
    _abort_strays(destination_s3, item, keep=upload.upload_id)
    return CopiedObject(
        role=item.role, container=item.container, uri=item.destination_uri, etag=item.etag, size=item.size, copied=True
    )


def _complete(s3: Any, item: PinnedObject, upload: PartUpload, parts: list[tuple[int, int, str]]) -> None:
    wrong = [number for number, size, _ in parts if size != _expected_size(number, item.size, upload.part_size)]
    missing = sorted(set(range(1, upload.parts + 1)) - {number for number, _, _ in parts})
    if wrong or missing:
        raise ArtifactCopyFailed(
            f"the multipart copy of {item.source_uri} to {item.destination_uri} is not whole: parts "
            f"{_numbers(missing)} missing, {_numbers(wrong)} of the wrong size, of {upload.parts}; start the release "
            "again to copy what is missing"
        )
    expected = multipart_etag([etag for _, _, etag in parts])
    try:
        with transient_errors(f"completing the multipart copy to {item.destination_uri}"):
            s3.complete_multipart_upload(
                Bucket=item.destination_bucket,
                Key=item.destination_key,
                UploadId=upload.upload_id,
                MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag} for number, _, etag in parts]},
            )
        with transient_errors(f"checking {item.destination_uri}"):
            head = s3.head_object(Bucket=item.destination_bucket, Key=item.destination_key)
    except ClientError as exc:
        raise ArtifactCopyFailed(
            f"completing the multipart copy of {item.source_uri} to {item.destination_uri} failed "
            f"({error_code(exc)}): {exc}"
        ) from exc
    etag = head["ETag"].strip('"')
    # S3 derives a multipart ETag from the parts' MD5s only for unencrypted and SSE-S3 objects; with
    # SSE-KMS or SSE-C (a seller's own bucket may default to them) it is opaque, but for the count.
    if head.get("ServerSideEncryption") not in {None, "AES256"}:
        expected = etag if etag.endswith(f"-{len(parts)}") else f"(an opaque ETag)-{len(parts)}"
    found = (head["ContentLength"], etag, head.get("Metadata", {}).get(SOURCE_ETAG))
    if found != (item.size, expected, item.etag):
        # Removed, so that no later run takes it (by its metadata) for a good copy.
        with transient_errors(f"removing {item.destination_uri}"):
            s3.delete_object(Bucket=item.destination_bucket, Key=item.destination_key)
        raise ArtifactCopyFailed(
            f"{item.destination_uri} does not verify after its multipart copy: {found[0]:,} bytes, ETag {found[1]}, "
            f"source ETag {found[2]}; expected {item.size:,} bytes, ETag {expected} (from its parts) and source ETag "
            f"{item.etag}. It was removed; start the release again"
        )


def _numbers(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:10]))
    return (shown + f" and {len(numbers) - 10} more" if len(numbers) > 10 else shown) or "none"


def _abort_strays(s3: Any, item: PinnedObject, *, keep: str) -> None:
    for upload_id in _uploads_of(s3, item):
        if upload_id != keep:
            _abort(s3, item, upload_id)

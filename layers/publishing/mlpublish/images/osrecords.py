"""The OS read from an image's layers, remembered by manifest digest so no re-run reads them again.

A manifest digest fixes every layer, so what its layers say about the OS never changes: once
certain, ResolveRelease writes it as a small JSON object in the pipeline's own bucket,
``s3://PIPELINE_BUCKET/mlpublish/os-release/v1/<sha256 hex>.json``, and reads it back before
downloading any layer of that digest again. An uncertain answer (budget or time ran out) is not
recorded: a later run reads again.

Why a record in the pipeline bucket rather than a tag on the published image: the answer is
needed before the copy, when a first run that failed mid-copy has published nothing to tag;
a tag would be seen by the seller's lifecycle rules (tagged images are kept) and, in the
immutable repositories the pipeline creates, could never be corrected; and a tag holds only
``[A-Za-z0-9._-]``, not an os-release. The bucket is the stack's own, in its region, shared by
every publishing region; ResolveRelease already reads it (s3:GetObject), and writes only under
this prefix (s3:PutObject on ``mlpublish/os-release/*``). The S3 upload rule ignores the prefix,
so a record starts no trigger. Without s3:ListBucket, S3 answers a missing record with 403
rather than 404, so both mean "not recorded". A record can only save reading: a wrong one that
claims a scannable OS is still caught by ECR's scan after the copy, and one that claims an
unscannable OS names itself in the refusal, to be deleted.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ValidationError

from mlpublish.aws import error_code
from mlpublish.images.osinfo import OsDetection, OsRelease

RECORD_PREFIX = "mlpublish/os-release/"
# How layers are read: a change that could read an image differently starts a new version,
# so records of the old reading are not taken for the new.
RECORD_VERSION = "v1"
MAX_RECORD_BYTES = 64 * 1024
NOT_RECORDED = frozenset({"NoSuchKey", "404", "AccessDenied", "403"})

logger = logging.getLogger(__name__)


class OsRecord(BaseModel):
    """What one read of a manifest's layers found: the OS, or none (``os`` null)."""

    digest: str
    os: OsRelease | None
    bytes_read: int


class OsRecords:
    """Records in one bucket (the pipeline bucket), read and written with the given S3 client."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def key(self, digest: str) -> str:
        return f"{RECORD_PREFIX}{RECORD_VERSION}/{digest.removeprefix('sha256:')}.json"

    def uri(self, digest: str) -> str:
        return f"s3://{self.bucket}/{self.key(digest)}"

    def get(self, digest: str) -> OsDetection | None:
        """The recorded answer for the manifest ``digest``, read 0 layer bytes; None if there is none.

        Any failure to read a record only means reading the layers, so none is raised.
        """
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.key(digest))["Body"].read(MAX_RECORD_BYTES + 1)
            record = OsRecord.model_validate_json(body)
        except ClientError as exc:
            if error_code(exc) not in NOT_RECORDED:
                logger.warning("OS record %s cannot be read (%s); reading the layers", self.uri(digest), exc)
            return None
        except (BotoCoreError, ValidationError, ValueError) as exc:
            logger.warning("OS record %s is unusable (%s); reading the layers", self.uri(digest), exc)
            return None
        if record.digest != digest:
            logger.warning("OS record %s names %s; reading the layers", self.uri(digest), record.digest)
            return None
        return OsDetection(record.os, bytes_read=0, remembered=True)

    def put(self, digest: str, detection: OsDetection) -> None:
        """Record a certain answer (an OS, or none); an uncertain one is left for a later read."""
        if detection.unknown is not None or detection.remembered:
            return
        record = OsRecord(digest=digest, os=detection.os, bytes_read=detection.bytes_read)
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key(digest),
                Body=record.model_dump_json().encode(),
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as exc:
            # Only a later run's saving is lost: it reads the layers again.
            logger.warning("OS record %s cannot be written (%s)", self.uri(digest), exc)

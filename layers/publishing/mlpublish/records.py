"""The resolved release, kept in the pipeline bucket instead of the execution's state.

A release of 15 containers is about 10 KiB once resolved (the release file, each image and
object pinned, the OS found), and the execution carried it through every state. ResolveRelease
now writes it once, as JSON, to ``s3://PIPELINE_BUCKET/mlpublish/releases/v1/<sha256>.json``,
named by the hash of its own bytes, and the state carries a ``ReleaseSummary``: what the state
machine's paths and choices read, and the record's address. The steps that need the whole
release (PlanImage, PlanArtifacts, CreateModelPackage, ListVersion, BuildAnnouncement) read it
back and check the hash, so what they see is exactly what ResolveRelease resolved.

A record is never written twice with other bytes (its name is its hash), so a retried
ResolveRelease or a concurrent execution cannot change what another execution reads. The S3
upload rule ignores everything under ``mlpublish/``, so a record starts no trigger. Records are
small; the bucket's lifecycle rule expires them after RECORD_DAYS days, longer than an execution
can run (Step Functions stops a standard execution after a year).
"""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import ClientError

from mlpublish.aws import error_code, transient_errors
from mlpublish.errors import ReleaseRecordUnusable
from mlpublish.state import PinnedImage, Release, ReleaseSummary

PIPELINE_PREFIX = "mlpublish/"
RECORD_PREFIX = "mlpublish/releases/"
RECORD_VERSION = "v1"
RECORD_DAYS = 400


def record_key(body: bytes) -> str:
    return f"{RECORD_PREFIX}{RECORD_VERSION}/{hashlib.sha256(body).hexdigest()}.json"


def store(s3: Any, bucket: str, release: Release) -> ReleaseSummary:
    """Write the resolved release to the pipeline bucket; return what the state carries of it."""
    body = release.model_dump_json().encode()
    key = record_key(body)
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return summary(release, f"s3://{bucket}/{key}")


def summary(release: Release, record: str) -> ReleaseSummary:
    spec = release.spec
    return ReleaseSummary(
        record=record,
        release_uri=release.release_uri,
        product=spec.product.name,
        version=spec.product.version,
        kind=spec.product.kind,
        publishing_region=release.publishing_region,
        source_region=release.source_region,
        timeout_minutes=spec.validation.timeout_minutes,
        package=spec.package is not None,
        listing=spec.listing is not None,
        containers=[image.container for image in release.images],
    )


def image_of(release: Release, container: str) -> PinnedImage:
    """The pinned image of ``container`` (a name from the summary's ``containers``)."""
    for image in release.images:
        if image.container == container:
            return image
    raise ReleaseRecordUnusable(
        f"the release record has no image for container {container!r} (it has "
        f"{', '.join(image.container for image in release.images)}). Start the release again."
    )


def load(s3: Any, summary: ReleaseSummary) -> Release:
    """The whole release a summary names, its bytes checked against the hash in its name."""
    bucket, _, key = summary.record.removeprefix("s3://").partition("/")
    try:
        with transient_errors(f"reading the release record {summary.record}"):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        raise ReleaseRecordUnusable(
            f"the release record {summary.record} cannot be read ({error_code(exc)}): it was deleted, or the "
            "function may not read mlpublish/releases/ in the pipeline bucket. Start the release again."
        ) from exc
    if record_key(body) != key:
        raise ReleaseRecordUnusable(
            f"the release record {summary.record} holds other bytes than ResolveRelease wrote (their sha256 is "
            f"{hashlib.sha256(body).hexdigest()}); it was changed in the bucket. Start the release again."
        )
    return Release.model_validate_json(body)

"""The resolved release kept in the pipeline bucket (mlpublish/records.py): what the state
carries of it, and what the steps read back."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.fixtures.releases import resolved_release

from mlpublish.announce import failed
from mlpublish.errors import ReleaseRecordUnusable, TransientAwsError
from mlpublish.records import RECORD_PREFIX, image_of, load, store
from mlpublish.state import ReleaseSummary

pytestmark = pytest.mark.unit

BUCKET = "mlpublish-pipeline"


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.error: str | None = None

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:
        self.objects[(Bucket, Key)] = Body
        return {}

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        if self.error or (Bucket, Key) not in self.objects:
            code = self.error or "NoSuchKey"
            status = 503 if code == "SlowDown" else 404
            raise ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}


def test_given_a_resolved_release_when_stored_then_the_state_carries_a_summary_and_steps_read_it_back() -> None:
    s3, release = FakeS3(), resolved_release()

    summary = store(s3, BUCKET, release)

    [(bucket, key)] = s3.objects
    assert summary.record == f"s3://{bucket}/{key}"
    assert bucket == BUCKET
    assert key.startswith(f"{RECORD_PREFIX}v1/")
    assert load(s3, summary) == release
    assert (summary.product, summary.version) == (release.spec.product.name, release.spec.product.version)
    assert summary.containers == [image.container for image in release.images]
    assert (summary.package, summary.listing) == (False, False)
    assert len(summary.model_dump_json()) < len(release.model_dump_json()) / 2


def test_given_the_same_release_stored_twice_then_it_is_one_record() -> None:
    s3, release = FakeS3(), resolved_release()

    assert store(s3, BUCKET, release) == store(s3, BUCKET, release)
    assert len(s3.objects) == 1


def test_given_a_record_changed_in_the_bucket_then_reading_it_is_refused_naming_it() -> None:
    s3 = FakeS3()
    summary = store(s3, BUCKET, resolved_release())
    [where] = s3.objects
    document = json.loads(s3.objects[where])
    document["publishing_region"] = "eu-west-1"
    s3.objects[where] = json.dumps(document).encode()

    with pytest.raises(ReleaseRecordUnusable, match=f"{summary.record} holds other bytes"):
        load(s3, summary)


def test_given_a_deleted_record_then_reading_it_is_refused_saying_to_start_again() -> None:
    s3 = FakeS3()
    summary = store(s3, BUCKET, resolved_release())
    s3.objects.clear()

    with pytest.raises(ReleaseRecordUnusable, match=r"cannot be read \(NoSuchKey\).*Start the release again"):
        load(s3, summary)


def test_given_s3_throttling_when_reading_a_record_then_the_state_machine_retries() -> None:
    s3 = FakeS3()
    summary = store(s3, BUCKET, resolved_release())
    s3.error = "SlowDown"

    with pytest.raises(TransientAwsError):
        load(s3, summary)


def test_given_a_container_the_record_has_no_image_for_then_it_is_refused_naming_those_it_has() -> None:
    release = resolved_release()

    assert image_of(release, release.images[0].container) == release.images[0]
    with pytest.raises(ReleaseRecordUnusable, match="no image for container 'other'"):
        image_of(release, "other")


def test_given_an_unreadable_record_when_a_failure_is_announced_then_it_names_the_release_from_the_summary() -> None:
    s3, release = FakeS3(), resolved_release()
    summary: ReleaseSummary = store(s3, BUCKET, release)
    state = {
        "release": summary.model_dump(mode="json"),
        "failed_stage": "ScanImages",
        "error": {"Error": "ImageScanBlocked", "Cause": "scan found no OS"},
    }

    announcement = failed(state)

    title = f"{release.spec.product.name} {release.spec.product.version}"
    assert announcement.subject.startswith(f"Release failed: {title} at ScanImages")
    assert announcement.detail["release_uri"] == release.release_uri
    assert announcement.message_attributes["region"]["StringValue"] == release.publishing_region

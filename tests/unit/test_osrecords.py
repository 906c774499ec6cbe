"""The OS found for a manifest digest, remembered in the pipeline bucket: what is recorded, what is trusted."""

from __future__ import annotations

import io
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from mlpublish.images.osinfo import OsDetection, OsRelease
from mlpublish.images.osrecords import OsRecord, OsRecords

pytestmark = pytest.mark.unit

BUCKET = "mlpublish-pipeline-bucket"
DIGEST = "sha256:" + "ab" * 32
DEBIAN = OsRelease(id="debian", version_id="12", pretty_name="Debian GNU/Linux 12 (bookworm)")


class Bucket:
    """GetObject and PutObject by key; ``refuse`` answers every call with that error code."""

    def __init__(self, refuse: str | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.refuse = refuse

    def _refused(self, operation: str) -> None:
        if self.refuse == "connection":
            raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")
        if self.refuse:
            raise ClientError({"Error": {"Code": self.refuse, "Message": "x"}}, operation)

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        self._refused("GetObject")
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "x"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:
        self._refused("PutObject")
        self.objects[Key] = Body
        return {}


def test_given_an_os_found_then_it_is_recorded_under_the_digest_and_read_back_as_remembered() -> None:
    records = OsRecords(Bucket(), BUCKET)

    records.put(DIGEST, OsDetection(DEBIAN, bytes_read=4096))

    assert records.uri(DIGEST) == f"s3://{BUCKET}/mlpublish/os-release/v1/{'ab' * 32}.json"
    assert records.get(DIGEST) == OsDetection(DEBIAN, bytes_read=0, remembered=True)
    assert records.get("sha256:" + "cd" * 32) is None


def test_given_an_image_without_os_then_that_is_recorded_too() -> None:
    records = OsRecords(Bucket(), BUCKET)

    records.put(DIGEST, OsDetection(None, bytes_read=100))

    remembered = records.get(DIGEST)
    assert remembered is not None
    assert remembered.absent


def test_given_an_uncertain_answer_then_nothing_is_recorded_and_a_later_run_reads_again() -> None:
    bucket = Bucket()

    OsRecords(bucket, BUCKET).put(DIGEST, OsDetection(None, "the read budget of 512 MiB ran out", bytes_read=1))

    assert bucket.objects == {}


@pytest.mark.parametrize("code", ["AccessDenied", "403", "NoSuchKey", "InternalError", "connection"])
def test_given_a_record_that_cannot_be_read_then_it_counts_as_not_recorded(code: str) -> None:
    # Without s3:ListBucket, S3 answers a missing key with 403: not recorded, as a 404 is.
    assert OsRecords(Bucket(refuse=code), BUCKET).get(DIGEST) is None


def test_given_a_record_that_cannot_be_written_then_the_release_goes_on() -> None:
    OsRecords(Bucket(refuse="AccessDenied"), BUCKET).put(DIGEST, OsDetection(DEBIAN, bytes_read=1))


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"digest": "sha256:00", "os": null, "bytes_read": 1}', b'{"os": {"id": 1}}'],
    ids=["not-json", "another-digest", "wrong-shape"],
)
def test_given_an_unusable_record_then_the_layers_are_read_and_it_is_replaced(body: bytes) -> None:
    bucket = Bucket()
    records = OsRecords(bucket, BUCKET)
    bucket.objects[records.key(DIGEST)] = body

    assert records.get(DIGEST) is None
    records.put(DIGEST, OsDetection(DEBIAN, bytes_read=1))
    assert OsRecord.model_validate_json(bucket.objects[records.key(DIGEST)]).os == DEBIAN


def test_given_a_remembered_answer_then_it_is_not_written_again() -> None:
    bucket = Bucket()

    OsRecords(bucket, BUCKET).put(DIGEST, OsDetection(DEBIAN, remembered=True))

    assert bucket.objects == {}


def test_given_an_empty_release_prefix_then_the_pipelines_os_records_are_never_release_files() -> None:
    from mlpublish.trigger import ReleaseCatalog

    catalog = ReleaseCatalog(s3=None, bucket="pipeline", prefix="")  # ReleasePrefix "" is allowed

    assert catalog.is_release_key("pipeline", "acme.json")
    assert not catalog.is_release_key("pipeline", "mlpublish/os-release/v1/" + "0" * 64 + ".json")

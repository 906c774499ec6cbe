"""Large objects copied in parts across invocations, against moto's S3 (with the sandbox's S3
extension: every UploadPartCopy honours its pinned ETag): plan, part ranges, completion, resume.

Parts are 5 MiB here (S3's smallest) so that objects of a few MiB have several parts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from tests.fixtures.moto_world import create_bucket
from tests.fixtures.releases import PUBLISHING_BUCKET, PUBLISHING_REGION, SOURCE_REGION

from mlpublish import objects
from mlpublish.errors import ArtifactCopyFailed, SourceChanged
from mlpublish.objects import SOURCE_ETAG, SOURCE_URI, complete_copy, copy_part_range, plan_artifacts
from mlpublish.state import ArtifactCopy, PartRangeCopy, PartUpload, PinnedObject

pytestmark = pytest.mark.integration

SOURCE_BUCKET = "acme-ml-artifacts"
MiB = 1024 * 1024
PLENTY_OF_TIME: Callable[[], int] = lambda: 600_000  # noqa: E731


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objects, "PART_SIZE", 5 * MiB)
    monkeypatch.setattr(objects, "MULTIPART_THRESHOLD", 5 * MiB)
    monkeypatch.setattr(objects, "MIN_PARTS_PER_RANGE", 2)


@pytest.fixture
def source_s3(moto_aws: None) -> Any:
    s3 = boto3.client("s3", region_name=SOURCE_REGION)
    create_bucket(s3, SOURCE_BUCKET, SOURCE_REGION)
    return s3


@pytest.fixture
def destination_s3(moto_aws: None) -> Any:
    return boto3.client("s3", region_name=PUBLISHING_REGION)


@pytest.fixture
def part_copies(destination_s3: Any) -> list[dict[str, Any]]:
    """Every UploadPartCopy request sent, with its parameters."""
    sent: list[dict[str, Any]] = []
    destination_s3.meta.events.register(
        "provide-client-params.s3.UploadPartCopy", lambda params, **_: sent.append(params)
    )
    return sent


def upload(s3: Any, key: str, body: bytes, role: str = "model_data") -> PinnedObject:
    s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=body)
    etag = s3.head_object(Bucket=SOURCE_BUCKET, Key=key)["ETag"].strip('"')
    return PinnedObject(
        role=role,  # type: ignore[arg-type]
        container="inference" if role == "model_data" else None,
        source_bucket=SOURCE_BUCKET,
        source_key=key,
        etag=etag,
        size=len(body),
        destination_bucket=PUBLISHING_BUCKET,
        destination_key=f"artifacts/acme-sentiment/1.2.0/{etag}/{key.rsplit('/', 1)[-1]}",
    )


def only_upload(plan_copies: list[ArtifactCopy]) -> tuple[PinnedObject, PartUpload]:
    [copy] = [copy for copy in plan_copies if copy.upload is not None]
    assert copy.object is not None
    assert copy.upload is not None
    return copy.object, copy.upload


def range_request(item: PinnedObject, upload: PartUpload, index: int) -> PartRangeCopy:
    return PartRangeCopy(
        object=item,
        upload=upload,
        range_index=index,
        source_region=SOURCE_REGION,
        publishing_region=PUBLISHING_REGION,
    )


def copy_range(source_s3: Any, destination_s3: Any, request: PartRangeCopy) -> Iterator[PartRangeCopy]:
    """Invoke the range until done, as the state machine's loop does; yields each result."""
    while not request.done:
        request = copy_part_range(source_s3, destination_s3, request, PLENTY_OF_TIME)
        yield request


def test_given_large_and_small_objects_when_planned_then_small_ones_are_grouped_and_the_large_one_gets_an_upload(
    source_s3: Any, destination_s3: Any
) -> None:
    model = upload(source_s3, "sentiment/model.tar.gz", os.urandom(22 * MiB))
    small = upload(source_s3, "sentiment/input.csv", b"text\nnice\n", role="validation_input")
    other = upload(source_s3, "sentiment/labels.json", b"{}", role="validation_input")

    plan = plan_artifacts(destination_s3, [small, model, other], region=PUBLISHING_REGION)

    assert [copy.objects for copy in plan.copies if copy.upload is None] == [[small, other]]
    item, upload_plan = only_upload(plan.copies)
    assert item == model
    assert (upload_plan.part_size, upload_plan.parts, upload_plan.parts_per_range, upload_plan.ranges) == (
        5 * MiB,
        5,
        2,
        3,
    )
    [listed] = destination_s3.list_multipart_uploads(Bucket=PUBLISHING_BUCKET)["Uploads"]
    assert (listed["Key"], listed["UploadId"]) == (model.destination_key, upload_plan.upload_id)
    assert destination_s3.get_bucket_tagging(Bucket=PUBLISHING_BUCKET)["TagSet"] == [objects.MANAGED_BY]


def test_given_every_range_copied_when_completed_then_the_object_is_identical_verified_and_pinned_on_every_part(
    source_s3: Any, destination_s3: Any, part_copies: list[dict[str, Any]]
) -> None:
    body = os.urandom(22 * MiB)
    model = upload(source_s3, "sentiment/model.tar.gz", body)
    item, upload_plan = only_upload(plan_artifacts(destination_s3, [model], region=PUBLISHING_REGION).copies)

    for index in range(upload_plan.ranges):
        *_, last = copy_range(source_s3, destination_s3, range_request(item, upload_plan, index))
        assert last.done
    copied = complete_copy(destination_s3, item, upload_plan)

    assert (copied.uri, copied.size, copied.copied) == (item.destination_uri, len(body), True)
    assert sorted(params["PartNumber"] for params in part_copies) == [1, 2, 3, 4, 5]
    assert {params["CopySourceIfMatch"] for params in part_copies} == {f'"{model.etag}"'}
    assert part_copies[-1]["CopySourceRange"] == f"bytes={20 * MiB}-{22 * MiB - 1}"
    result = destination_s3.get_object(Bucket=PUBLISHING_BUCKET, Key=item.destination_key)
    assert result["ETag"].strip('"').endswith("-5")
    assert result["Metadata"] == {SOURCE_ETAG: model.etag, SOURCE_URI: model.source_uri}
    assert result["Body"].read() == body
    assert destination_s3.list_multipart_uploads(Bucket=PUBLISHING_BUCKET).get("Uploads", []) == []
    # Planned again (a re-run of the release): it is in place and joins a group, nothing to copy in parts.
    again = plan_artifacts(destination_s3, [model], region=PUBLISHING_REGION)
    assert [copy.objects for copy in again.copies] == [[model]]


def test_given_a_worker_killed_mid_range_when_the_range_runs_again_then_acknowledged_parts_are_not_copied_again(
    source_s3: Any, destination_s3: Any, part_copies: list[dict[str, Any]]
) -> None:
    model = upload(source_s3, "sentiment/model.tar.gz", os.urandom(30 * MiB))
    item, upload_plan = only_upload(plan_artifacts(destination_s3, [model], region=PUBLISHING_REGION).copies)
    assert (upload_plan.ranges, upload_plan.parts_per_range) == (3, 2)
    whole = upload_plan.model_copy(update={"parts_per_range": 6, "ranges": 1, "last_range": 0})  # one range of 6
    request = range_request(item, whole, 0)

    class Killed(Exception):
        pass

    def die_after_third_part(**_: Any) -> None:
        if len(part_copies) == 3:
            raise Killed  # the third part landed; its answer never reached the (dead) worker

    destination_s3.meta.events.register("after-call.s3.UploadPartCopy", die_after_third_part)
    with pytest.raises(Killed):
        copy_part_range(source_s3, destination_s3, request, PLENTY_OF_TIME)
    destination_s3.meta.events.unregister("after-call.s3.UploadPartCopy", die_after_third_part)

    # The retried invocation (and a re-planned release) find the upload and its three parts.
    replanned = only_upload(plan_artifacts(destination_s3, [model], region=PUBLISHING_REGION).copies)[1]
    assert (replanned.upload_id, replanned.parts_done) == (upload_plan.upload_id, 3)
    result = copy_part_range(source_s3, destination_s3, request, PLENTY_OF_TIME)

    assert (result.done, result.parts_present, result.parts_copied) == (True, 3, 3)
    assert [params["PartNumber"] for params in part_copies] == [1, 2, 3, 4, 5, 6]  # each part sent once
    complete_copy(destination_s3, item, whole)
    assert destination_s3.head_object(Bucket=PUBLISHING_BUCKET, Key=item.destination_key)["ContentLength"] == (
        model.size
    )


def test_given_little_time_left_when_copying_a_range_then_it_stops_between_parts_and_the_next_call_goes_on(
    source_s3: Any, destination_s3: Any, part_copies: list[dict[str, Any]]
) -> None:
    model = upload(source_s3, "sentiment/model.tar.gz", os.urandom(20 * MiB))
    item, upload_plan = only_upload(plan_artifacts(destination_s3, [model], region=PUBLISHING_REGION).copies)
    whole = upload_plan.model_copy(update={"parts_per_range": 4, "ranges": 1, "last_range": 0})
    request = range_request(item, whole, 0)
    clock = iter([500, 5_000, 500])  # ms left, asked before each part but an invocation's first

    first = copy_part_range(source_s3, destination_s3, request, lambda: next(clock))
    second = copy_part_range(source_s3, destination_s3, first, lambda: next(clock))
    third = copy_part_range(source_s3, destination_s3, second, lambda: next(clock))

    assert [(r.next_part, r.done, r.parts_copied, r.invocations) for r in (first, second, third)] == [
        (2, False, 1, 1),  # 500 ms left after part 1: less than the margin
        (4, False, 3, 2),
        (5, True, 4, 3),  # one part at least per invocation, whatever the time
    ]
    assert [params["PartNumber"] for params in part_copies] == [1, 2, 3, 4]


def test_given_the_source_overwritten_mid_copy_then_source_changed_the_upload_is_aborted_and_other_ranges_say_so(
    source_s3: Any, destination_s3: Any
) -> None:
    model = upload(source_s3, "sentiment/model.tar.gz", os.urandom(22 * MiB))
    item, upload_plan = only_upload(plan_artifacts(destination_s3, [model], region=PUBLISHING_REGION).copies)
    list(copy_range(source_s3, destination_s3, range_request(item, upload_plan, 0)))
    source_s3.put_object(Bucket=SOURCE_BUCKET, Key=model.source_key, Body=b"overwritten after the release resolved")

    with pytest.raises(SourceChanged) as caught:
        copy_part_range(source_s3, destination_s3, range_request(item, upload_plan, 1), PLENTY_OF_TIME)
    with pytest.raises(SourceChanged):
        copy_part_range(source_s3, destination_s3, range_request(item, upload_plan, 2), PLENTY_OF_TIME)

    assert caught.value.message.startswith(f"{model.source_uri} changed after the release was resolved")
    assert destination_s3.list_multipart_uploads(Bucket=PUBLISHING_BUCKET).get("Uploads", []) == []
    assert destination_s3.list_objects_v2(Bucket=PUBLISHING_BUCKET)["KeyCount"] == 0


def test_given_a_part_missing_when_completing_then_nothing_is_completed_and_the_missing_parts_are_named(
    source_s3: Any, destination_s3: Any
) -> None:
    model = upload(source_s3, "sentiment/model.tar.gz", os.urandom(22 * MiB))
    item, upload_plan = only_upload(plan_artifacts(destination_s3, [model], region=PUBLISHING_REGION).copies)
    list(copy_range(source_s3, destination_s3, range_request(item, upload_plan, 0)))

    with pytest.raises(ArtifactCopyFailed, match="parts 3, 4, 5 missing, none of the wrong size, of 5"):
        complete_copy(destination_s3, item, upload_plan)

    assert destination_s3.list_objects_v2(Bucket=PUBLISHING_BUCKET)["KeyCount"] == 0


def test_given_a_completion_whose_answer_was_lost_when_completed_again_then_it_confirms_the_object(
    source_s3: Any, destination_s3: Any
) -> None:
    model = upload(source_s3, "sentiment/model.tar.gz", os.urandom(12 * MiB))
    item, upload_plan = only_upload(plan_artifacts(destination_s3, [model], region=PUBLISHING_REGION).copies)
    for index in range(upload_plan.ranges):
        list(copy_range(source_s3, destination_s3, range_request(item, upload_plan, index)))
    complete_copy(destination_s3, item, upload_plan)

    again = complete_copy(destination_s3, item, upload_plan)

    assert again.uri == item.destination_uri
    assert destination_s3.head_object(Bucket=PUBLISHING_BUCKET, Key=item.destination_key)["ContentLength"] == item.size


def test_given_an_upload_with_parts_of_another_size_when_planned_then_it_is_aborted_and_a_new_one_started(
    source_s3: Any, destination_s3: Any
) -> None:
    model = upload(source_s3, "sentiment/model.tar.gz", os.urandom(22 * MiB))
    create_bucket(destination_s3, PUBLISHING_BUCKET, PUBLISHING_REGION)
    stale = destination_s3.create_multipart_upload(Bucket=PUBLISHING_BUCKET, Key=model.destination_key)["UploadId"]
    destination_s3.upload_part_copy(
        Bucket=PUBLISHING_BUCKET,
        Key=model.destination_key,
        UploadId=stale,
        PartNumber=1,
        CopySource={"Bucket": SOURCE_BUCKET, "Key": model.source_key},
        CopySourceRange=f"bytes=0-{8 * MiB - 1}",
    )

    _, upload_plan = only_upload(plan_artifacts(destination_s3, [model], region=PUBLISHING_REGION).copies)

    assert upload_plan.upload_id != stale
    assert upload_plan.parts_done == 0
    [listed] = destination_s3.list_multipart_uploads(Bucket=PUBLISHING_BUCKET)["Uploads"]
    assert listed["UploadId"] == upload_plan.upload_id


def test_given_a_completed_object_that_does_not_verify_then_it_is_removed_and_the_copy_fails(
    source_s3: Any, destination_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = upload(source_s3, "sentiment/model.tar.gz", os.urandom(12 * MiB))
    item, upload_plan = only_upload(plan_artifacts(destination_s3, [model], region=PUBLISHING_REGION).copies)
    for index in range(upload_plan.ranges):
        list(copy_range(source_s3, destination_s3, range_request(item, upload_plan, index)))
    # As if S3 had assembled other parts than those listed.
    monkeypatch.setattr(objects, "multipart_etag", lambda etags: f"{'0' * 32}-{len(etags)}")

    with pytest.raises(ArtifactCopyFailed, match=f"expected {model.size:,} bytes, ETag 0{{32}}-3 .* It was removed"):
        complete_copy(destination_s3, item, upload_plan)

    assert destination_s3.list_objects_v2(Bucket=PUBLISHING_BUCKET)["KeyCount"] == 0


def test_given_an_sse_kms_bucket_whose_etags_are_opaque_then_the_copy_verifies_by_size_count_and_source(
    source_s3: Any, destination_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = upload(source_s3, "sentiment/model.tar.gz", os.urandom(12 * MiB))
    item, upload_plan = only_upload(plan_artifacts(destination_s3, [model], region=PUBLISHING_REGION).copies)
    for index in range(upload_plan.ranges):
        list(copy_range(source_s3, destination_s3, range_request(item, upload_plan, index)))
    monkeypatch.setattr(objects, "multipart_etag", lambda etags: "not derivable from the parts")
    head = destination_s3.head_object
    monkeypatch.setattr(
        destination_s3, "head_object", lambda **kwargs: {**head(**kwargs), "ServerSideEncryption": "aws:kms"}
    )

    copied = complete_copy(destination_s3, item, upload_plan)

    assert copied.uri == item.destination_uri
    assert head(Bucket=PUBLISHING_BUCKET, Key=item.destination_key)["ContentLength"] == model.size

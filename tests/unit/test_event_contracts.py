"""Contract tests: every sample in events/ is parsed by the model of its entry point.

The samples are what a seller or operator copies (``aws stepfunctions start-execution
--input file://events/manual-start.json``, ``sam local invoke -e events/...``), so each one
must parse with the model the pipeline really uses, and all of them describe the same
release as events/release.example.yaml. A new file in events/ needs an entry in
``CONTRACTS`` (filename -> parser), or the test that lists events/ fails.

The handlers' input models (in mlpublish.state) are held to the same contract: each parses
what the steps before it return, after the trip through JSON that Step Functions makes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from aws_lambda_powertools.utilities.parser.models import (
    EventBridgeModel,
    S3EventNotificationEventBridgeModel,
    SqsModel,
)
from pydantic import BaseModel
from tests.fixtures.releases import (
    ACCOUNT,
    ARTIFACT_BUCKET,
    MODEL_KEY,
    REPOSITORY,
    SOURCE_REGION,
    TAG,
    published_images,
    resolved_release,
)

from mlpublish.errors import InvalidRelease
from mlpublish.images.copy import copy_target
from mlpublish.records import summary
from mlpublish.release import ReleaseSpec, parse_release
from mlpublish.resolve import parse_start
from mlpublish.state import (
    DOCKER_V2_MANIFEST,
    AnnouncementInput,
    BatchCopied,
    BatchProgress,
    BlobRef,
    CompleteArtifactInput,
    CopyArtifactsInput,
    CopyBatchInput,
    CreateModelPackageInput,
    ImagePlan,
    ListingProgress,
    PartRangeCopy,
    PartUpload,
    PinSet,
    PlanArtifactsInput,
    PlanImageInput,
    PutManifestInput,
    ResourceResult,
    ScanImagesInput,
    ScanProgress,
    StartInput,
    UploadProgress,
    ValidationProgress,
)
from mlpublish.trigger import (
    EcrPushDetail,
    EventBridgeEvent,
    ReleaseCatalog,
    S3CreatedDetail,
    releases_for_push,
    releases_for_upload,
)
from mlpublish.waits import Watch

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parents[2] / "events"
RELEASE_KEY = "releases/acme-sentiment.yaml"

# Every field path release.invalid.yaml breaks, one mistake each.
INVALID_FIELDS = (
    "product.name",
    "containers.0.image",
    "containers.0.platform",
    "containers.0.model_data",
    "inference.realtime_instance_types",
    "validation.split_type",
    "validation.max_payload_mb",
    "validation.timeout_minute",
)


def _json(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def parse_ecr_push(path: Path) -> EcrPushDetail:
    EventBridgeModel.model_validate_json(path.read_bytes())  # the envelope as AWS sends it
    event = EventBridgeEvent.model_validate_json(path.read_bytes())
    return EcrPushDetail.model_validate(event.detail)


def parse_s3_upload(path: Path) -> S3CreatedDetail:
    S3EventNotificationEventBridgeModel.model_validate_json(path.read_bytes())  # as S3 sends it
    event = EventBridgeEvent.model_validate_json(path.read_bytes())
    return S3CreatedDetail.model_validate(event.detail)


def parse_sqs_batch(path: Path) -> list[EventBridgeEvent]:
    """As the trigger Lambda reads it: SQS records (Powertools) whose bodies are EventBridge events."""
    raw = json.loads(path.read_bytes())
    SqsModel.model_validate(raw)  # every field Lambda's SQS event source delivers
    return [EventBridgeEvent.model_validate_json(record.body) for record in SQSEvent(raw).records]


def parse_manual_start(path: Path) -> StartInput:
    return parse_start(json.loads(path.read_bytes()))


def parse_release_file(path: Path) -> ReleaseSpec:
    return parse_release(path.read_bytes(), source=path.name)


def parse_invalid_release(path: Path) -> InvalidRelease:
    with pytest.raises(InvalidRelease) as raised:
        parse_release(path.read_bytes(), source=path.name)
    return raised.value


CONTRACTS: dict[str, Callable[[Path], Any]] = {
    "ecr-push.json": parse_ecr_push,
    "s3-upload.json": parse_s3_upload,
    "sqs-trigger-batch.json": parse_sqs_batch,
    "manual-start.json": parse_manual_start,
    "release.example.yaml": parse_release_file,
    "release.algorithm.yaml": parse_release_file,
    "release.listing.yaml": parse_release_file,
    "release.from-algorithm.yaml": parse_release_file,
    "release.invalid.yaml": parse_invalid_release,
}


class _Catalog(ReleaseCatalog):
    """The pipeline bucket's release files, given here instead of listed from S3."""

    def __init__(self, releases: list[tuple[str, ReleaseSpec]]) -> None:
        super().__init__(s3=None, bucket="pipeline", prefix="releases/")
        self.releases = releases

    def all(self) -> list[tuple[str, ReleaseSpec]]:
        return self.releases


@pytest.fixture(scope="module")
def example() -> ReleaseSpec:
    return parse_release_file(EVENTS / "release.example.yaml")


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_given_a_sample_event_when_its_contract_parses_it_then_it_is_accepted(name: str) -> None:
    assert CONTRACTS[name](EVENTS / name) is not None


def test_given_events_dir_when_listed_then_every_file_has_a_contract() -> None:
    files = {path.name for path in EVENTS.iterdir() if path.is_file()}

    assert files - CONTRACTS.keys() == set(), "add the new sample to CONTRACTS with the model that parses it"
    assert CONTRACTS.keys() - files == set(), "a sample in CONTRACTS is missing from events/"


def test_given_the_ecr_push_sample_when_parsed_then_it_is_a_successful_push_of_the_example_image() -> None:
    event = EventBridgeEvent.model_validate(_json("ecr-push.json"))
    push = EcrPushDetail.model_validate(event.detail)

    assert (event.source, event.detail_type) == ("aws.ecr", "ECR Image Action")
    assert (event.account, event.region) == (ACCOUNT, SOURCE_REGION)
    assert (push.result, push.action_type) == ("SUCCESS", "PUSH")
    assert (push.repository_name, push.image_tag) == (REPOSITORY, TAG)
    assert push.image_digest.startswith("sha256:")
    assert len(push.image_digest) == len("sha256:") + 64


def test_given_the_ecr_push_sample_when_matched_with_the_example_release_then_its_container_is_pinned(
    example: ReleaseSpec,
) -> None:
    event = EventBridgeEvent.model_validate(_json("ecr-push.json"))

    matches = releases_for_push(_Catalog([(RELEASE_KEY, example)]), event)

    assert [(key, pins.images) for key, _, pins in matches] == [
        (RELEASE_KEY, {"inference": event.detail["image-digest"]})
    ]


def test_given_the_s3_upload_sample_when_parsed_then_it_is_the_example_model_artifact() -> None:
    event = EventBridgeEvent.model_validate(_json("s3-upload.json"))
    upload = S3CreatedDetail.model_validate(event.detail)

    assert (event.source, event.detail_type) == ("aws.s3", "Object Created")
    assert (event.account, event.region) == (ACCOUNT, SOURCE_REGION)
    assert (upload.bucket.name, upload.object.key) == (ARTIFACT_BUCKET, MODEL_KEY)
    assert upload.object.size is not None
    assert upload.object.size > 0
    assert upload.object.etag


def test_given_the_s3_upload_sample_when_matched_with_the_example_release_then_its_etag_and_size_are_pinned(
    example: ReleaseSpec,
) -> None:
    event = EventBridgeEvent.model_validate(_json("s3-upload.json"))
    obj = event.detail["object"]
    uri = f"s3://{ARTIFACT_BUCKET}/{MODEL_KEY}"

    matches = releases_for_upload(_Catalog([(RELEASE_KEY, example)]), event)

    assert [(key, pins) for key, _, pins in matches] == [
        (RELEASE_KEY, PinSet(etags={uri: obj["etag"]}, sizes={uri: obj["size"]}))
    ]


def test_given_the_sqs_batch_when_parsed_then_its_bodies_are_the_two_sample_events() -> None:
    events = parse_sqs_batch(EVENTS / "sqs-trigger-batch.json")
    bodies = [json.loads(record["body"]) for record in _json("sqs-trigger-batch.json")["Records"]]

    assert [event.detail_type for event in events] == ["ECR Image Action", "Object Created"]
    assert bodies == [_json("ecr-push.json"), _json("s3-upload.json")]


def test_given_the_sqs_batch_when_read_then_each_record_is_from_the_trigger_queue_with_its_body_md5() -> None:
    for record in _json("sqs-trigger-batch.json")["Records"]:
        assert record["eventSource"] == "aws:sqs"
        assert record["awsRegion"] == SOURCE_REGION
        assert record["eventSourceARN"].startswith(f"arn:aws:sqs:{SOURCE_REGION}:{ACCOUNT}:")
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()


def test_given_the_manual_start_sample_when_parsed_then_it_names_the_example_release_file() -> None:
    start = parse_manual_start(EVENTS / "manual-start.json")

    assert start.release_uri is not None
    assert start.release_uri.startswith("s3://")
    assert start.release_uri.endswith("/" + RELEASE_KEY)
    assert start.release is None
    assert start.trigger.kind == "manual"
    assert start.pins == PinSet()


def test_given_the_example_release_when_parsed_then_it_names_the_sample_events_sources(example: ReleaseSpec) -> None:
    ref = example.containers[0].image_ref

    assert (ref.registry_id, ref.region, ref.repository, ref.tag) == (ACCOUNT, SOURCE_REGION, REPOSITORY, TAG)
    assert example.containers[0].model_data == f"s3://{ARTIFACT_BUCKET}/{MODEL_KEY}"


def test_given_the_invalid_release_when_parsed_then_every_broken_field_path_is_reported() -> None:
    error = parse_invalid_release(EVENTS / "release.invalid.yaml")
    paths = [reason.split(": ", 1)[0] for reason in error.reasons]

    assert sorted(paths) == sorted(INVALID_FIELDS)
    assert "release.invalid.yaml" in error.message
    assert all(reason.split(": ", 1)[1].strip() for reason in error.reasons)


# --- handler inputs: each parses, as JSON, what the steps before it return --------------


def _handler_inputs() -> dict[str, tuple[type[BaseModel], dict[str, Any]]]:
    """Each handler's input as its task's Parameters build it from the earlier steps' outputs."""
    release = resolved_release()
    images = published_images(release)
    layer = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    blob = BlobRef(digest="sha256:" + "b" * 64, size=300, media_type=layer)
    plan = ImagePlan(
        target=copy_target(release.images[0], release.publishing_region),
        source_media_type=DOCKER_V2_MANIFEST,
        selected_digest=images[0].selected_digest,
        published_digest=images[0].digest,
        conversion="none",
        blobs=2,
        blobs_to_copy=1,
        bytes_to_copy=blob.size,
        batches=[0],
    )
    copied = [BatchCopied(batch=0, blobs_copied=1, blobs_skipped=1, bytes_copied=blob.size)]
    unfinished = BatchCopied(
        batch=0,
        done=False,
        progress=BatchProgress(
            blob=1, upload=UploadProgress(location="/v2/acme/sentiment/blobs/uploads/u", offset=10), blobs_skipped=1
        ),
    )
    scan = ScanProgress(complete=False, attempt=1, wait_seconds=15, images=[])
    arn = f"arn:aws:sagemaker:us-east-2:{ACCOUNT}:model-package/acme-sentiment-1-2-0-01234567"
    resource = ResourceResult(arn=arn, name=arn.rsplit("/", 1)[-1], action="created")
    validation = ValidationProgress(status="InProgress", attempt=2, wait_seconds=60, elapsed_seconds=120)
    state = json.loads(
        json.dumps(
            {
                "release": summary(release, f"s3://pipeline-bucket/mlpublish/releases/v1/{'a' * 64}.json").model_dump(),
                "copied": {"images": [image.model_dump(mode="json") for image in images], "artifacts": []},
                "scan": scan.model_dump(mode="json"),
                "resource": resource.model_dump(mode="json"),
                "validation": validation.model_dump(mode="json"),
            }
        )
    )
    region = state["release"]["publishing_region"]
    objects = release.model_dump(mode="json")["objects"]  # as PlanArtifacts reads them from the record
    item = objects[0]
    upload = PartUpload(upload_id="u" * 56, part_size=64 * 2**20, parts=80, parts_per_range=4, ranges=20, last_range=19)
    part_copy = {
        "object": item,
        "upload": upload.model_dump(mode="json"),
        "source_region": state["release"]["source_region"],
        "publishing_region": region,
    }
    return {
        "PlanImage": (PlanImageInput, {"release": state["release"], "container": state["release"]["containers"][0]}),
        "PutManifest": (
            PutManifestInput,
            {
                "plan": plan.model_dump(mode="json"),
                "batches": [item.model_dump(mode="json", exclude_none=True) for item in copied],
            },
        ),
        # The Map's ItemSelector, then ContinueBlob's Parameters with the unfinished result.
        "CopyBlob": (
            CopyBatchInput,
            {"target": plan.model_dump(mode="json")["target"], "published_digest": plan.published_digest, "batch": 0},
        ),
        "CopyBlob again": (
            CopyBatchInput,
            {
                "target": plan.model_dump(mode="json")["target"],
                "published_digest": plan.published_digest,
                "batch": 0,
                "progress": unfinished.model_dump(mode="json", exclude_none=True)["progress"],
            },
        ),
        # A group of the plan's small objects (ArtifactCopy.objects), the buckets set up by the plan.
        "CopyArtifacts": (
            CopyArtifactsInput,
            {
                "objects": objects,
                "source_region": state["release"]["source_region"],
                "publishing_region": region,
                "buckets_ready": True,
            },
        ),
        "PlanArtifacts": (PlanArtifactsInput, {"release": state["release"]}),
        # The first invocation of a range (the Map's ItemSelector), then its own output fed back.
        "CopyArtifactParts": (
            PartRangeCopy,
            {
                **part_copy,
                "range_index": 3,
                "next_part": 0,
                "done": False,
                "parts_copied": 0,
                "parts_present": 0,
                "invocations": 0,
            },
        ),
        "CopyArtifactParts again": (
            PartRangeCopy,
            {
                **part_copy,
                "range_index": 3,
                "next_part": 15,
                "done": False,
                "parts_copied": 2,
                "parts_present": 0,
                "invocations": 1,
            },
        ),
        "CompleteArtifact": (
            CompleteArtifactInput,
            {key: value for key, value in part_copy.items() if key != "source_region"},
        ),
        "ScanImages": (
            ScanImagesInput,
            {"images": state["copied"]["images"], "attempt": state["scan"]["attempt"], "publishing_region": region},
        ),
        "CreateModelPackage": (
            CreateModelPackageInput,
            {"release": state["release"], "images": state["copied"]["images"], "algorithm_arn": None},
        ),
        "AwaitValidation": (
            Watch,
            {
                "validation": {
                    "arn": state["resource"]["arn"],
                    "attempt": state["validation"]["attempt"],
                    "elapsed_seconds": state["validation"]["elapsed_seconds"],
                    "timeout_minutes": state["release"]["timeout_minutes"],
                    "publishing_region": region,
                },
                "listing": None,
            },
        ),
        "AwaitListing": (
            Watch,
            {
                "validation": None,
                "listing": ListingProgress(
                    status="PREPARING",
                    attempt=1,
                    wait_seconds=1800,
                    product_id="prod-x",
                    version_title="1.2.0",
                    change_set_id="cs-1",
                    change_set_arn=f"arn:aws:aws-marketplace:us-east-1:{ACCOUNT}:AWSMarketplace/ChangeSet/cs-1",
                ).model_dump(mode="json"),
            },
        ),
        "BuildAnnouncement": (
            AnnouncementInput,
            {
                "outcome": "ready",
                "state": state,
                "execution": "arn:aws:states:us-west-2:123456789012:execution:m:e",
                "finished": "2026-12-02T12:00:00.000Z",
            },
        ),
    }


@pytest.mark.parametrize("task", sorted(_handler_inputs()))
def test_given_earlier_steps_outputs_as_json_when_a_handler_input_parses_them_then_nothing_is_lost(task: str) -> None:
    model, payload = _handler_inputs()[task]

    parsed = model.model_validate(payload)

    assert parsed.model_dump(mode="json", exclude_unset=True) == payload  # defaults are not in the state

"""From ECR pushes and S3 uploads to release executions, against moto S3, ECR and Step Functions."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.stepfunctions.models import stepfunctions_backends
from tests.fixtures.moto_world import (
    EVENTS,
    PIPELINE_BUCKET,
    RELEASE_KEY,
    create_state_machine,
    ecr_push_event,
    push_image,
    s3_upload_event,
    sample_event,
    upload_artifacts,
    upload_release,
)
from tests.fixtures.releases import (
    ACCOUNT,
    ARTIFACT_BUCKET,
    INPUT_KEY,
    MODEL_KEY,
    PUBLISHING_REGION,
    SOURCE_REGION,
    release_document,
    release_spec,
)

from mlpublish.errors import PipelineError
from mlpublish.resolve import execution_name, fingerprint
from mlpublish.state import PinSet, Trigger
from mlpublish.trigger import (
    EventBridgeEvent,
    ReleaseCatalog,
    releases_for_push,
    releases_for_upload,
    start_for_event,
    start_release,
)

pytestmark = pytest.mark.integration

MODEL_URI = f"s3://{ARTIFACT_BUCKET}/{MODEL_KEY}"
INPUT_URI = f"s3://{ARTIFACT_BUCKET}/{INPUT_KEY}"


@dataclass
class World:
    s3: Any
    ecr: Any
    sfn: Any
    state_machine_arn: str
    catalog: ReleaseCatalog
    digest: str
    etags: dict[str, str]

    def executions(self) -> list[dict[str, Any]]:
        return list(self.sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"])

    def start_for(self, event: dict[str, Any]) -> list[Any]:
        return start_for_event(
            EventBridgeEvent.model_validate(event),
            catalog=self.catalog,
            sfn=self.sfn,
            state_machine_arn=self.state_machine_arn,
            ecr_for=lambda region: boto3.client("ecr", region_name=region),
            publishing_region=PUBLISHING_REGION,
        )

    def set_status(self, status: str) -> None:
        """Finish every execution with the status (moto runs none without an execute config)."""
        backend = stepfunctions_backends[ACCOUNT][SOURCE_REGION]
        for execution in backend.describe_state_machine(self.state_machine_arn).executions:
            execution.status = status


@pytest.fixture
def world(moto_aws: None, release_yaml: Callable[..., str]) -> World:
    """The seller's account: the example release uploaded, its image pushed, its artifacts uploaded."""
    s3 = boto3.client("s3", region_name=SOURCE_REGION)
    ecr = boto3.client("ecr", region_name=SOURCE_REGION)
    sfn = boto3.client("stepfunctions", region_name=SOURCE_REGION)
    etags = upload_artifacts(s3)
    upload_release(s3, release_yaml())
    return World(
        s3=s3,
        ecr=ecr,
        sfn=sfn,
        state_machine_arn=create_state_machine(sfn),
        catalog=ReleaseCatalog(s3, PIPELINE_BUCKET, "releases/"),
        digest=push_image(ecr),
        etags=etags,
    )


def push(event: dict[str, Any]) -> EventBridgeEvent:
    return EventBridgeEvent.model_validate(event)


# --- which releases an event concerns ---------------------------------------------------


def test_given_a_push_of_the_released_tag_then_the_release_matches_pinned_to_the_pushed_digest(world: World) -> None:
    matches = releases_for_push(world.catalog, push(ecr_push_event(world.digest)))

    assert [(key, pins) for key, _, pins in matches] == [(RELEASE_KEY, PinSet(images={"inference": world.digest}))]
    assert matches[0][1] == release_spec()


def test_given_the_sample_push_event_then_it_matches_the_example_release(world: World) -> None:
    event = sample_event("ecr-push.json")

    [(key, _, pins)] = releases_for_push(world.catalog, push(event))

    assert key == RELEASE_KEY
    assert pins.images == {"inference": event["detail"]["image-digest"]}


def test_given_a_release_pinned_by_digest_then_a_push_of_that_digest_matches_whatever_its_tag(
    world: World, release_yaml: Callable[..., str]
) -> None:
    document = release_document()
    document["product"]["name"] = "acme-pinned"
    image = document["containers"][0]["image"]
    document["containers"][0]["image"] = image.rsplit(":", 1)[0] + "@" + world.digest
    upload_release(world.s3, release_yaml(document), key="releases/pinned.yaml")

    matches = releases_for_push(world.catalog, push(ecr_push_event(world.digest, tag="nightly")))

    assert [key for key, _, _ in matches] == ["releases/pinned.yaml"]


@pytest.mark.parametrize(
    "changes",
    [
        {"repository": "acme/other"},
        {"tag": "1.3.0"},
        {"tag": None},
        {"account": "111122223333"},
        {"region": "eu-west-1"},
        {"action": "DELETE"},
    ],
    ids=["other-repository", "other-tag", "untagged", "other-account", "other-region", "delete"],
)
def test_given_a_push_that_is_not_the_released_image_then_no_release_matches(
    world: World, changes: dict[str, Any]
) -> None:
    assert releases_for_push(world.catalog, push(ecr_push_event(world.digest, **changes))) == []


def test_given_an_invalid_release_file_next_to_valid_ones_then_pushes_still_find_the_valid_ones(world: World) -> None:
    upload_release(world.s3, (EVENTS / "release.invalid.yaml").read_text(), key="releases/broken.yaml")
    upload_release(world.s3, "not a release", key="releases/README.md")

    matches = releases_for_push(world.catalog, push(ecr_push_event(world.digest)))

    assert [key for key, _, _ in matches] == [RELEASE_KEY]


def test_given_the_release_file_is_uploaded_then_that_release_is_the_match(world: World) -> None:
    event = s3_upload_event(PIPELINE_BUCKET, RELEASE_KEY, etag="abc", size=10)

    assert [(key, pins) for key, _, pins in releases_for_upload(world.catalog, push(event))] == [
        (RELEASE_KEY, PinSet())
    ]


def test_given_an_artifact_named_by_a_release_is_uploaded_then_the_release_matches_pinned_to_that_upload(
    world: World,
) -> None:
    event = sample_event("s3-upload.json")  # the example's model.tar.gz, as a multipart upload
    etag, size = event["detail"]["object"]["etag"], event["detail"]["object"]["size"]

    [(key, _, pins)] = releases_for_upload(world.catalog, push(event))

    assert key == RELEASE_KEY
    assert pins == PinSet(etags={MODEL_URI: etag}, sizes={MODEL_URI: size})


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        (ARTIFACT_BUCKET, "sentiment/1.2.0/other.tar.gz"),
        ("another-bucket", MODEL_KEY),
        (PIPELINE_BUCKET, "notes/acme.yaml"),
        (PIPELINE_BUCKET, "releases/acme.txt"),
    ],
)
def test_given_an_upload_no_release_names_then_nothing_matches(world: World, bucket: str, key: str) -> None:
    event = s3_upload_event(bucket, key, etag="abc", size=10)

    assert releases_for_upload(world.catalog, push(event)) == []


# S3 URL-encodes keys in some notifications: "model v2.tar.gz" may arrive as "model+v2.tar.gz".
ENCODED_FORMS = [
    pytest.param("sentiment/1.2.0/model v2.tar.gz", "sentiment/1.2.0/model+v2.tar.gz", id="encoded"),
    pytest.param("sentiment/1.2.0/model+v2.tar.gz", "sentiment/1.2.0/model+v2.tar.gz", id="as-stored"),
]


@pytest.mark.parametrize(("stored", "sent"), ENCODED_FORMS)
def test_given_an_upload_whose_key_the_event_may_encode_then_the_pin_is_under_the_uri_the_release_names(
    world: World, release_yaml: Callable[..., str], stored: str, sent: str
) -> None:
    document = release_document()
    document["containers"][0]["model_data"] = f"s3://{ARTIFACT_BUCKET}/{stored}"
    upload_release(world.s3, release_yaml(document))
    etag = world.s3.put_object(Bucket=ARTIFACT_BUCKET, Key=stored, Body=b"weights")["ETag"].strip('"')
    event = s3_upload_event(ARTIFACT_BUCKET, sent, etag=etag, size=7)

    [(key, _, pins)] = releases_for_upload(world.catalog, push(event))
    [started] = world.start_for(event)

    named = f"s3://{ARTIFACT_BUCKET}/{stored}"
    assert (key, pins) == (RELEASE_KEY, PinSet(etags={named: etag}, sizes={named: 7}))
    payload = json.loads(world.sfn.describe_execution(executionArn=started.execution_arn)["input"])
    assert payload["pins"]["etags"] == {named: etag, INPUT_URI: world.etags[INPUT_URI]}


def test_given_a_release_naming_both_forms_of_an_uploaded_key_then_it_matches_without_guessing_a_pin(
    world: World, release_yaml: Callable[..., str]
) -> None:
    document = release_document()
    template = document["containers"][0]
    document["containers"] = [
        {**template, "name": "plain", "model_data": f"s3://{ARTIFACT_BUCKET}/m/model v2.tar.gz"},
        {**template, "name": "plus", "model_data": f"s3://{ARTIFACT_BUCKET}/m/model+v2.tar.gz"},
    ]
    upload_release(world.s3, release_yaml(document))
    event = s3_upload_event(ARTIFACT_BUCKET, "m/model+v2.tar.gz", etag="abc", size=7)

    assert [(key, pins) for key, _, pins in releases_for_upload(world.catalog, push(event))] == [
        (RELEASE_KEY, PinSet())
    ]


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        pytest.param("releases/acme sentiment.yaml", "releases/acme+sentiment.yaml", id="encoded"),
        pytest.param("releases/acme+sentiment.yaml", "releases/acme+sentiment.yaml", id="as-stored"),
    ],
)
def test_given_a_release_file_whose_key_the_event_may_encode_then_the_stored_file_is_loaded_and_started(
    world: World, release_yaml: Callable[..., str], stored: str, sent: str
) -> None:
    world.s3.delete_object(Bucket=PIPELINE_BUCKET, Key=RELEASE_KEY)
    etag = upload_release(world.s3, release_yaml(), key=stored)
    event = s3_upload_event(PIPELINE_BUCKET, sent, etag=etag, size=100)

    assert [(key, pins) for key, _, pins in releases_for_upload(world.catalog, push(event))] == [(stored, PinSet())]
    [started] = world.start_for(event)

    assert started.outcome == "started"
    assert started.release_uri == f"s3://{PIPELINE_BUCKET}/{stored}"
    payload = json.loads(world.sfn.describe_execution(executionArn=started.execution_arn)["input"])
    assert payload["release_uri"] == f"s3://{PIPELINE_BUCKET}/{stored}"
    assert payload["trigger"] == {"kind": "release-upload", "ref": f"s3://{PIPELINE_BUCKET}/{stored}#{etag}"}


def test_given_an_invalid_release_file_under_an_encoded_key_then_the_execution_names_the_stored_file(
    world: World,
) -> None:
    stored = "releases/broken release.yaml"
    etag = upload_release(world.s3, (EVENTS / "release.invalid.yaml").read_text(), key=stored)
    event = s3_upload_event(PIPELINE_BUCKET, "releases/broken+release.yaml", etag=etag, size=100)

    [started] = world.start_for(event)

    payload = json.loads(world.sfn.describe_execution(executionArn=started.execution_arn)["input"])
    assert payload["release_uri"] == f"s3://{PIPELINE_BUCKET}/{stored}"


# --- starting executions ----------------------------------------------------------------


def start(world: World, **changes: Any) -> Any:
    pins = PinSet(
        images={"inference": world.digest},
        etags=world.etags,
        sizes=dict.fromkeys(world.etags, 100),
    )
    arguments: dict[str, Any] = {
        "release_uri": f"s3://{PIPELINE_BUCKET}/{RELEASE_KEY}",
        "spec": release_spec(),
        "pins": pins,
        "trigger": Trigger(kind="ecr-push", ref=f"acme/sentiment@{world.digest}"),
        "publishing_region": PUBLISHING_REGION,
    }
    arguments.update(changes)
    return start_release(world.sfn, world.state_machine_arn, **arguments)


def test_given_a_new_release_then_one_execution_starts_named_by_its_content(world: World) -> None:
    started = start(world)

    spec = release_spec()
    pins = PinSet(images={"inference": world.digest}, etags=world.etags, sizes=dict.fromkeys(world.etags, 100))
    assert started.outcome == "started"
    assert started.name == execution_name(spec, fingerprint(spec, pins, PUBLISHING_REGION))
    [execution] = world.executions()
    assert execution["executionArn"] == started.execution_arn
    payload = json.loads(world.sfn.describe_execution(executionArn=started.execution_arn)["input"])
    assert payload == {
        "release_uri": f"s3://{PIPELINE_BUCKET}/{RELEASE_KEY}",
        "trigger": {"kind": "ecr-push", "ref": f"acme/sentiment@{world.digest}"},
        "pins": pins.model_dump(mode="json"),
    }


@pytest.mark.parametrize("status", ["RUNNING", "SUCCEEDED"])
def test_given_the_same_content_again_then_it_is_a_duplicate_and_nothing_starts(world: World, status: str) -> None:
    first = start(world)
    world.set_status(status)

    again = start(world)
    from_another_trigger = start(world, trigger=Trigger(kind="s3-upload", ref=f"{MODEL_URI}#x"))

    assert (again.outcome, again.execution_arn) == ("duplicate", first.execution_arn)
    assert (from_another_trigger.outcome, from_another_trigger.execution_arn) == ("duplicate", first.execution_arn)
    assert len(world.executions()) == 1


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED"])
def test_given_the_previous_execution_failed_then_the_next_attempt_starts_with_an_r2_suffix(
    world: World, status: str
) -> None:
    first = start(world)
    world.set_status(status)

    second = start(world)

    assert second.outcome == "started"
    assert second.name == f"{first.name}-r2"
    assert len(world.executions()) == 2


def test_given_other_content_for_the_same_release_then_a_new_execution_starts(world: World) -> None:
    first = start(world)

    second = start(world, pins=PinSet(images={"inference": "sha256:" + "f" * 64}, etags=world.etags))

    assert second.outcome == "started"
    assert second.name != first.name
    assert len(world.executions()) == 2


def test_given_the_sample_push_event_then_the_release_starts_with_every_source_pinned(world: World) -> None:
    event = sample_event("ecr-push.json")

    [started] = world.start_for(event)

    assert started.outcome == "started"
    payload = json.loads(world.sfn.describe_execution(executionArn=started.execution_arn)["input"])
    digest = event["detail"]["image-digest"]
    assert payload["trigger"] == {"kind": "ecr-push", "ref": f"acme/sentiment@{digest}"}
    assert payload["pins"]["images"] == {"inference": digest}
    assert payload["pins"]["etags"] == world.etags


def test_given_the_sample_upload_event_then_the_release_starts_pinned_to_the_uploaded_etag(world: World) -> None:
    event = sample_event("s3-upload.json")

    [started] = world.start_for(event)

    payload = json.loads(world.sfn.describe_execution(executionArn=started.execution_arn)["input"])
    assert payload["trigger"]["kind"] == "s3-upload"
    assert payload["pins"]["etags"] == {MODEL_URI: event["detail"]["object"]["etag"], INPUT_URI: world.etags[INPUT_URI]}
    assert payload["pins"]["images"] == {"inference": world.digest}


def test_given_an_invalid_release_file_is_uploaded_then_an_execution_starts_to_announce_its_errors(
    world: World,
) -> None:
    key = "releases/broken.yaml"
    etag = upload_release(world.s3, (EVENTS / "release.invalid.yaml").read_text(), key=key)
    event = s3_upload_event(PIPELINE_BUCKET, key, etag=etag, size=100)

    [started] = world.start_for(event)
    [again] = world.start_for(event)

    assert started.outcome == "started"
    assert started.name.startswith("broken-yaml-")
    payload = json.loads(world.sfn.describe_execution(executionArn=started.execution_arn)["input"])
    assert payload["release_uri"] == f"s3://{PIPELINE_BUCKET}/{key}"
    assert payload["trigger"] == {"kind": "release-upload", "ref": f"s3://{PIPELINE_BUCKET}/{key}#{etag}"}
    assert (again.outcome, again.execution_arn) == ("duplicate", started.execution_arn)
    assert len(world.executions()) == 1


def test_given_a_release_whose_image_is_not_pushed_yet_then_it_waits_and_nothing_starts(
    world: World, release_yaml: Callable[..., str]
) -> None:
    upload_release(world.s3, release_yaml(tag="1.3.0"))
    event = s3_upload_event(PIPELINE_BUCKET, RELEASE_KEY, etag="abc", size=10)

    [waiting] = world.start_for(event)

    assert waiting.outcome == "waiting"
    assert waiting.release_uri == f"s3://{PIPELINE_BUCKET}/{RELEASE_KEY}"
    assert "containers.0.image: image acme/sentiment:1.3.0 is not in ECR us-west-2" in waiting.note
    assert world.executions() == []


def test_given_an_artifact_not_uploaded_yet_then_the_release_waits_for_it(world: World) -> None:
    world.s3.delete_object(Bucket=ARTIFACT_BUCKET, Key=INPUT_KEY)

    [waiting] = world.start_for(ecr_push_event(world.digest))

    assert waiting.outcome == "waiting"
    assert f"validation.input: {INPUT_URI} cannot be read" in waiting.note
    assert world.executions() == []


def test_given_an_event_no_release_uses_then_nothing_starts(world: World) -> None:
    assert world.start_for(ecr_push_event(world.digest, repository="acme/other")) == []
    assert world.executions() == []


def test_given_an_event_of_another_kind_then_the_trigger_refuses_it_naming_the_rules(world: World) -> None:
    event = {**ecr_push_event(world.digest), "source": "aws.ec2", "detail-type": "EC2 Instance State-change"}

    with pytest.raises(PipelineError, match=r"unexpected event aws\.ec2/EC2 Instance State-change"):
        world.start_for(event)

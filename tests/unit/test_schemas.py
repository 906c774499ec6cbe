"""The JSON Schemas in schemas/ are the contract of what the pipeline takes and announces.

They are generated from the models (python -m tools.schemas) and checked in: these tests hold
the checked-in files to the models, to the samples in events/, and to every event detail the
code builds (the e2e runs hold them to every event the sandbox's bus carries, tests/e2e/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.fixtures.releases import ACCOUNT, algorithm_document, resolved_release
from tests.unit.test_announce import EXECUTION, PACKAGE_ARN, success_state
from tools import schemas
from tools.schemas import EXECUTION_INPUT, RELEASE_FILE, event_file, event_problems, problems

from mlpublish.announce import failed, ready
from mlpublish.events import DETAIL_TYPES, FAILED, READY, RELEASE_STARTED, RELEASE_WAITING, STAGE_CHANGED
from mlpublish.release import parse_release
from mlpublish.state import ResourceResult
from mlpublish.trigger import EventBridgeEvent, Started, progress_entries

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
# The samples of ours in events/, by the schema that describes them.
SCHEMA_OF = {
    "release.example.yaml": RELEASE_FILE,
    "release.algorithm.yaml": RELEASE_FILE,
    "release.listing.yaml": RELEASE_FILE,
    "release.from-algorithm.yaml": RELEASE_FILE,
    "manual-start.json": EXECUTION_INPUT,
}
INVALID = {"release.invalid.yaml": RELEASE_FILE}
AWS_EVENTS = {"ecr-push.json", "s3-upload.json", "sqs-trigger-batch.json"}  # AWS's own shapes, not ours


def document(name: str) -> Any:
    return yaml.safe_load((EVENTS / name).read_text())  # YAML reads JSON too


def test_given_the_models_when_schemas_are_generated_then_the_checked_in_files_are_the_same() -> None:
    assert schemas.stale() == [], "run `make schemas` and commit schemas/"


def test_given_every_detail_type_then_it_has_a_schema_file_that_is_a_valid_json_schema() -> None:
    names = [RELEASE_FILE, EXECUTION_INPUT, *(event_file(detail_type) for detail_type in DETAIL_TYPES)]

    for name in names:
        assert schemas.validator(name).schema["$schema"] == schemas.DIALECT
    assert event_file("Release Stage Changed") == "events/release-stage-changed.schema.json"


def test_given_a_model_change_when_checked_then_the_stale_and_the_orphaned_files_are_named(tmp_path: Path) -> None:
    schemas.write(tmp_path)
    (tmp_path / RELEASE_FILE).write_text("{}\n")
    (tmp_path / "events" / "gone.schema.json").write_text("{}\n")

    assert schemas.stale(tmp_path) == [
        "events/gone.schema.json: no model makes it (remove it)",
        f"{RELEASE_FILE}: differs from the models",
    ]
    schemas.write(tmp_path)
    assert schemas.stale(tmp_path) == []


def test_given_events_dir_then_every_sample_is_ours_with_a_schema_or_one_of_aws_events() -> None:
    files = {path.name for path in EVENTS.iterdir() if path.is_file()}

    assert files == SCHEMA_OF.keys() | INVALID.keys() | AWS_EVENTS


@pytest.mark.parametrize("name", sorted(SCHEMA_OF))
def test_given_a_sample_of_ours_when_validated_against_its_schema_then_it_conforms(name: str) -> None:
    assert problems(SCHEMA_OF[name], document(name)) == []


def test_given_the_invalid_release_when_validated_then_the_schema_names_every_broken_field() -> None:
    found = problems(RELEASE_FILE, document("release.invalid.yaml"))

    paths = sorted(problem.split(": ", 1)[0] for problem in found)
    assert paths == [
        "containers.0.image",
        "containers.0.model_data",
        "containers.0.platform",
        "inference.realtime_instance_types.0",
        "product.name",
        "validation",  # timeout_minute: "Additional properties are not allowed"
        "validation.max_payload_mb",
        "validation.split_type",
    ]
    assert any("'timeout_minute' was unexpected" in problem for problem in found)


# --- every detail the code builds conforms to its detail-type's schema ----------------------


def event(detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {"detail-type": detail_type, "source": "mlpublish", "detail": json.loads(json.dumps(detail))}


def algorithm_ready() -> dict[str, Any]:
    release = resolved_release(parse_release(yaml.safe_dump(algorithm_document())))
    arn = f"arn:aws:sagemaker:us-east-2:{ACCOUNT}:algorithm/{release.resource_name}"
    state = success_state(release).model_copy(
        update={"resource": ResourceResult(arn=arn, name=release.resource_name, action="created")}
    )
    return ready(state).detail


def test_given_a_ready_announcement_then_its_detail_conforms() -> None:
    announcement = ready(success_state())

    assert event_problems(event(announcement.detail_type, announcement.detail)) == []


def test_given_a_ready_algorithm_then_its_detail_conforms_naming_the_algorithm_only() -> None:
    detail = algorithm_ready()

    assert event_problems(event(READY, detail)) == []
    assert "algorithm_arn" in detail
    assert "model_package_arn" not in detail


def test_given_a_ready_detail_naming_both_resources_or_none_then_it_is_off_its_schema() -> None:
    package = ready(success_state()).detail
    algorithm = algorithm_ready()
    both = {**package, **{key: value for key, value in algorithm.items() if key.startswith("algorithm_")}}
    neither = {key: value for key, value in package.items() if not key.startswith("model_package_")}

    assert event_problems(event(READY, both))
    assert event_problems(event(READY, neither))


@pytest.mark.parametrize(
    "state",
    [
        pytest.param({"release_uri": "s3://b/releases/x.yaml", "failed_stage": "ResolveRelease"}, id="unread"),
        pytest.param({"release": {"product": "no"}, "trigger": {"kind": "odd"}, "failed_stage": "X"}, id="bad-input"),
        pytest.param(
            {
                "release": resolved_release().model_dump(mode="json"),
                "resource": {"arn": PACKAGE_ARN},
                "error": {"Error": "ValidationFailed", "Cause": "a\n- b"},
                "failed_stage": "AwaitValidation",
                "execution": EXECUTION,
            },
            id="package-created",
        ),
        pytest.param(
            {
                "release": resolved_release().model_dump(mode="json"),
                "resource": {"arn": f"arn:aws:sagemaker:us-east-2:{ACCOUNT}:algorithm/acme-forecast-2-0-0-0123"},
                "failed_stage": "AwaitValidation",
            },
            id="algorithm-created",
        ),
    ],
)
def test_given_a_failure_announcement_then_its_detail_conforms(state: dict[str, Any]) -> None:
    announcement = failed(state)

    assert event_problems(event(announcement.detail_type, announcement.detail)) == []


def definition() -> dict[str, Any]:
    return dict(json.loads((ROOT / "statemachine" / "publish.asl.json").read_text()))


def evaluated(built: dict[str, Any]) -> dict[str, Any]:
    """A detail the ASL builds, each path or intrinsic function given a string (every one the
    state machine's events use gives one: a stage, an error name, JSON, an ARN, a time, a name)."""
    return {key.removesuffix(".$"): "text" if key.endswith(".$") else value for key, value in built.items()}


def test_given_the_state_machines_unformatted_failure_then_its_detail_conforms() -> None:
    built = definition()["States"]["UnformattedFailure"]["Parameters"]

    assert built["detail_type"] == FAILED
    assert event_problems(event(FAILED, evaluated(built["detail"]))) == []
    assert built["message_attributes"] == {"outcome": {"DataType": "String", "StringValue": "failed"}}


def test_given_the_state_machines_stage_changes_then_each_detail_conforms() -> None:
    entries = [
        entry
        for state in definition()["States"].values()
        if state.get("Resource") == "arn:aws:states:::events:putEvents"
        for entry in state["Parameters"]["Entries"]
        if entry.get("DetailType") == STAGE_CHANGED
    ]

    assert [entry["Detail"]["stage"] for entry in entries] == [
        "CopyToPublishingRegion",
        "ScanImages",
        "AwaitValidation",
        "ListVersion",
    ]
    for entry in entries:
        assert event_problems(event(STAGE_CHANGED, evaluated(entry["Detail"]))) == [], entry["Detail"]["stage"]


def literal_detail_types(node: Any) -> list[str]:
    """Every detail-type the definition writes out literally (``DetailType`` or ``detail_type``)."""
    if isinstance(node, list):
        return [found for item in node for found in literal_detail_types(item)]
    if not isinstance(node, dict):
        return []
    named = [value for key, value in node.items() if key in {"DetailType", "detail_type"} and isinstance(value, str)]
    return named + [found for value in node.values() for found in literal_detail_types(value)]


def test_given_the_state_machine_then_every_detail_type_it_names_has_a_schema() -> None:
    named = literal_detail_types(definition())

    assert {FAILED, STAGE_CHANGED} <= set(named)
    assert set(named) <= DETAIL_TYPES.keys(), "add each detail-type's model to mlpublish.events.DETAIL_TYPES"


def test_given_the_triggers_progress_then_each_detail_conforms() -> None:
    started = [
        Started("s3://b/releases/a.yaml", "arn:aws:states:r:1:execution:m:a", "a", "started"),
        Started("s3://b/releases/b.yaml", "arn:aws:states:r:1:execution:m:b", "b", "started", note="refused"),
        Started("s3://b/releases/c.yaml", "", "", "waiting", note="image acme/x:1 is not in ECR"),
    ]

    entries = progress_entries(started, _push(), bus="bus", source="mlpublish")

    assert [entry["DetailType"] for entry in entries] == [RELEASE_STARTED, RELEASE_STARTED, RELEASE_WAITING]
    for entry in entries:
        assert event_problems(event(entry["DetailType"], json.loads(entry["Detail"]))) == []


def test_given_a_detail_off_its_schema_or_an_unknown_detail_type_then_problems_are_named() -> None:
    detail = json.loads(
        progress_entries([Started("u", "e", "n", "started")], _push(), bus="b", source="s")[0]["Detail"]
    )
    del detail["execution"]

    assert sorted(event_problems(event(RELEASE_STARTED, {**detail, "extra": 1}))) == [
        "Release Started: (top level): 'execution' is a required property",
        "Release Started: (top level): Additional properties are not allowed ('extra' was unexpected)",
    ]
    assert event_problems(event("Release Renamed", {})) == [
        "detail-type 'Release Renamed' has no schema: add its model to mlpublish.events.DETAIL_TYPES"
    ]


def _push() -> EventBridgeEvent:
    return EventBridgeEvent.model_validate(document("ecr-push.json"))

"""Event-driven waits (mlpublish.waits): which events end which wait, what the task is sent,
and that the stack's rule takes the events the code waits for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mlpublish.announce import parse_error
from mlpublish.errors import TransientAwsError
from mlpublish.state import CheckValidationInput
from mlpublish.waits import (
    EVENT_PATTERN,
    Outcome,
    Watch,
    finish,
    forwarding_rule,
    look,
    resources_named,
    unfinished,
)
from sandbox.stack import load_template

pytestmark = pytest.mark.unit

ARN = "arn:aws:sagemaker:us-east-2:123456789012:model-package/acme-1-2-0-abc"
CHANGE_SET = "arn:aws:aws-marketplace:us-east-1:123456789012:AWSMarketplace/ChangeSet/cs1"
TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Operation")


class SageMaker:
    def __init__(self, status: str, reason: str | None = None, error: str | None = None) -> None:
        self.status, self.reason, self.error = status, reason, error

    def describe_model_package(self, *, ModelPackageName: str) -> dict[str, Any]:
        if self.error:
            raise client_error(self.error)
        item = {"Name": "profile", "Status": "Failed" if self.reason else self.status}
        if self.reason:
            item["FailureReason"] = self.reason
        return {
            "ModelPackageName": "acme-1-2-0-abc",
            "ModelPackageArn": ModelPackageName,
            "ModelPackageStatus": self.status,
            "ModelPackageStatusDetails": {"ValidationStatuses": [item], "ImageScanStatuses": []},
        }


def validation_watch() -> Watch:
    return Watch(
        validation=CheckValidationInput(
            arn=ARN, attempt=2, elapsed_seconds=3600, timeout_minutes=720, publishing_region="us-east-2"
        )
    )


def test_given_a_completed_package_when_looked_at_then_the_wait_ends_with_the_progress_the_state_machine_reads() -> (
    None
):
    outcome = look(validation_watch(), lambda service, region: SageMaker("Completed"))

    assert outcome is not None
    assert outcome.error is None
    assert outcome.output is not None
    assert (outcome.output["status"], outcome.output["wait_seconds"]) == ("Completed", 0)


def test_given_a_running_validation_when_looked_at_then_the_wait_goes_on() -> None:
    assert look(validation_watch(), lambda service, region: SageMaker("InProgress")) is None


def test_given_a_failed_validation_when_looked_at_then_the_task_fails_with_every_reason_the_announcement_reads() -> (
    None
):
    outcome = look(validation_watch(), lambda service, region: SageMaker("Failed", reason="ping timed out"))

    assert outcome is not None
    assert outcome.error == "ValidationFailed"
    failure = parse_error({"Error": outcome.error, "Cause": outcome.cause}, "AwaitValidation")
    assert failure.error == "ValidationFailed"
    assert any("ping timed out" in reason for reason in failure.reasons)


def test_given_sagemaker_throttling_when_looked_at_then_the_error_is_raised_for_a_retry_not_sent_to_the_task() -> None:
    with pytest.raises(TransientAwsError):
        look(validation_watch(), lambda service, region: SageMaker("InProgress", error="ThrottlingException"))


def test_given_a_package_event_then_its_arn_is_the_key_and_an_intermediate_status_is_ignored() -> None:
    event = {
        "resources": [ARN],
        "detail": {"ModelPackageArn": ARN, "ModelPackageStatus": "InProgress"},
    }

    assert resources_named(event) == [ARN]
    assert unfinished(event)
    assert not unfinished({**event, "detail": {"ModelPackageStatus": "Completed"}})


def test_given_an_algorithm_event_without_a_status_then_it_is_looked_into() -> None:
    algorithm = ARN.replace("model-package/", "algorithm/")
    event = {"resources": [algorithm], "detail": {"AlgorithmArn": algorithm, "AlgorithmName": "acme"}}

    assert resources_named(event) == [algorithm]
    assert not unfinished(event)


def test_given_a_change_set_event_then_both_its_arn_and_its_id_can_find_the_wait() -> None:
    event = {"resources": [CHANGE_SET], "detail": {"ChangeSetId": "cs1", "Catalog": "AWSMarketplace"}}

    assert resources_named(event) == [CHANGE_SET, "cs1"]


class StepFunctions:
    def __init__(self, error: str | None = None) -> None:
        self.error = error
        self.sent: list[dict[str, Any]] = []

    def send_task_success(self, **request: Any) -> None:
        if self.error:
            raise client_error(self.error)
        self.sent.append(request)

    send_task_failure = send_task_success


class Table:
    def __init__(self) -> None:
        self.deleted: list[dict[str, Any]] = []

    def delete_item(self, **request: Any) -> None:
        self.deleted.append(request)


def test_given_a_task_that_already_timed_out_when_an_event_ends_its_wait_then_nothing_fails_and_the_token_goes() -> (
    None
):
    table = Table()

    sent = finish(StepFunctions("TaskTimedOut"), table, "waits", ARN, "t1", Outcome(output={"status": "Completed"}))

    assert sent is False
    [deleted] = table.deleted
    # Only this token: a newer wait for the same resource keeps its own.
    assert deleted["ExpressionAttributeValues"] == {":t": {"S": "t1"}}


def test_given_an_ended_wait_then_the_task_gets_the_output_as_json() -> None:
    sfn = StepFunctions()

    assert finish(sfn, Table(), "waits", ARN, "t1", Outcome(output={"status": "Completed"})) is True
    assert [json.loads(request["output"]) for request in sfn.sent] == [{"status": "Completed"}]


class Events:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def put_rule(self, **request: Any) -> None:
        self.calls.append(("put_rule", request))

    def put_targets(self, **request: Any) -> None:
        self.calls.append(("put_targets", request))


def test_given_a_long_stack_name_then_the_forwarding_rule_name_fits_eventbridge_and_stays_the_stacks() -> None:
    events = Events()
    name = "mlpublish-waits-eu-central-1-" + "a-very-long-stack-name" * 3

    forwarding_rule(
        events, name=name, stack_region="eu-central-1", account="123456789012", role_arn="arn:aws:iam::1:role/r"
    )

    [(_, rule), (_, targets)] = events.calls
    assert len(rule["Name"]) <= 64
    assert rule["Name"].startswith("mlpublish-waits-eu-central-1-")  # what the watch function may put
    assert targets["Targets"][0]["Arn"] == "arn:aws:events:eu-central-1:123456789012:event-bus/default"


def test_given_the_template_then_the_stacks_rule_takes_exactly_the_events_the_forwarding_rules_send() -> None:
    rule = load_template(TEMPLATE)["Resources"]["WaitEventsRule"]["Properties"]["EventPattern"]

    assert sorted(rule["source"]) == EVENT_PATTERN["source"]
    assert sorted(rule["detail-type"]) == EVENT_PATTERN["detail-type"]

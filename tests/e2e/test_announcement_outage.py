"""Every failure reaches a person: with SNS and EventBridge down, a release's announcement waits
in the announcement queue and reaches the topic's subscribers and the event bus, once each,
after they recover; the execution's end says what happened to the release.

The outages are faults of AWS at the emulator's endpoint (sandbox/api_faults.py) on every call
the stack makes, BuildAnnouncement's retries and DeliverAnnouncement's alike, until the test
calls ``recover()``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.images import WrittenLayout, write_layout
from tests.fixtures.outage import wait_until_deferred_announcement_backed_off

from sandbox.api_faults import ApiFault
from sandbox.oci import open_layout
from sandbox.runner import ROOT, RunOptions, Sandbox, load_release

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "events" / "release.example.yaml"
# More failed calls than BuildAnnouncement's retries and the queue's redeliveries make while
# the test looks: the channel stays down until recover().
DOWN = 10_000
SNS_DOWN = f"5xx:sns:Publish:times={DOWN}"
EVENTS_DOWN = f"5xx:events:PutEvents:times={DOWN}"
QUEUE_DOWN = f"5xx:sqs:SendMessage:times={DOWN}"


@dataclass
class Outage:
    status: str
    described: dict[str, Any]
    during: dict[str, list[dict[str, Any]]]  # what subscribers got while AWS was down
    after: dict[str, list[dict[str, Any]]]  # what they got once it recovered
    left: dict[str, int]  # messages left in the announcement queue and its dead-letter queue


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> WrittenLayout:
    return write_layout(tmp_path_factory.mktemp("image"), "docker-v2", tag="1.2.0")


def released_through(faults: list[str], image: WrittenLayout, log_file: Path, **options: Any) -> Outage:
    api_faults = [ApiFault.parse(fault) for fault in faults]
    sandbox = Sandbox(
        load_release(EXAMPLE), RunOptions(release=EXAMPLE, log_file=log_file, api_faults=api_faults, **options)
    )
    with sandbox.running():
        _, delivery = sandbox.seed_and_trigger(open_layout(image.path))
        described = sandbox.aws("stepfunctions").describe_execution(executionArn=delivery.execution_arn)
        if delivery.status == "SUCCEEDED" or described.get("error") == "ReleaseFailed":
            wait_until_deferred_announcement_backed_off(sandbox)
        during = {which: sandbox.drain(which) for which in ("notifications", "events")}
        sandbox.api_faults.recover()
        sandbox.poller.wait_idle()
        after = {which: sandbox.drain(which) for which in ("notifications", "events")}
        assert sandbox.stack is not None
        sqs = sandbox.aws("sqs")
        left = {
            name: int(
                sum(
                    int(value)
                    for value in sqs.get_queue_attributes(
                        QueueUrl=sandbox.stack.outputs[name],
                        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                    )["Attributes"].values()
                )
            )
            for name in ("AnnouncementQueueUrl", "AnnouncementDeadLetterQueueUrl")
        }
    assert all(fault.fired for fault in api_faults), [fault.label for fault in api_faults if not fault.fired]
    return Outage(delivery.status, described, during, after, left)


def attributes_of(note: dict[str, Any]) -> dict[str, str]:
    return {name: str(attribute["Value"]) for name, attribute in note["MessageAttributes"].items()}


def release_attributes(outcome: str) -> dict[str, str]:
    """The message attributes of the example release's announcement, as BuildAnnouncement sends them."""
    return {
        "outcome": outcome,
        "product": "acme-sentiment",
        "version": "1.2.0",
        "kind": "model_package",
        "region": "us-east-2",
    }


@pytest.fixture(scope="module")
def failed_while_down(image: WrittenLayout, tmp_path_factory: pytest.TempPathFactory) -> Outage:
    log_file = tmp_path_factory.mktemp("failed") / "lambda.log"
    return released_through([SNS_DOWN, EVENTS_DOWN], image, log_file, validation="failed")


def test_given_sns_and_eventbridge_down_when_a_release_fails_then_it_ends_failed_with_its_own_error(
    failed_while_down: Outage,
) -> None:
    output = failed_while_down.described

    assert failed_while_down.status == "FAILED"
    assert output["error"] == "ReleaseFailed"
    assert failed_while_down.during == {"notifications": [], "events": []}


def test_given_sns_and_eventbridge_down_when_they_recover_then_the_failure_reaches_subscribers_once_each(
    failed_while_down: Outage,
) -> None:
    [note] = failed_while_down.after["notifications"]
    [event] = failed_while_down.after["events"]

    assert note["Subject"].startswith("Release failed: acme-sentiment 1.2.0 at AwaitValidation")
    assert attributes_of(note) == release_attributes("failed")  # as sent when SNS is up
    assert "ValidationFailed" in note["Message"]
    assert event["detail-type"] == "Release Failed"
    assert event["source"] == "mlpublish"
    assert (event["detail"]["stage"], event["detail"]["error"]) == ("AwaitValidation", "ValidationFailed")
    assert event["detail"]["execution"] == failed_while_down.described["executionArn"]
    # The stage-change events were lost while EventBridge was down (the release went on without
    # them), so no stage's end is known and no duration is guessed.
    assert event["detail"]["stage_seconds"] == {}
    assert failed_while_down.left == {"AnnouncementQueueUrl": 0, "AnnouncementDeadLetterQueueUrl": 0}


@pytest.fixture(scope="module")
def ready_while_sns_down(image: WrittenLayout, tmp_path_factory: pytest.TempPathFactory) -> Outage:
    # The fixture image does not serve: SageMaker's validation is taken as completed.
    return released_through([SNS_DOWN], image, tmp_path_factory.mktemp("ready") / "lambda.log", validation="completed")


def test_given_sns_down_when_a_release_is_ready_then_it_succeeds_saying_the_notification_was_deferred(
    ready_while_sns_down: Outage,
) -> None:
    output = json.loads(ready_while_sns_down.described["output"])
    progress = ("Release Started", "Release Waiting", "Release Stage Changed")  # not announcements
    [event] = [event for event in ready_while_sns_down.during["events"] if event["detail-type"] not in progress]

    assert ready_while_sns_down.status == "SUCCEEDED"
    assert output["outcome"] == "ready"
    assert set(output) == {"outcome", "subject", "deferred_notification"}  # the message itself is not state
    assert output["deferred_notification"]["message_id"]
    assert "AnnouncementQueue" in output["deferred_notification"]["queue"]
    assert "deferred_event" not in output
    assert event["detail-type"] == "Release Ready For Listing"  # EventBridge was up: sent at once
    assert ready_while_sns_down.during["notifications"] == []


def test_given_sns_down_when_it_recovers_then_the_ready_notification_arrives_once_and_the_event_is_not_repeated(
    ready_while_sns_down: Outage,
) -> None:
    [note] = ready_while_sns_down.after["notifications"]

    assert note["Subject"] == "Ready for listing: acme-sentiment 1.2.0"
    assert attributes_of(note) == release_attributes("ready")  # as sent when SNS is up (test_publish.py)
    assert "is ready to list on AWS Marketplace" in note["Message"]
    assert ready_while_sns_down.after["events"] == []
    assert ready_while_sns_down.left == {"AnnouncementQueueUrl": 0, "AnnouncementDeadLetterQueueUrl": 0}


def test_given_sns_eventbridge_and_the_queue_down_when_a_release_fails_then_it_ends_with_a_distinct_error(
    image: WrittenLayout, tmp_path: Path
) -> None:
    outage = released_through([SNS_DOWN, EVENTS_DOWN, QUEUE_DOWN], image, tmp_path / "lambda.log", validation="failed")

    assert outage.status == "FAILED"
    assert outage.described["error"] == "FailureNotAnnounced"  # the stack's crash rule reports it on AWS
    assert outage.after == {"notifications": [], "events": []}  # nothing was kept to send later

"""Subscribers filter the topic's announcements by their message attributes.

Each announcement carries outcome, product, version, kind and region (what is known: a release
that could not be read carries its outcome only), so a subscription's filter policy picks the
announcements it wants. One sandbox announces a ready release and a release file that is not
there; queues subscribed with filter policies receive only what their policy matches. A failure
whose announcement could not be built is announced raw by the state machine, with its outcome.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.images import WrittenLayout, write_layout

from sandbox.api_faults import ApiFault
from sandbox.oci import open_layout
from sandbox.runner import ROOT, RunOptions, Sandbox, load_release

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "events" / "release.example.yaml"
FILTER_POLICIES = {
    "failed": {"outcome": ["failed"]},
    "ready": {"outcome": ["ready"]},
    "acme-sentiment-1.x-in-us-east-2": {
        "product": ["acme-sentiment"],
        "version": [{"prefix": "1."}],
        "kind": ["model_package"],
        "region": ["us-east-2"],
    },
    "another-product": {"product": ["acme-vision"]},
}


def subscribe(sandbox: Sandbox, policies: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A queue per filter policy, subscribed to the stack's topic as a seller would; their URLs."""
    assert sandbox.stack is not None
    sqs, sns = sandbox.aws("sqs"), sandbox.aws("sns")
    urls = {}
    for name, policy in policies.items():
        url = sqs.create_queue(QueueName=f"subscriber-{name.replace('.', '-')}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(
            TopicArn=sandbox.stack.outputs["NotificationTopicArn"],
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"FilterPolicy": json.dumps(policy)},
        )
        urls[name] = url
    return urls


def received(sandbox: Sandbox, url: str) -> list[str]:
    """The subjects of the notifications a queue holds."""
    sqs = sandbox.aws("sqs")
    subjects = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            subjects.append(json.loads(message["Body"])["Subject"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return sorted(subjects)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> WrittenLayout:
    return write_layout(tmp_path_factory.mktemp("image"), "docker-v2", tag="1.2.0")


@pytest.fixture(scope="module")
def subscribers(image: WrittenLayout, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """What each filtered queue received, and (``all``) the unfiltered subscriber."""
    directory = tmp_path_factory.mktemp("filters")
    options = RunOptions(release=EXAMPLE, validation="completed", log_file=directory / "lambda.log")
    sandbox = Sandbox(load_release(EXAMPLE), options)
    with sandbox.running():
        assert sandbox.stack is not None
        urls = subscribe(sandbox, FILTER_POLICIES)
        _, delivery = sandbox.seed_and_trigger(open_layout(image.path))
        assert delivery.status == "SUCCEEDED"
        missing = sandbox.release_uri().rsplit("/", 1)[0] + "/missing.yaml"
        started = sandbox.aws("stepfunctions").start_execution(
            stateMachineArn=sandbox.stack.state_machine_arn, input=json.dumps({"release_uri": missing})
        )
        assert sandbox.wait(started["executionArn"]) == "FAILED"
        seen = {name: received(sandbox, url) for name, url in urls.items()}
        seen["all"] = sorted(note["Subject"] for note in sandbox.drain("notifications"))
        seen["events"] = sorted(event["detail-type"] for event in sandbox.drain("events"))  # checked by conftest
    return seen


READY = "Ready for listing: acme-sentiment 1.2.0"
UNREAD = "Release failed: missing.yaml at ResolveRelease"


def test_given_a_ready_and_a_failed_release_then_the_unfiltered_subscriber_gets_both(
    subscribers: dict[str, list[str]],
) -> None:
    assert subscribers["all"] == [READY, UNREAD]
    announced = [name for name in subscribers["events"] if name in {"Release Failed", "Release Ready For Listing"}]
    assert announced == ["Release Failed", "Release Ready For Listing"]  # the trigger's progress events aside


def test_given_a_filter_on_outcome_then_the_subscriber_gets_only_that_outcome(
    subscribers: dict[str, list[str]],
) -> None:
    assert subscribers["failed"] == [UNREAD]
    assert subscribers["ready"] == [READY]


def test_given_a_filter_on_product_version_kind_and_region_then_only_that_release_is_received(
    subscribers: dict[str, list[str]],
) -> None:
    # The failed release was never read: it names no product, so a product filter leaves it out.
    assert subscribers["acme-sentiment-1.x-in-us-east-2"] == [READY]
    assert subscribers["another-product"] == []


def test_given_a_failure_whose_announcement_cannot_be_built_then_the_raw_announcement_carries_its_outcome(
    image: WrittenLayout, tmp_path: Path
) -> None:
    # Lambda fails every invocation of the state machine's: ResolveRelease fails, and so does
    # BuildFailureAnnouncement, so the state machine announces the raw error (UnformattedFailure).
    lambda_down = ApiFault.parse("5xx:lambda:Invoke:times=1000")
    options = RunOptions(
        release=EXAMPLE,
        trigger="manual",
        validation="completed",
        log_file=tmp_path / "lambda.log",
        api_faults=[lambda_down],
    )
    sandbox = Sandbox(load_release(EXAMPLE), options)
    with sandbox.running():
        urls = subscribe(sandbox, {"failed": {"outcome": ["failed"]}})
        _, delivery = sandbox.seed_and_trigger(open_layout(image.path))
        failed = received(sandbox, urls["failed"])
        events = sandbox.drain("events")  # the unformatted detail is checked against its schema (conftest)

    assert delivery.status == "FAILED"
    assert failed == ["Release failed (unformatted)"]
    [event] = [event for event in events if event["detail-type"] == "Release Failed"]
    assert event["detail"]["unformatted"] is True

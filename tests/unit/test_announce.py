"""What a finished release tells people (SNS) and automation (EventBridge): ready, or failed and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.releases import published_images, release_spec, resolved_release

from mlpublish.announce import (
    Channels,
    Copied,
    SuccessState,
    deliver,
    failed,
    message_attributes,
    parse_error,
    ready,
    retry_delay,
)
from mlpublish.errors import AnnouncementNotDelivered, PreflightFailed
from mlpublish.events import FAILED, READY
from mlpublish.release import Product
from mlpublish.state import (
    CopiedObject,
    DeferredEvent,
    DeferredNotification,
    Failure,
    Release,
    ResourceResult,
    ScanProgress,
    ScanStatus,
    StatusItem,
    Trigger,
    ValidationProgress,
)
from sandbox.stack import load_template

pytestmark = pytest.mark.unit

EXECUTION = "arn:aws:states:us-west-2:123456789012:execution:mlpublish:acme-sentiment-1-2-0-0123456789ab"
TIMED_OUT = "Task timed out after 300.00 seconds"
PACKAGE_ARN = "arn:aws:sagemaker:us-east-2:123456789012:model-package/acme-sentiment-1-2-0-01234567"


DEBIAN = "Debian GNU/Linux 12 (bookworm)"


def with_os(release: Release, os_name: str | None, **read: Any) -> Release:
    """The release as ResolveRelease leaves it once it has read each image's OS (``read``: how,
    e.g. ``os_bytes_read=...``)."""
    update = {"os": os_name, **read}
    return release.model_copy(update={"images": [image.model_copy(update=update) for image in release.images]})


def success_state(release: Release | None = None, *, converted: bool = False) -> SuccessState:
    release = release or with_os(
        resolved_release(trigger=Trigger(kind="ecr-push", ref="acme/sentiment@sha256:5")), DEBIAN, os_bytes_read=3210
    )
    images = published_images(release, converted=converted)
    return SuccessState(
        execution=EXECUTION,
        release=release,
        copied=Copied(
            images=images,
            artifacts=[
                CopiedObject(
                    role=item.role,
                    container=item.container,
                    uri=item.destination_uri,
                    etag=item.etag,
                    size=item.size,
                    copied=True,
                )
                for item in release.objects
            ],
        ),
        scan=ScanProgress(
            complete=True,
            attempt=2,
            wait_seconds=0,
            images=[ScanStatus(status="COMPLETE") for _ in images],
        ),
        resource=ResourceResult(arn=PACKAGE_ARN, name=release.resource_name, action="created"),
        validation=ValidationProgress(
            status="Completed",
            attempt=4,
            wait_seconds=0,
            elapsed_seconds=420,
            validation_statuses=[StatusItem(name=PACKAGE_ARN, status="Completed")],
            image_scan_statuses=[StatusItem(name=PACKAGE_ARN, status="Completed")],
        ),
    )


def lambda_error(error: Exception) -> dict[str, str]:
    """A Catch block's error as Step Functions records a Lambda function's exception."""
    cause = {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": "0d6f6e8c-0000-4000-8000-000000000000",
        "stackTrace": ['  File "/var/task/app.py", line 1, in lambda_handler\n'],
    }
    return {"Error": type(error).__name__, "Cause": json.dumps(cause)}


def long_release() -> Release:
    spec = release_spec()
    spec = spec.model_copy(update={"product": Product(name="a" * 40, version="v" * 32)})
    return resolved_release(spec)


# --- ready ----------------------------------------------------------------------------


def test_given_a_validated_package_then_the_ready_detail_carries_what_a_listing_needs() -> None:
    state = success_state()

    announcement = ready(state)

    release, image = state.release, state.copied.images[0]
    assert (announcement.outcome, announcement.detail_type) == ("ready", READY)
    detail = announcement.detail
    assert {key: detail[key] for key in ("product", "version", "kind", "publishing_region")} == {
        "product": "acme-sentiment",
        "version": "1.2.0",
        "kind": "model_package",
        "publishing_region": "us-east-2",
    }
    assert (detail["model_package_arn"], detail["model_package_action"]) == (PACKAGE_ARN, "created")
    assert detail["model_package_name"] == release.resource_name
    assert detail["fingerprint"] == release.fingerprint
    assert detail["images"] == [
        {
            "container": "inference",
            "image_uri": image.image_uri,
            "digest": image.digest,
            "source_digest": image.source_digest,
            "media_type": image.media_type,
            "conversion": "none",
            "os": DEBIAN,
            "os_bytes_read": 3210,
            "os_uncertain": None,
            "os_remembered": False,
        }
    ]
    assert [artifact["role"] for artifact in detail["artifacts"]] == ["model_data", "validation_input"]
    assert detail["validation"]["status"] == "Completed"
    assert detail["image_scans"][0]["status"] == "COMPLETE"
    assert detail["trigger"] == {"kind": "ecr-push", "ref": "acme/sentiment@sha256:5"}
    assert (detail["release_uri"], detail["execution"]) == (release.release_uri, EXECUTION)
    json.dumps(detail)  # EventBridge takes it as JSON


def test_given_a_validated_package_then_the_message_says_what_to_do_next_in_the_portal() -> None:
    state = success_state()

    message = ready(state).message

    assert message.startswith("acme-sentiment 1.2.0 is ready to list on AWS Marketplace.")
    assert f"Model package: {PACKAGE_ARN} (created)" in message
    assert f"  inference: {state.copied.images[0].image_uri} (application/vnd.docker" in message
    assert f"; OS: {DEBIAN}, read from 3.1 KiB of its layers)" in message
    assert "converted from" not in message
    assert "Validation: Completed; image scans: acme/sentiment COMPLETE" in message
    assert "AWS Marketplace Management Portal" in message
    assert message.endswith(f"Execution: {EXECUTION}")
    assert ready(state).subject == "Ready for listing: acme-sentiment 1.2.0"


def test_given_an_image_converted_to_docker_v2_then_the_message_names_the_source_digest() -> None:
    state = success_state(converted=True)

    message = ready(state).message

    assert f"converted from {state.copied.images[0].source_digest}" in message


def test_given_an_os_remembered_for_the_digest_then_the_announcement_says_no_layer_was_read() -> None:
    state = success_state(with_os(resolved_release(), DEBIAN, os_bytes_read=0, os_remembered=True))

    announcement = ready(state)

    assert (announcement.detail["images"][0]["os_bytes_read"], announcement.detail["images"][0]["os_remembered"]) == (
        0,
        True,
    )
    assert f"; OS: {DEBIAN}, as recorded for this digest by an earlier read (no layer read))" in announcement.message


def test_given_an_os_not_certain_when_the_budget_ran_out_then_the_announcement_says_so_and_that_ecr_decided() -> None:
    why = "the read budget of 512 MiB ran out after 513 MiB, in layer 4 of 7"
    state = success_state(with_os(resolved_release(), None, os_bytes_read=513 * 1024 * 1024, os_uncertain=why))

    announcement = ready(state)

    image = announcement.detail["images"][0]
    assert (image["os"], image["os_uncertain"], image["os_bytes_read"]) == (None, why, 513 * 1024 * 1024)
    assert (
        f"; OS: not certain ({why}, of 513 MiB read); ECR's scan decided that it can be scanned)"
        in announcement.message
    )


def test_given_an_image_whose_os_was_not_detected_then_the_ready_announcement_says_so() -> None:
    state = success_state(with_os(resolved_release(), None))

    announcement = ready(state)

    assert announcement.detail["images"][0]["os"] is None
    assert "; OS: not detected)" in announcement.message


# --- parse_error ----------------------------------------------------------------------


def test_given_the_stage_times_then_the_ready_announcement_says_how_long_each_stage_took() -> None:
    stages = {
        "ResolveRelease": {"entered": "2026-12-02T12:00:00.000Z"},
        "CopyToPublishingRegion": {"entered": "2026-12-02T12:00:05.000Z"},
        "ScanImages": {"entered": "2026-12-02T12:02:05.000Z"},
        "AwaitValidation": {"entered": "2026-12-02T12:03:05.000Z"},
    }
    state = success_state().model_copy(update={"stages": stages, "finished": "2026-12-02T13:33:05.000Z"})

    announcement = ready(state)

    assert announcement.detail["stage_seconds"] == {
        "ResolveRelease": 5.0,
        "CopyToPublishingRegion": 120.0,
        "ScanImages": 60.0,
        "AwaitValidation": 5400.0,
    }
    assert "Time taken: resolve 5s, copy 2m 0s, scan 1m 0s, validation 1h 30m" in announcement.message


def test_given_a_release_that_failed_validating_then_the_failure_says_how_long_each_stage_took() -> None:
    state = {
        "release": resolved_release().model_dump(mode="json"),
        "error": {"Error": "ValidationFailed", "Cause": "the transform job failed"},
        "failed_stage": "AwaitValidation",
        "stages": {
            "ResolveRelease": {"entered": "2026-12-02T12:00:00.000Z"},
            "CopyToPublishingRegion": {"entered": "2026-12-02T12:00:02.000Z"},
            "ScanImages": {"entered": "2026-12-02T12:00:12.000Z"},
            "AwaitValidation": {"entered": "2026-12-02T12:00:20.000Z"},
        },
        "finished": "2026-12-02T12:40:20.000Z",
    }

    announcement = failed(state)

    assert announcement.detail["stage_seconds"]["AwaitValidation"] == 2400.0
    assert "Time taken: resolve 2s, copy 10s, scan 8s, validation 40m 0s" in announcement.message


def test_given_a_lambda_error_with_listed_reasons_then_each_reason_is_separated() -> None:
    error = PreflightFailed(
        "release acme-sentiment 1.2.0 breaks 2 Marketplace rule(s); fix the release file:",
        reasons=["publishing_region: ap-east-1 is not a publishing region", "validation.input: x is empty"],
    )

    failure = parse_error(lambda_error(error), "ResolveRelease")

    assert failure == Failure(
        stage="ResolveRelease",
        error="PreflightFailed",
        reason="release acme-sentiment 1.2.0 breaks 2 Marketplace rule(s); fix the release file:",
        reasons=["publishing_region: ap-east-1 is not a publishing region", "validation.input: x is empty"],
    )


def test_given_a_lambda_error_without_reasons_then_the_message_is_the_reason() -> None:
    error = {"Error": "Lambda.Unknown", "Cause": json.dumps({"errorType": "SourceChanged", "errorMessage": "changed"})}

    failure = parse_error(error, "CopyToPublishingRegion")

    assert (failure.error, failure.reason, failure.reasons) == ("SourceChanged", "changed", [])


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ({"Error": "States.Timeout", "Cause": TIMED_OUT}, TIMED_OUT),
        ({"Error": "States.Timeout", "Cause": ""}, "States.Timeout"),
        ({"Error": "States.Timeout"}, "States.Timeout"),
        ({"Error": "States.Runtime", "Cause": '"a JSON string"'}, '"a JSON string"'),
        ({"Error": "States.Runtime", "Cause": "[1, 2]"}, "[1, 2]"),
    ],
)
def test_given_a_states_error_with_a_plain_cause_then_the_cause_or_the_error_name_is_the_reason(
    error: dict[str, Any], reason: str
) -> None:
    failure = parse_error(error, "AwaitValidation")

    assert (failure.error, failure.reason, failure.reasons) == (error["Error"], reason, [])


@pytest.mark.parametrize("error", [None, {}])
def test_given_no_error_recorded_then_the_failure_is_a_runtime_error_at_the_stage(error: dict[str, Any] | None) -> None:
    assert parse_error(error, "Announce") == Failure(stage="Announce", error="States.Runtime", reason="States.Runtime")


# --- failed ---------------------------------------------------------------------------


def test_given_a_failure_before_the_release_was_resolved_then_stage_and_reasons_are_announced() -> None:
    error = PreflightFailed("release breaks 1 Marketplace rule(s); fix the release file:", reasons=["a: b"])
    trigger = {"kind": "release-upload", "ref": "s3://mlpublish-pipeline/releases/acme.yaml#abc"}
    state = {
        "release_uri": "s3://mlpublish-pipeline/releases/acme.yaml",
        "trigger": trigger,
        "pins": {},
        "error": lambda_error(error),
        "failed_stage": "ResolveRelease",
        "execution": EXECUTION,
    }

    announcement = failed(state)

    assert (announcement.outcome, announcement.detail_type) == ("failed", FAILED)
    assert "ResolveRelease" in announcement.subject
    assert announcement.detail == {
        "product": None,
        "version": None,
        "stage": "ResolveRelease",
        "error": "PreflightFailed",
        "reason": "release breaks 1 Marketplace rule(s); fix the release file:",
        "reasons": ["a: b"],
        "release_uri": "s3://mlpublish-pipeline/releases/acme.yaml",
        "trigger": trigger,
        "execution": EXECUTION,
        "stage_seconds": {},  # it failed before the stage timeline began
        "unformatted": False,
    }
    message = announcement.message
    assert "failed at stage ResolveRelease" in message
    assert "Time taken" not in message
    assert "PreflightFailed: release breaks 1 Marketplace rule(s); fix the release file:\n  - a: b" in message
    assert message.endswith(f"Execution: {EXECUTION}")


def test_given_an_inline_release_that_failed_to_resolve_then_the_announcement_still_builds() -> None:
    state = {
        "release": {"product": {"name": "Not A Slug"}},
        "error": {"Error": "InvalidRelease", "Cause": "bad"},
        "failed_stage": "ResolveRelease",
    }

    announcement = failed(state)

    assert announcement.detail["product"] is None
    assert announcement.detail["reason"] == "bad"
    assert announcement.detail["execution"] == ""


def test_given_a_failure_after_the_package_was_created_then_product_and_package_are_named() -> None:
    release = resolved_release(trigger=Trigger(kind="manual", ref="console"))
    state = {
        "release": release.model_dump(mode="json"),
        "resource": {"arn": PACKAGE_ARN, "name": release.resource_name, "action": "created"},
        "error": {"Error": "ValidationTimedOut", "Cause": json.dumps({"errorMessage": "still InProgress"})},
        "failed_stage": "AwaitValidation",
        "execution": EXECUTION,
    }

    announcement = failed(state)

    detail = announcement.detail
    assert (detail["product"], detail["version"], detail["stage"]) == ("acme-sentiment", "1.2.0", "AwaitValidation")
    assert detail["model_package_arn"] == PACKAGE_ARN
    assert detail["trigger"] == {"kind": "manual", "ref": "console"}
    assert detail["release_uri"] == release.release_uri
    assert announcement.subject == "Release failed: acme-sentiment 1.2.0 at AwaitValidation"


# --- message attributes (what subscribers filter on) ------------------------------------


def attribute_values(announcement_attributes: dict[str, Any]) -> dict[str, str]:
    assert {attribute["DataType"] for attribute in announcement_attributes.values()} == {"String"}
    return {name: attribute["StringValue"] for name, attribute in announcement_attributes.items()}


def test_given_a_ready_release_then_its_message_attributes_name_outcome_product_version_kind_and_region() -> None:
    announcement = ready(success_state())

    assert attribute_values(announcement.message_attributes) == {
        "outcome": "ready",
        "product": "acme-sentiment",
        "version": "1.2.0",
        "kind": "model_package",
        "region": "us-east-2",
    }


def test_given_a_failure_after_resolve_then_its_message_attributes_name_the_release() -> None:
    release = resolved_release()
    state = {"release": release.model_dump(mode="json"), "error": {"Error": "States.Timeout"}, "failed_stage": "Scan"}

    announcement = failed(state)

    assert attribute_values(announcement.message_attributes) == {
        "outcome": "failed",
        "product": "acme-sentiment",
        "version": "1.2.0",
        "kind": "model_package",
        "region": release.publishing_region,
    }


def test_given_a_failure_before_the_release_was_read_then_only_the_outcome_attribute_is_sent() -> None:
    # SNS refuses an attribute with an empty value: what is not known is left out.
    state = {"release_uri": "s3://b/releases/x.yaml", "error": {"Error": "InvalidRelease"}, "failed_stage": "Resolve"}

    assert attribute_values(failed(state).message_attributes) == {"outcome": "failed"}


def test_given_values_when_attributes_are_made_then_empty_ones_are_left_out() -> None:
    assert message_attributes("ready", product="p", version="", kind=None) == {
        "outcome": {"DataType": "String", "StringValue": "ready"},
        "product": {"DataType": "String", "StringValue": "p"},
    }


# --- subjects (SNS: printable ASCII, fewer than 100 characters) -----------------------


def test_given_the_longest_product_name_and_version_then_every_subject_fits_sns() -> None:
    release = long_release()
    state = {
        "release": release.model_dump(mode="json"),
        "error": {"Error": "States.Timeout"},
        "failed_stage": "CopyToPublishingRegion",
    }

    subjects = [ready(success_state(release)).subject, failed(state).subject]

    for subject in subjects:
        assert len(subject) < 100, subject
        assert subject.isascii()
        assert subject.isprintable()
    assert subjects[1].startswith("Release failed: " + "a" * 40)
    assert subjects[1].endswith("...")


# --- deferred announcements ------------------------------------------------------------------


class RefusingEvents:
    """EventBridge answering PutEvents with a failed entry (it does not raise for those)."""

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]}


def test_given_eventbridge_refusing_the_entry_when_a_deferred_event_is_delivered_then_it_is_not_delivered() -> None:
    channels = Channels(sns=None, events=RefusingEvents(), topic_arn="", event_bus="default", event_source="mlpublish")
    event = DeferredEvent(channel="events", detail_type=FAILED, detail={}, execution=EXECUTION)

    with pytest.raises(AnnouncementNotDelivered, match="InternalFailure: try again"):
        deliver(event, channels)


class RecordingSns:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, Any]:
        self.published.append(kwargs)
        return {"MessageId": "1"}


def deferred_note(**fields: Any) -> DeferredNotification:
    return DeferredNotification.model_validate(
        {"channel": "sns", "outcome": "failed", "subject": "s", "message": "m", "execution": EXECUTION, **fields}
    )


def test_given_a_deferred_notification_when_delivered_then_it_carries_the_attributes_the_state_machine_had() -> None:
    sns = RecordingSns()
    channels = Channels(sns=sns, events=None, topic_arn="arn:topic", event_bus="default", event_source="mlpublish")
    announcement = failed({"release": resolved_release().model_dump(mode="json"), "failed_stage": "Scan"})

    deliver(deferred_note(message_attributes=announcement.message_attributes), channels)

    [published] = sns.published
    assert published["MessageAttributes"] == announcement.message_attributes
    assert published["TopicArn"] == "arn:topic"


def test_given_a_deferred_notification_queued_without_attributes_when_delivered_then_it_carries_the_outcome() -> None:
    sns = RecordingSns()
    channels = Channels(sns=sns, events=None, topic_arn="arn:topic", event_bus="default", event_source="mlpublish")

    deliver(deferred_note(), channels)

    assert sns.published[0]["MessageAttributes"] == {"outcome": {"DataType": "String", "StringValue": "failed"}}


def test_given_a_channel_down_then_retries_back_off_to_hourly_and_end_in_the_dead_letter_queue_within_14_days() -> None:
    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
    queue = template["Resources"]["AnnouncementQueue"]["Properties"]
    tries = queue["RedrivePolicy"]["maxReceiveCount"]
    waited = sum(retry_delay(count) for count in range(1, tries + 1))

    assert [retry_delay(count) // 60 for count in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert 2 * 24 * 3600 < waited < queue["MessageRetentionPeriod"] - 7 * 24 * 3600  # a week left in the DLQ

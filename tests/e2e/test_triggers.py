"""Every way a release starts, and what happens when it starts again with the same content.

The runner plays the seller so that the chosen trigger is the one that fires (see
sandbox/runner.py); ``--repeat`` then delivers the same trigger once more. A repeated event
is a no-op (the execution name is derived from the content); a second manual start runs,
but copies nothing and reuses the validated model package.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.fixtures.cli_runs import VALIDATION_MINUTES, CliRun

pytestmark = pytest.mark.e2e

TRIGGERS = ("ecr-push", "s3-upload", "manual")
READY = "Release Ready For Listing"


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_given_a_trigger_when_it_fires_then_the_release_it_starts_is_ready_for_listing(
    publish_by: Callable[[str], CliRun], trigger: str
) -> None:
    run = publish_by(trigger)

    [event] = run.events(READY)

    assert run.exit_code == 0, run.stderr
    assert run.reported["status"] == "SUCCEEDED"
    assert event["detail"]["trigger"]["kind"] == trigger
    assert run.reported["model_packages"] == [run.reported["model_package_arn"]]


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_given_a_published_release_when_its_trigger_fires_again_then_nothing_is_copied_or_created_again(
    publish_by: Callable[[str], CliRun], trigger: str
) -> None:
    run = publish_by(trigger)
    first, repeat = run.reported, run.reported["repeat"]

    assert repeat["status"] == "SUCCEEDED"
    assert repeat["model_packages"] == first["model_packages"] == [first["model_package_arn"]]
    assert repeat["blobs_copied"] == 0
    assert repeat["bytes_copied"] == 0
    assert run.regions[1] == run.regions[0]


@pytest.mark.parametrize("trigger", ["ecr-push", "s3-upload"])
def test_given_a_published_release_when_the_same_event_is_delivered_again_then_no_execution_starts(
    publish_by: Callable[[str], CliRun], trigger: str
) -> None:
    run = publish_by(trigger)
    first, repeat = run.reported, run.reported["repeat"]

    assert repeat["deduplicated"] is True
    assert repeat["execution_arn"] == first["execution_arn"]
    assert repeat["notifications"] == []
    assert repeat["events"] == []


def test_given_a_published_release_when_started_by_hand_again_then_a_new_execution_reuses_everything(
    publish_by: Callable[[str], CliRun],
) -> None:
    run = publish_by("manual")
    first, repeat = run.reported, run.reported["repeat"]

    [note] = repeat["notifications"]
    [event] = [event for event in repeat["events"] if event["detail-type"] == READY]

    assert repeat["deduplicated"] is False
    assert repeat["execution_arn"] != first["execution_arn"]
    assert repeat["blobs_skipped"] == first["blobs_copied"] > 0
    assert repeat["published_image_digest"] == first["published_image_digest"]
    assert repeat["model_package_arn"] == first["model_package_arn"]
    assert event["detail"]["model_package_action"] == "reused"
    assert f"{first['model_package_arn']} (reused)" in note["message"]
    assert repeat["virtual_seconds"] < VALIDATION_MINUTES * 60  # the validated package is not validated again


def test_given_waiting_notifications_when_the_release_file_comes_before_its_image_then_the_wait_and_start_are_told(
    publish_image: Callable[..., CliRun],
) -> None:
    run = publish_image("docker-v2", "--trigger", "ecr-push", "--parameter-overrides", "WaitingNotifications=Enabled")
    report = run.reported

    [waiting] = [event for event in report["events"] if event["detail-type"] == "Release Waiting"]
    [started] = [event for event in report["events"] if event["detail-type"] == "Release Started"]
    [told] = [note for note in report["notifications"] if "is waiting and has not started" in note["message"]]
    assert report["status"] == "SUCCEEDED"
    # The sandbox uploads the release file first, as a seller who then pushes the image does.
    assert "containers.0.image" in waiting["detail"]["missing"]
    assert waiting["detail"]["trigger"]["detail-type"] == "Object Created"
    assert started["detail"]["execution"] == report["execution_arn"]
    assert started["detail"]["trigger"]["detail-type"] == "ECR Image Action"
    assert started["detail"]["release"] == waiting["detail"]["release"]
    assert waiting["detail"]["release"] in told["message"]
    assert waiting["detail"]["missing"] in told["message"]
    assert told["outcome"] is None  # operations messages carry no outcome attribute

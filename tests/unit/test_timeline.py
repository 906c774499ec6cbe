"""How long each stage took, from the times the state machine keeps under $.stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlpublish.timeline import STAGES, parse_time, timeline

pytestmark = pytest.mark.unit

ASL = Path(__file__).resolve().parents[2] / "statemachine" / "publish.asl.json"
STAGE_EVENT_STATES = {
    "EnterCopying": "CopyToPublishingRegion",
    "EnterScanning": "ScanImages",
    "EnterValidation": "AwaitValidation",
    "EnterListing": "ListVersion",
}


def at(seconds: int) -> str:
    """A time as Step Functions writes $$.State.EnteredTime, ``seconds`` after 12:00."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"2026-12-02T{12 + hours:02d}:{minutes:02d}:{secs:02d}.250Z"


def entered(seconds: int) -> dict[str, Any]:
    return {"entered": at(seconds)}


def test_given_a_ready_release_then_each_stage_lasts_until_the_next_one_began_and_the_last_until_the_end() -> None:
    stages = {
        "ResolveRelease": {"entered": at(0)},
        "CopyToPublishingRegion": entered(4),
        "ScanImages": entered(94),
        "AwaitValidation": entered(154),
    }

    times = timeline(stages, at(154 + 2 * 3600))

    assert times.seconds == {
        "ResolveRelease": 4.0,
        "CopyToPublishingRegion": 90.0,
        "ScanImages": 60.0,
        "AwaitValidation": 7200.0,
    }
    assert times.total == 154 + 7200
    assert times.unsent == []
    assert times.summary() == "resolve 4s, copy 1m 30s, scan 1m 0s, validation 2h 0m"


def test_given_a_release_that_failed_while_copying_then_the_copy_lasts_until_the_failure_was_announced() -> None:
    stages = {"ResolveRelease": {"entered": at(0)}, "CopyToPublishingRegion": entered(3)}

    times = timeline(stages, at(45))

    assert times.seconds == {"ResolveRelease": 3.0, "CopyToPublishingRegion": 42.0}


def test_given_a_stage_event_eventbridge_refused_then_the_stage_is_unsent_and_no_duration_is_guessed_around_it() -> (
    None
):
    caught = {"Error": "EventBridge.InternalException", "Cause": "the bus is down"}
    stages = {
        "ResolveRelease": {"entered": at(0)},
        "CopyToPublishingRegion": entered(4),
        "ScanImages": caught,  # the state's Catch wrote its error where the time would be
        "AwaitValidation": {"Error": "EventBridge.FailedEntry", "Cause": "a failed entry"},
    }

    times = timeline(stages, at(300))

    assert times.unsent == ["ScanImages", "AwaitValidation"]
    assert times.seconds == {"ResolveRelease": 4.0}  # copy's end, scan's and validation's times unknown
    assert times.total is None  # not every stage is known


def test_given_no_stages_then_nothing_is_known() -> None:
    assert timeline(None, at(10)).seconds == {}
    assert timeline({"ResolveRelease": {"entered": at(0)}}, "").seconds == {}
    assert timeline({}, at(0)).summary() == ""


@pytest.mark.parametrize(
    "written", ["2026-12-02T12:00:01.250Z", "2026-12-02T12:00:01.250000+00:00", "2026-12-02T12:00:01.250"]
)
def test_given_the_forms_of_an_entered_time_then_each_is_read_as_utc(written: str) -> None:
    moment = parse_time(written)

    assert moment is not None
    assert moment.utcoffset() is not None
    assert moment.isoformat() == "2026-12-02T12:00:01.250000+00:00"


@pytest.mark.parametrize("written", [None, "", "yesterday", 17])
def test_given_something_not_a_time_then_it_is_not_read(written: Any) -> None:
    assert parse_time(written) is None


def test_given_the_state_machine_then_each_stage_change_is_an_event_that_never_fails_the_release() -> None:
    states = json.loads(ASL.read_text())["States"]

    for name, stage in STAGE_EVENT_STATES.items():
        state = states[name]
        [entry] = state["Parameters"]["Entries"]
        assert state["Resource"] == "arn:aws:states:::events:putEvents"
        assert (entry["DetailType"], entry["Detail"]["stage"]) == ("Release Stage Changed", stage)
        assert entry["Detail"]["execution.$"] == "$$.Execution.Id"
        assert state["ResultPath"] == f"$.stages.{stage}"
        assert state["ResultSelector"]["entered.$"] == "$$.State.EnteredTime"
        [catch] = state["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
        assert catch["Next"] == state["Next"]  # an EventBridge outage costs the event, not the release
        assert catch["ResultPath"] == state["ResultPath"]  # and never overwrites the release's state
    assert states["ResolveRelease"]["ResultSelector"]["stages"] == {
        "ResolveRelease": {"entered.$": "$$.State.EnteredTime"}
    }
    assert [stage for stage in STAGES if stage != "ResolveRelease"] == list(STAGE_EVENT_STATES.values())
    for name in ("BuildReadyAnnouncement", "BuildFailureAnnouncement"):
        assert states[name]["Parameters"]["finished.$"] == "$$.State.EnteredTime"

"""How long each stage of a release took, from the times the state machine recorded.

The state machine keeps, under ``$.stages``, the time each stage began (``$$.State.EnteredTime``
of ResolveRelease and of the three "Release Stage Changed" events: EnterCopying, EnterScanning,
EnterValidation) and passes the time the announcement began as ``finished``. A stage lasts from
its own entry to the next stage's, or to ``finished`` for the stage the release ended in.

A stage-change event that EventBridge did not take (its PutEvents failed, or answered with a
failed entry: the ``EventBridge.FailedEntry`` error) leaves, instead of a time, the error its
Catch recorded. Such a stage is reported as unsent; the durations around a missing time are
left out rather than guessed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

# In the order a release passes them; the names are those a failure's ``stage`` uses. ScanImages
# runs until validation begins, so it includes creating the model package (seconds).
STAGES = ("ResolveRelease", "CopyToPublishingRegion", "ScanImages", "AwaitValidation", "ListVersion")


@dataclass(frozen=True)
class Timeline:
    seconds: dict[str, float] = field(default_factory=dict)
    unsent: list[str] = field(default_factory=list)

    @property
    def total(self) -> float | None:
        """Seconds from the release's start to its announcement, when every stage is known."""
        return None if not self.seconds or self.unsent else round(sum(self.seconds.values()), 3)

    def summary(self) -> str:
        """``copy 1m 20s, scan 40s, ...`` for people; empty when nothing is known."""
        return ", ".join(f"{_LABELS[stage]} {_duration(seconds)}" for stage, seconds in self.seconds.items())


_LABELS = {
    "ResolveRelease": "resolve",
    "CopyToPublishingRegion": "copy",
    "ScanImages": "scan",
    "AwaitValidation": "validation",
    "ListVersion": "listing",
}


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 time as Step Functions writes it (``2026-12-02T06:46:11.317Z``); else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def timeline(stages: Any, finished: Any) -> Timeline:
    """Durations of the stages in ``stages`` (the state's ``$.stages``) up to ``finished``."""
    stages = stages if isinstance(stages, dict) else {}
    reached = [stage for stage in STAGES if stage in stages]
    entered = {stage: parse_time((stages[stage] or {}).get("entered")) for stage in reached}
    unsent = [stage for stage in reached if stage != "ResolveRelease" and entered[stage] is None]
    end_of_release = parse_time(finished)
    seconds: dict[str, float] = {}
    for index, stage in enumerate(reached):
        following = reached[index + 1] if index + 1 < len(reached) else None
        start = entered[stage]
        end = entered[following] if following else end_of_release
        if start is not None and end is not None and end >= start:
            seconds[stage] = round((end - start).total_seconds(), 3)
    return Timeline(seconds=seconds, unsent=unsent)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"

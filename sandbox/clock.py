"""Virtual time for the sandbox: Step Functions waits and retry back-offs cost no real time.

moto's ASL interpreter really sleeps: a Wait state blocks in
``WaitFunction._wait_interval`` and a Retrier in ``time.sleep`` (moto 5.2.5). The
pipeline waits out SageMaker validation for hours, so the sandbox replaces both with a
virtual clock: every wait returns at once, advances the clock and is counted. Other
extensions (ECR scans, SageMaker validation) read ``now()`` to decide what has
"happened" by then, so a state machine that polls with Wait states sees time pass.

Virtual time only moves when something waits (or ``advance`` is called): real time spent
computing is not added, which keeps runs deterministic. Executions run in background
threads and share one clock, so waits in concurrent branches add up (a Map of two
60-second waits advances the clock by 120 seconds, not 60): the clock is a budget of
waiting, never behind the real service.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any
from unittest.mock import patch

from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state import state as state_module
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.timestamp import Timestamp
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
    WaitFunction,
)

from sandbox.extension import Extension


@dataclass(frozen=True)
class ClockStats:
    """What the clock has absorbed so far; figures for a run report."""

    virtual_seconds: float
    wait_states: int
    wait_state_seconds: float
    retries: int
    retry_seconds: float


class _RetrierTime:
    """Stands in for the ``time`` module inside moto's retrier: only ``sleep`` is virtual."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock

    def sleep(self, seconds: float) -> None:
        self._clock.record_retry(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class _StateDatetime:
    """Stands in for the ``datetime`` module inside moto's ``state``: the context object's
    ``$$.State.EnteredTime`` is real time plus the virtual seconds waited so far, in Step
    Functions' format (``2026-12-02T06:46:11.317Z``): stage times count both the work done and
    the waits a release went through."""

    timezone = dt.timezone

    def __init__(self, clock: VirtualClock) -> None:
        self.datetime = self
        self._clock = clock

    def now(self, tz: dt.tzinfo | None = None) -> _AwsTime:
        return _AwsTime.fromtimestamp(time.time() + self._clock.virtual_seconds, dt.UTC)


class _AwsTime(dt.datetime):
    def isoformat(self, sep: str = "T", timespec: str = "milliseconds") -> str:
        return super().isoformat(sep, timespec).replace("+00:00", "Z")


class VirtualClock(Extension):
    """A thread-safe virtual clock that Step Functions Wait/Retry advance instead of sleeping.

    Install with ``undo = clock.install()`` (or ``with clock:``); ``undo()`` restores moto.
    """

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._start = (start or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        self._lock = threading.Lock()
        self._offset = 0.0
        self._wait_states = 0
        self._wait_state_seconds = 0.0
        self._retries = 0
        self._retry_seconds = 0.0

    @property
    def start(self) -> dt.datetime:
        """The real time the clock started at (UTC)."""
        return self._start

    @property
    def virtual_seconds(self) -> float:
        """Total virtual seconds that have passed (waits, retries and explicit advances)."""
        with self._lock:
            return self._offset

    @property
    def waits(self) -> int:
        """How many waits (Wait states and retry back-offs) the clock absorbed."""
        with self._lock:
            return self._wait_states + self._retries

    def now(self) -> dt.datetime:
        """The sandbox's current time: real start time plus the virtual offset (UTC, aware)."""
        with self._lock:
            return self._start + dt.timedelta(seconds=self._offset)

    def seconds_since(self, moment: dt.datetime) -> float:
        """Virtual seconds elapsed since ``moment`` (an aware datetime on this clock)."""
        return (self.now() - moment).total_seconds()

    def advance(self, seconds: float) -> None:
        """Move virtual time forward without counting a wait (e.g. a CLI 'skip ahead')."""
        if seconds < 0:
            raise ValueError(f"time only moves forward; got {seconds} seconds")
        with self._lock:
            self._offset += seconds

    def record_wait_state(self, seconds: float) -> None:
        """Absorb one Wait state of ``seconds`` (negative or zero waits cost nothing)."""
        with self._lock:
            self._wait_states += 1
            if seconds > 0:
                self._wait_state_seconds += seconds
                self._offset += seconds

    def record_retry(self, seconds: float) -> None:
        """Absorb one Retry back-off interval of ``seconds``."""
        with self._lock:
            self._retries += 1
            if seconds > 0:
                self._retry_seconds += seconds
                self._offset += seconds

    def stats(self) -> ClockStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return ClockStats(
                virtual_seconds=self._offset,
                wait_states=self._wait_states,
                wait_state_seconds=self._wait_state_seconds,
                retries=self._retries,
                retry_seconds=self._retry_seconds,
            )

    def _patch(self, stack: ExitStack) -> None:
        """Patch moto's Wait and Retry to use this clock."""
        stack.enter_context(patch.object(WaitFunction, "_wait_interval", self._wait_interval_patch()))
        stack.enter_context(patch.object(Timestamp, "_get_wait_seconds", self._timestamp_patch()))
        stack.enter_context(patch.object(retrier_decl, "time", _RetrierTime(self)))
        stack.enter_context(patch.object(state_module, "datetime", _StateDatetime(self)))

    def _wait_interval_patch(self) -> Callable[[WaitFunction, Any, int], None]:
        clock = self

        def _wait_interval(wait: WaitFunction, env: Any, wait_seconds: int) -> None:
            clock.record_wait_state(wait_seconds)

        return _wait_interval

    def _timestamp_patch(self) -> Callable[[Timestamp, Any], int]:
        """Measure a Timestamp wait against virtual now (moto compares with naive local time)."""
        clock = self

        # Parameter names match moto's: it calls these with keyword arguments.
        def _get_wait_seconds(wait: Timestamp, env: Any) -> int:
            wait.string.eval(env=env)
            timestamp_str: str = env.stack.pop()
            timestamp = wait._from_timestamp_string(timestamp=timestamp_str)
            if timestamp is None:
                raise FailureEventException(wait._create_failure_event(env, timestamp_str))
            delta = timestamp.replace(tzinfo=dt.UTC) - clock.now()
            return int(delta.total_seconds())

        return _get_wait_seconds

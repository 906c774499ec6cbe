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

Task tokens: a ``.waitForTaskToken`` task waits for SendTaskSuccess/Failure up to its
TimeoutSeconds, in real time in moto. Here it waits in virtual time: while nothing in the
sandbox is busy (no Lambda invocation, no queued message: the ``busy`` probes), the clock
jumps to the next scheduled timer (``schedule``: e.g. the moment SageMaker finishes a
validation and emits its state-change event) or, when none comes before the task's timeout,
to the timeout itself, which then fails the task with States.Timeout as on AWS. Timers also
fire when Wait states and retries move the clock past them.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
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
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.timestamp import Timestamp
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
    WaitFunction,
)

from sandbox.extension import Extension

#: Real seconds a token wait listens for its callback before it looks at whether the sandbox is idle.
LISTEN_SECONDS = 0.05
#: Real seconds the sandbox must stay idle before a token wait lets virtual time jump ahead: a
#: hand-off between two components (a rule's target, a queue's poller) is not idleness.
QUIET_SECONDS = 0.25


@dataclass(frozen=True)
class ClockStats:
    """What the clock has absorbed so far; figures for a run report."""

    virtual_seconds: float
    wait_states: int
    wait_state_seconds: float
    retries: int
    retry_seconds: float
    token_waits: int = 0
    token_wait_seconds: float = 0.0
    timers_fired: int = 0


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
        self._token_waits = 0
        self._token_wait_seconds = 0.0
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        self._timers_fired = 0
        #: Callables that say whether something in the sandbox is still working (see token waits).
        self.busy: list[Callable[[], bool]] = []

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
        self.fire_due()

    def record_wait_state(self, seconds: float) -> None:
        """Absorb one Wait state of ``seconds`` (negative or zero waits cost nothing)."""
        with self._lock:
            self._wait_states += 1
            if seconds > 0:
                self._wait_state_seconds += seconds
                self._offset += seconds
        self.fire_due()

    def record_retry(self, seconds: float) -> None:
        """Absorb one Retry back-off interval of ``seconds``."""
        with self._lock:
            self._retries += 1
            if seconds > 0:
                self._retry_seconds += seconds
                self._offset += seconds
        self.fire_due()

    def stats(self) -> ClockStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return ClockStats(
                virtual_seconds=self._offset,
                wait_states=self._wait_states,
                wait_state_seconds=self._wait_state_seconds,
                retries=self._retries,
                retry_seconds=self._retry_seconds,
                token_waits=self._token_waits,
                token_wait_seconds=self._token_wait_seconds,
                timers_fired=self._timers_fired,
            )

    # ------------------------------------------------------------------ timers
    def schedule(self, at: dt.datetime, action: Callable[[], None]) -> None:
        """Run ``action`` once the clock reaches ``at`` (at once if it has)."""
        offset = (at - self._start).total_seconds()
        with self._lock:
            heapq.heappush(self._timers, (offset, next(self._timer_ids), action))
        self.fire_due()

    def next_timer(self) -> float | None:
        """The virtual offset of the earliest pending timer, if any."""
        with self._lock:
            return self._timers[0][0] if self._timers else None

    def fire_due(self) -> None:
        """Run every timer the clock has reached, earliest first (outside the clock's lock)."""
        while True:
            with self._lock:
                if not self._timers or self._timers[0][0] > self._offset:
                    return
                _, _, action = heapq.heappop(self._timers)
                self._timers_fired += 1
            action()

    def is_busy(self) -> bool:
        """Whether any probe says the sandbox is still working."""
        return any(probe() for probe in self.busy)

    def await_callback(self, listen: Callable[[float], Any], timeout_seconds: float) -> Any:
        """Wait up to ``timeout_seconds`` virtual seconds for ``listen(real_seconds)`` to return
        something other than None; None when the virtual timeout passed first."""
        with self._lock:
            self._token_waits += 1
            deadline = self._offset + timeout_seconds
        while True:
            outcome = listen(LISTEN_SECONDS)
            if outcome is not None:
                return outcome
            if self.is_busy():
                continue
            outcome = listen(QUIET_SECONDS)
            if outcome is not None or self.is_busy():
                if outcome is not None:
                    return outcome
                continue
            with self._lock:
                now = self._offset
                due = self._timers[0][0] if self._timers else None
                target = due if due is not None and due < deadline else deadline
                step = max(target - now, 0.0)
                self._offset += step
                self._token_wait_seconds += step
            self.fire_due()
            if target >= deadline:
                # Whatever the last timers started may still answer before the task times out.
                while True:
                    outcome = listen(QUIET_SECONDS)
                    if outcome is not None or not self.is_busy():
                        return outcome

    def _patch(self, stack: ExitStack) -> None:
        """Patch moto's Wait and Retry to use this clock."""
        stack.enter_context(patch.object(WaitFunction, "_wait_interval", self._wait_interval_patch()))
        stack.enter_context(patch.object(Timestamp, "_get_wait_seconds", self._timestamp_patch()))
        stack.enter_context(patch.object(retrier_decl, "time", _RetrierTime(self)))
        stack.enter_context(patch.object(state_module, "datetime", _StateDatetime(self)))
        stack.enter_context(
            patch.object(StateTaskServiceCallback, "_wait_for_task_token_timeout", self._token_wait_patch())
        )

    def _token_wait_patch(self) -> Callable[..., Any]:
        clock = self

        # Parameter names match moto's: it calls these with keyword arguments.
        def _wait_for_task_token_timeout(task: Any, timeout_seconds: int, callback_endpoint: Any) -> Any:
            return clock.await_callback(lambda seconds: callback_endpoint.wait(timeout=seconds), timeout_seconds)

        return _wait_for_task_token_timeout

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

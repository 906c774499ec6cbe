"""BuildAnnouncement: builds the SNS message (and the attributes subscribers filter on) and the
EventBridge detail for a finished release and sends them, and records the release's metrics
(outcome, the time each stage took, stage-change events EventBridge refused).

It sends them itself, so the announcement (an entry per image, by the event contract) never
becomes state: the execution ends with the outcome, the subject, and where the announcement
waits when a channel did not take it (the announcement queue, for DeliverAnnouncement).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.announce import Queue, SuccessState, failed, ready, send, stack_channels
from mlpublish.aws import client
from mlpublish.errors import ReleaseRecordUnusable
from mlpublish.records import load
from mlpublish.settings import announcement_settings
from mlpublish.state import AnnouncementInput, AnnouncementSent, ReleaseSummary
from mlpublish.timeline import Timeline, timeline

# A channel that is down costs a few seconds of the client's retries; then the queue keeps it.
ATTEMPTS_PER_CHANNEL = 3

logger = Logger()
metrics = Metrics()
config = announcement_settings()


def record_metrics(outcome: str, times: Timeline, failed_stage: str | None) -> None:
    """``ReleasesReady``/``ReleasesFailed``, ``StageDuration`` and ``ReleaseDuration`` (seconds,
    by ``Stage`` and ``Outcome``), ``StageEventsNotSent``."""
    if outcome == "ready":
        metrics.add_metric(name="ReleasesReady", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="ReleasesFailed", unit=MetricUnit.Count, value=1)
    if failed_stage:
        with single_metric(name="ReleasesFailedAt", unit=MetricUnit.Count, value=1) as metric:
            metric.add_dimension(name="Stage", value=failed_stage)
    for stage, seconds in times.seconds.items():
        with single_metric(name="StageDuration", unit=MetricUnit.Seconds, value=seconds) as metric:
            metric.add_dimension(name="Stage", value=stage)
            metric.add_dimension(name="Outcome", value=outcome)
    if times.total is not None:
        with single_metric(name="ReleaseDuration", unit=MetricUnit.Seconds, value=times.total) as metric:
            metric.add_dimension(name="Outcome", value=outcome)
    if times.unsent:
        metrics.add_metric(name="StageEventsNotSent", unit=MetricUnit.Count, value=len(times.unsent))
        logger.warning("stage-change events EventBridge did not take", extra={"stages": times.unsent})


def whole_release(raw: Any, *, needed: bool) -> Any:
    """The release the state's summary names, read from its record (mlpublish/records.py). A
    failure is announced even when the record cannot be read: with the summary's names."""
    if not isinstance(raw, dict) or "record" not in raw:
        return raw  # the execution failed before ResolveRelease kept the release
    try:
        return load(client("s3"), ReleaseSummary.model_validate(raw)).model_dump(mode="json")
    except ReleaseRecordUnusable:
        if needed:
            raise
        logger.warning("the release record is unusable; the failure is announced with the summary", exc_info=True)
        return raw


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = AnnouncementInput.model_validate(event)
    state = {**request.state, "execution": request.execution, "finished": request.finished}
    state["release"] = whole_release(state.get("release"), needed=request.outcome == "ready")
    announcement = ready(SuccessState.model_validate(state)) if request.outcome == "ready" else failed(state)
    times = timeline(state.get("stages"), request.finished)
    failed_stage = None if request.outcome == "ready" else str(state.get("failed_stage", "unknown"))
    record_metrics(announcement.outcome, times, failed_stage)
    channels = stack_channels(config, ATTEMPTS_PER_CHANNEL)
    queue = Queue(config.announcement_queue_url, config.region, ATTEMPTS_PER_CHANNEL)
    sent = send(announcement, request.execution, channels, queue)
    log_delivery(sent, times)
    return sent.model_dump(mode="json", exclude_none=True)


def log_delivery(sent: AnnouncementSent, times: Timeline) -> None:
    """One line for the announcement, and a metric for each channel it did not reach at once."""
    extra = {"outcome": sent.outcome, "subject": sent.subject, "stage_seconds": times.seconds}
    deferred = {
        channel: queued.reason
        for channel, queued in (("sns", sent.deferred_notification), ("events", sent.deferred_event))
        if queued is not None
    }
    if deferred:
        metrics.add_metric(name="AnnouncementsDeferred", unit=MetricUnit.Count, value=len(deferred))
        logger.warning(
            "announcement queued for the channels that did not take it", extra={**extra, "deferred": deferred}
        )
    if sent.undelivered:
        metrics.add_metric(name="AnnouncementsNotDelivered", unit=MetricUnit.Count, value=len(sent.undelivered))
        logger.error(
            "announcement neither sent nor queued",
            extra={**extra, "undelivered": [item.model_dump() for item in sent.undelivered]},
        )
    if not deferred and not sent.undelivered:
        logger.info("announcement sent", extra=extra)

"""Trigger: SQS batch of EventBridge events (ECR push, S3 upload) -> release executions.

Each record is processed on its own; a record that fails is reported back to SQS
(partial batch response), retried, and after five tries lands in the dead-letter queue,
whose alarm notifies the topic. A record that can never start anything (malformed, or its
release file deleted) is logged with why, counted (RefusedTriggers) and not retried.

What it did is said on the stack's bus: "Release Started" for each execution it began and
"Release Waiting" (naming the missing source) for each release that cannot start yet.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, client
from mlpublish.errors import RecordRefused
from mlpublish.settings import trigger_settings
from mlpublish.trigger import ReleaseCatalog, parse_record, progress_entries, put_progress, start_for_event

METRIC_BY_OUTCOME = {"started": "ReleasesStarted", "duplicate": "DuplicateTriggers", "waiting": "ReleasesWaiting"}

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
config = trigger_settings()


@cache
def release_catalog() -> ReleaseCatalog:
    """The release files, parsed once per ETag for the container's life; its S3 client is made
    on the first record, not at import."""
    return ReleaseCatalog(client("s3", config.region), config.pipeline_bucket, config.release_prefix)


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    try:
        start_for_record(record)
    except RecordRefused as exc:
        logger.error("trigger record refused", extra={"reason": str(exc), "message_id": record.message_id})
        metrics.add_metric(name="RefusedTriggers", unit=MetricUnit.Count, value=1)


def start_for_record(record: SQSRecord) -> None:
    event = parse_record(record.body)
    started = start_for_event(
        event,
        catalog=release_catalog(),
        sfn=client("stepfunctions", config.region),
        state_machine_arn=config.state_machine_arn,
        ecr_for=lambda region: client("ecr", region),
        publishing_region=config.publishing_region,
        sources=config.sources,
    )
    if not started:
        logger.info("no release uses this event's image or object", extra={"detail": event.detail})
        metrics.add_metric(name="UnmatchedTriggers", unit=MetricUnit.Count, value=1)
    for item in started:
        if item.outcome == "waiting":
            logger.warning(
                "release waits for its other sources", extra={"release": item.release_uri, "missing": item.note}
            )
        elif item.note:
            logger.error(
                "release names sources the stack does not allow: started unread, its preflight refuses it",
                extra={"release": item.release_uri, "execution": item.execution_arn, "reason": item.note},
            )
            metrics.add_metric(name="RefusedSources", unit=MetricUnit.Count, value=1)
        else:
            logger.info(
                "release execution",
                extra={"release": item.release_uri, "outcome": item.outcome, "execution": item.execution_arn},
            )
        metrics.add_metric(name=METRIC_BY_OUTCOME[item.outcome], unit=MetricUnit.Count, value=1)
    entries = progress_entries(started, event, bus=config.event_bus_name, source=config.event_source)
    # The executions are started whatever happens here, and each announces its own outcome:
    # a progress event that EventBridge does not take is logged and counted, not retried
    # beyond one SDK retry, so an EventBridge outage does not hold the trigger (and its batch).
    problems = put_progress(client("events", config.region, max_attempts=2), entries) if entries else []
    if problems:
        logger.error("progress events not sent", extra={"problems": problems})
        metrics.add_metric(name="ProgressEventsNotSent", unit=MetricUnit.Count, value=len(problems))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)

"""DeliverAnnouncement: announcements SNS or EventBridge did not take, from the announcement queue.

The state machine sends the queue one message per channel that failed (after its own
retries). Each record is published to that one channel; a record the channel still refuses
is kept out of sight for a growing delay and reported back to SQS (partial batch response),
which delivers it again, and after 100 tries moves it to the dead-letter queue, whose alarm
fires. A message is deleted only once its channel accepted it, so no channel is sent the
same announcement twice by a retry of the other.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.parser.types import Json
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.announce import deliver, postpone, stack_channels
from mlpublish.aws import TRACED_MODULES, client
from mlpublish.errors import AnnouncementNotDelivered
from mlpublish.settings import announcement_settings
from mlpublish.state import Deferred

# SQS is the retry loop: a channel that is down fails the record quickly and the queue backs off.
ATTEMPTS_PER_DELIVERY = 2

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()
config = announcement_settings()


class DeferredRecord(SqsRecordModel):
    body: Json[Deferred]


processor = BatchProcessor(event_type=EventType.SQS, model=DeferredRecord)


@tracer.capture_method
def record_handler(record: DeferredRecord) -> None:
    deferred = record.body
    channels = stack_channels(config, ATTEMPTS_PER_DELIVERY)
    receive_count = int(record.attributes.ApproximateReceiveCount)
    try:
        deliver(deferred, channels)
    except AnnouncementNotDelivered as exc:
        delay = postpone(
            client("sqs", config.region, max_attempts=ATTEMPTS_PER_DELIVERY),
            config.announcement_queue_url,
            record.receiptHandle,
            receive_count,
        )
        logger.warning(
            "deferred announcement not delivered yet",
            extra={
                "channel": deferred.channel,
                "execution": deferred.execution,
                "reason": str(exc),
                "receive_count": receive_count,
                "retry_in_seconds": delay,
            },
        )
        metrics.add_metric(name="AnnouncementsStillDeferred", unit=MetricUnit.Count, value=1)
        raise
    logger.info(
        "deferred announcement delivered",
        extra={"channel": deferred.channel, "execution": deferred.execution, "receive_count": receive_count},
    )
    metrics.add_metric(name="DeferredAnnouncementsDelivered", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)

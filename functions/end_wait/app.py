"""EndWait: AWS's state-change events (SageMaker validation, Marketplace change sets), queued
from the stack region's default bus, end the waits that stored a task token for their resource.

An event for a resource nobody waits for, or about a state that is not an end, changes
nothing; the resource is looked at before the wait ends, so a duplicate or late event is
harmless. A record that fails (AWS unavailable) is retried by SQS, then dead-lettered; the
wait's fallback poll still ends it. See mlpublish.waits.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, client
from mlpublish.waits import WaitSettings, finish, look, resources_named, unfinished, waiting

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
config = WaitSettings.model_validate(os.environ)


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    event = json.loads(record.body)
    if unfinished(event):
        return
    dynamodb = client("dynamodb", config.region)
    for resource in resources_named(event):
        found = waiting(dynamodb, config.table, resource)
        if found is None:
            continue
        token, watch = found
        outcome = look(watch, client)
        if outcome is None:
            logger.info("not ended yet", extra={"resource": resource, "detail_type": event.get("detail-type")})
            return
        if finish(client("stepfunctions", config.region), dynamodb, config.table, resource, token, outcome):
            metrics.add_metric(name="WaitsEndedByEvents", unit=MetricUnit.Count, value=1)
            logger.info("wait ended", extra={"resource": resource, "error": outcome.error})
        return


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)

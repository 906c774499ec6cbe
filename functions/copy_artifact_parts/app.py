"""CopyArtifactParts: copy one range of a large object's parts server-side, as far as this invocation's time allows."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, client
from mlpublish.objects import copy_part_range
from mlpublish.state import PartRangeCopy

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = PartRangeCopy.model_validate(event)
    result = copy_part_range(
        client("s3", request.source_region),
        client("s3", request.publishing_region),
        request,
        context.get_remaining_time_in_millis,
    )
    copied = result.parts_copied - request.parts_copied
    logger.info(
        "part range",
        extra={
            "uri": request.object.destination_uri,
            "range": request.range_index,
            "copied": copied,
            "present": result.parts_present - request.parts_present,
            "next_part": result.next_part,
            "done": result.done,
        },
    )
    # Server-side: parts S3 copied into the publishing region (whole parts of part_size; the
    # object's last part may be smaller, so this is an upper bound by less than one part).
    metrics.add_metric(name="ObjectPartsCopied", unit=MetricUnit.Count, value=copied)
    return result.model_dump(mode="json")

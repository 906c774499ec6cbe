"""CopyBlob: stream one blob into the publishing region's registry, as much as fits in this invocation."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES
from mlpublish.images.copy import copy_blob
from mlpublish.images.registry import EcrRegistry
from mlpublish.state import CopyBlobInput

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = CopyBlobInput.model_validate(event)
    target = request.target
    started_at = request.progress.offset if request.progress else 0
    result = copy_blob(
        target,
        request.blob,
        EcrRegistry(target.source.region),
        EcrRegistry(target.destination_region),
        progress=request.progress,
        remaining_ms=context.get_remaining_time_in_millis,
    )
    logger.info(
        "blob",
        extra={
            "digest": result.digest,
            "bytes": result.bytes_copied,
            "skipped": result.skipped,
            "done": result.done,
            "from_byte": started_at,
        },
    )
    # Bytes that crossed into the publishing region in this invocation; a blob already there counts 0.
    sent = 0 if result.skipped else max(0, result.bytes_copied - started_at)
    metrics.add_metric(name="ImageBytesCopied", unit=MetricUnit.Bytes, value=sent)
    return result.model_dump(mode="json")

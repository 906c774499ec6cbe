"""CopyBlob: copy one batch of the plan's blobs into the publishing region's registry, as much as
fits in this invocation."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES
from mlpublish.images.copy import copy_batch
from mlpublish.images.registry import EcrRegistry
from mlpublish.state import CopyBatchInput

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = CopyBatchInput.model_validate(event)
    target = request.target
    before = request.progress
    result = copy_batch(
        target,
        request.published_digest,
        request.batch,
        EcrRegistry(target.source.region),
        EcrRegistry(target.destination_region),
        progress=before,
        remaining_ms=context.get_remaining_time_in_millis,
    )
    after = result.progress
    # Bytes that crossed into the publishing region in this invocation: whole blobs finished,
    # plus the acknowledged bytes of a blob left unfinished, less what earlier calls had sent.
    sent = (after.bytes_copied if after else result.bytes_copied) + (
        after.upload.offset if after and after.upload else 0
    )
    sent -= (before.bytes_copied + (before.upload.offset if before.upload else 0)) if before else 0
    logger.info(
        "batch",
        extra={
            "container": target.container,
            "batch": request.batch,
            "done": result.done,
            "from_blob": before.blob if before else 0,
            "to_blob": after.blob if after else None,
            "bytes_sent": sent,
        },
    )
    metrics.add_metric(name="ImageBytesCopied", unit=MetricUnit.Bytes, value=max(0, sent))
    return result.model_dump(mode="json", exclude_none=True)

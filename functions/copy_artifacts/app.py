"""CopyArtifacts: server-side copies of small objects (model data, validation input) into the publishing region."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, client
from mlpublish.objects import copy_objects
from mlpublish.state import CopyArtifactsInput

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> list[dict[str, Any]]:
    request = CopyArtifactsInput.model_validate(event)
    copied = copy_objects(
        client("s3", request.source_region),
        client("s3", request.publishing_region),
        request.objects,
        region=request.publishing_region,
        buckets_ready=request.buckets_ready,
    )
    logger.info("artifacts in place", extra={"copied": sum(c.copied for c in copied), "total": len(copied)})
    # Server-side copies: the bytes S3 copied into the publishing region (objects already there count 0).
    metrics.add_metric(name="ObjectBytesCopied", unit=MetricUnit.Bytes, value=sum(c.size for c in copied if c.copied))
    return [item.model_dump(mode="json") for item in copied]

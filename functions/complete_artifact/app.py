"""CompleteArtifact: complete a large object's multipart copy and verify it."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, client
from mlpublish.objects import complete_copy
from mlpublish.state import CompleteArtifactInput

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> list[dict[str, Any]]:
    request = CompleteArtifactInput.model_validate(event)
    copied = complete_copy(client("s3", request.publishing_region), request.object, request.upload)
    logger.info("artifact in place", extra={"uri": copied.uri, "size": copied.size, "parts": request.upload.parts})
    metrics.add_metric(name="ObjectBytesCopied", unit=MetricUnit.Bytes, value=copied.size)
    # A list, as CopyArtifacts returns: the state machine flattens the copies' results into one.
    return [copied.model_dump(mode="json")]

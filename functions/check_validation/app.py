"""CheckValidation: one look at the model package's (or algorithm's) validation; raises with every FailureReason."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, client
from mlpublish.sagemaker import check_validation
from mlpublish.state import CheckValidationInput

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = CheckValidationInput.model_validate(event)
    progress = check_validation(
        client("sagemaker", request.publishing_region),
        request.arn,
        attempt=request.attempt,
        elapsed_seconds=request.elapsed_seconds,
        timeout_minutes=request.timeout_minutes,
    )
    logger.info("validation", extra={"status": progress.status, "next_wait": progress.wait_seconds})
    return progress.model_dump(mode="json")

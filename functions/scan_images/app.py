"""ScanImages: start or read the ECR scans of the published images; block on Critical/High."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, client
from mlpublish.scanning import scan_images
from mlpublish.state import ScanImagesInput

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ScanImagesInput.model_validate(event)
    progress = scan_images(client("ecr", request.publishing_region), request.images, attempt=request.attempt)
    logger.info("image scans", extra={"complete": progress.complete, "attempt": progress.attempt})
    return progress.model_dump(mode="json")

"""ListVersion: add the validated model package (or algorithm) to the seller's AWS Marketplace
product (Catalog API, us-east-1), and follow the change set until it ends."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, client
from mlpublish.listing import CATALOG_REGION, list_version
from mlpublish.records import load
from mlpublish.state import ListVersionInput

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ListVersionInput.model_validate(event)
    release = load(client("s3"), request.release)
    progress = list_version(
        client("marketplace-catalog", CATALOG_REGION), release, request.resource_arn, request.listing, request.execution
    )
    logger.info("listing", extra={"status": progress.status, "change_set_id": progress.change_set_id})
    return progress.model_dump(mode="json")

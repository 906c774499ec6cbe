"""PlanImage: pick the platform, plan the Docker v2 manifest, name the batches of blobs still to copy."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, client
from mlpublish.images.copy import copy_target, plan_image
from mlpublish.images.registry import EcrRegistry
from mlpublish.records import image_of, load
from mlpublish.state import PlanImageInput

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = PlanImageInput.model_validate(event)
    release = load(client("s3"), request.release)
    image = image_of(release, request.container)
    target = copy_target(image, release.publishing_region)
    plan = plan_image(target, EcrRegistry(image.source.region), EcrRegistry(release.publishing_region))
    logger.info(
        "image planned",
        extra={
            "container": image.container,
            "conversion": plan.conversion,
            "blobs": plan.blobs,
            "to_copy": plan.blobs_to_copy,
            "bytes_to_copy": plan.bytes_to_copy,
            "batches": len(plan.batches),
        },
    )
    return plan.model_dump(mode="json")

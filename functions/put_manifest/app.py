"""PutManifest: publish the planned single-platform Docker v2 manifest once all blobs are there."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES
from mlpublish.images.copy import put_manifest
from mlpublish.images.registry import EcrRegistry
from mlpublish.state import PutManifestInput

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = PutManifestInput.model_validate(event)
    target = request.plan.target
    image = put_manifest(
        target,
        request.plan.published_digest,
        EcrRegistry(target.source.region),
        EcrRegistry(target.destination_region),
        request.batches,
    )
    logger.info("image published", extra={"image": image.image_uri, "source_digest": image.source_digest})
    return image.compact()

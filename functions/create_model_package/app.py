"""CreateModelPackage: the certified model package (or algorithm) with its validation profile
(idempotent); given algorithm_arn, the model package an algorithm release builds on it."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, client
from mlpublish.records import load
from mlpublish.sagemaker import create_model_package, package_release
from mlpublish.state import CreateModelPackageInput

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = CreateModelPackageInput.model_validate(event)
    release = load(client("s3"), request.release)
    if request.algorithm_arn is not None:  # the package built on the algorithm this release published
        release = package_release(release, request.algorithm_arn)
    result = create_model_package(client("sagemaker", release.publishing_region), release, request.images)
    logger.info("created or reused", extra={"arn": result.arn, "action": result.action})
    return result.model_dump(mode="json")

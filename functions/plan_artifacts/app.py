"""PlanArtifacts: ready the publishing buckets and plan each object's copy (whole, or in part ranges)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, client
from mlpublish.objects import plan_artifacts
from mlpublish.records import load
from mlpublish.state import PlanArtifactsInput

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = PlanArtifactsInput.model_validate(event)
    release = load(client("s3"), request.release)
    region = release.publishing_region
    plan = plan_artifacts(client("s3", region), release.objects, region=region)
    uploads = [copy.upload for copy in plan.copies if copy.upload is not None]
    logger.info(
        "artifacts planned",
        extra={
            "whole": sum(len(copy.objects) for copy in plan.copies),
            "in_parts": len(uploads),
            "parts": sum(upload.parts for upload in uploads),
            "parts_done": sum(upload.parts_done for upload in uploads),
        },
    )
    return plan.model_dump(mode="json")

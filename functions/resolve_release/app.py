"""ResolveRelease: load the release, pin every source, check the Marketplace rules, and keep the
resolved release in the pipeline bucket (the state carries its summary, mlpublish/records.py)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, account_id, client
from mlpublish.images.osrecords import OsRecords
from mlpublish.images.registry import EcrRegistry
from mlpublish.records import store
from mlpublish.resolve import parse_start, resolve_release
from mlpublish.settings import settings

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
config = settings()


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    start = parse_start(event)
    release = resolve_release(
        start,
        s3=client("s3", config.region),
        ecr_for=lambda region: client("ecr", region),
        registry_for=EcrRegistry,
        account_id=account_id(config.region),
        source_region=config.region,
        publishing=config.publishing,
        validation_role_arn=config.validation_role_arn,
        os_records=OsRecords(client("s3", config.region), config.pipeline_bucket),
        sagemaker_for=lambda region: client("sagemaker", region),
    )
    summary = store(client("s3", config.region), config.pipeline_bucket, release)
    logger.info(
        "release resolved",
        extra={"resource_name": release.resource_name, "fingerprint": release.fingerprint, "record": summary.record},
    )
    return summary.model_dump(mode="json")

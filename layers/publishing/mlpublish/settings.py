"""Environment configuration, validated once at cold start."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlpublish.errors import PipelineError


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    region: str = Field(alias="AWS_REGION", description="The stack's (source) region")
    publishing_region: str = Field(alias="PUBLISHING_REGION")
    pipeline_bucket: str = Field(alias="PIPELINE_BUCKET", description="Holds release files")
    publishing_bucket: str = Field(alias="PUBLISHING_BUCKET", description="Bucket in the publishing region")
    validation_role_arn: str = Field(alias="VALIDATION_ROLE_ARN")
    release_prefix: str = Field(default="releases/", alias="RELEASE_PREFIX")
    state_machine_arn: str = Field(default="", alias="STATE_MACHINE_ARN")
    event_source: str = Field(default="mlpublish", alias="EVENT_SOURCE")


def settings() -> Settings:
    """Read and validate the environment. Handlers call it once, at cold start, and keep the
    result: a misconfigured stack fails loudly on the first invocation."""
    env = dict(os.environ)
    env.setdefault("AWS_REGION", env.get("AWS_DEFAULT_REGION", ""))
    try:
        return Settings.model_validate(env)
    except ValidationError as exc:
        missing = ", ".join(str(error["loc"][0]) for error in exc.errors())
        raise PipelineError(
            f"Lambda environment is incomplete ({missing}); redeploy the stack with template.yaml"
        ) from exc

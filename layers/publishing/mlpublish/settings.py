"""Environment configuration, validated once at cold start."""

from __future__ import annotations

import os
from typing import Annotated, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from mlpublish.errors import PipelineError


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class PublishingConfig(BaseModel):
    """Where the stack lets releases publish: its PublishingRegion, AllowedPublishingRegions
    and PublishingBucketName parameters."""

    model_config = ConfigDict(frozen=True)

    default_region: str = Field(description="For releases that name no publishing_region")
    allowed_regions: tuple[str, ...] = Field(min_length=1)
    bucket_name: str = Field(
        default="",
        description="A bucket the seller made in default_region; empty: one bucket per region, made on first use",
    )


class Settings(BaseModel):
    """What every function that reads the stack's configuration needs."""

    model_config = ConfigDict(frozen=True)

    region: str = Field(alias="AWS_REGION", description="The stack's (source) region")
    publishing_region: str = Field(alias="PUBLISHING_REGION", description="Default publishing region")
    allowed_publishing_regions: Annotated[tuple[str, ...], BeforeValidator(_comma_separated)] = Field(
        alias="ALLOWED_PUBLISHING_REGIONS", min_length=1, description="Comma-separated in the environment"
    )
    publishing_bucket_name: str = Field(
        alias="PUBLISHING_BUCKET_NAME", description="The PublishingBucketName parameter; may be empty"
    )
    pipeline_bucket: str = Field(alias="PIPELINE_BUCKET", description="Holds release files")
    validation_role_arn: str = Field(alias="VALIDATION_ROLE_ARN")
    release_prefix: str = Field(default="releases/", alias="RELEASE_PREFIX")

    @property
    def publishing(self) -> PublishingConfig:
        return PublishingConfig(
            default_region=self.publishing_region,
            allowed_regions=self.allowed_publishing_regions,
            bucket_name=self.publishing_bucket_name,
        )


class TriggerSettings(Settings):
    """The trigger also starts executions, so it needs the state machine (set only on it)."""

    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN", pattern=r"^arn:aws[a-z-]*:states:")


class AnnouncementSettings(Settings):
    """The announcement queue's function publishes where the state machine does (set only on it)."""

    notification_topic_arn: str = Field(alias="NOTIFICATION_TOPIC_ARN", pattern=r"^arn:aws[a-z-]*:sns:")
    event_bus_name: str = Field(alias="EVENT_BUS_NAME", min_length=1)
    event_source: str = Field(alias="EVENT_SOURCE", min_length=1)
    announcement_queue_url: str = Field(alias="ANNOUNCEMENT_QUEUE_URL", min_length=1)


SettingsT = TypeVar("SettingsT", bound=Settings)


def settings() -> Settings:
    """Read and validate the environment. Handlers call it once, at cold start, and keep the
    result: a misconfigured stack fails loudly on the first invocation."""
    return _load(Settings)


def trigger_settings() -> TriggerSettings:
    """``settings()`` for the trigger, which fails at cold start without STATE_MACHINE_ARN."""
    return _load(TriggerSettings)


def announcement_settings() -> AnnouncementSettings:
    """``settings()`` for the announcement queue's function: its topic, bus, source and queue."""
    return _load(AnnouncementSettings)


def _load(model: type[SettingsT]) -> SettingsT:
    env = dict(os.environ)
    env.setdefault("AWS_REGION", env.get("AWS_DEFAULT_REGION", ""))
    try:
        return model.model_validate(env)
    except ValidationError as exc:
        missing = ", ".join(str(error["loc"][0]) for error in exc.errors())
        raise PipelineError(
            f"Lambda environment is incomplete ({missing}); redeploy the stack with template.yaml"
        ) from exc

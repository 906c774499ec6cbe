"""Environment configuration, validated once at cold start."""

from __future__ import annotations

import fnmatch
import os
from typing import Annotated, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from mlpublish.errors import PipelineError


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class AllowedSources(BaseModel):
    """What releases may read: the stack's pipeline bucket and its SourceBuckets, WatchedBuckets
    and SourceRepositories parameters. Everything else is refused before it is read."""

    model_config = ConfigDict(frozen=True)

    pipeline_bucket: str
    buckets: tuple[str, ...] = ()
    watched_buckets: tuple[str, ...] = ()
    repositories: tuple[str, ...] = Field(
        default=(), description="ECR repository ARN patterns (IAM wildcards); empty: the stack account's"
    )

    @property
    def bucket_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.pipeline_bucket, *self.buckets, *self.watched_buckets)))

    def allows_bucket(self, bucket: str) -> bool:
        return bucket in self.bucket_names

    def allows_repository(self, repository_arn: str, *, account_id: str) -> bool:
        """As IAM matches the SourceRepositories ARNs; without any, the stack account's repositories."""
        if not self.repositories:
            return repository_arn.split(":")[4] == account_id
        return any(fnmatch.fnmatchcase(repository_arn, pattern) for pattern in self.repositories)


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
    sources: AllowedSources | None = Field(
        default=None,
        description="What releases may read; None: any bucket and the stack account's repositories "
        "(tools and tests only: the deployed stack always sets it)",
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
    source_buckets: Annotated[tuple[str, ...], BeforeValidator(_comma_separated)] = Field(
        default=(), alias="SOURCE_BUCKETS", description="The SourceBuckets parameter"
    )
    watched_buckets: Annotated[tuple[str, ...], BeforeValidator(_comma_separated)] = Field(
        default=(), alias="WATCHED_BUCKETS", description="The WatchedBuckets parameter"
    )
    source_repositories: Annotated[tuple[str, ...], BeforeValidator(_comma_separated)] = Field(
        default=(), alias="SOURCE_REPOSITORIES", description="The SourceRepositories parameter"
    )

    @property
    def sources(self) -> AllowedSources:
        return AllowedSources(
            pipeline_bucket=self.pipeline_bucket,
            buckets=self.source_buckets,
            watched_buckets=self.watched_buckets,
            repositories=self.source_repositories,
        )

    @property
    def publishing(self) -> PublishingConfig:
        return PublishingConfig(
            default_region=self.publishing_region,
            allowed_regions=self.allowed_publishing_regions,
            bucket_name=self.publishing_bucket_name,
            sources=self.sources,
        )


class TriggerSettings(Settings):
    """The trigger also starts executions, so it needs the state machine (set only on it), and
    says what it started or what a release waits for on the stack's bus."""

    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN", pattern=r"^arn:aws[a-z-]*:states:")
    event_bus_name: str = Field(alias="EVENT_BUS_NAME", min_length=1)
    event_source: str = Field(alias="EVENT_SOURCE", min_length=1)


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

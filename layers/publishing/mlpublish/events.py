"""What the pipeline puts on its event bus: one detail model per detail-type, in one registry.

Every event the pipeline sends is built from its model here (the trigger's progress events,
BuildAnnouncement's ready and failed events) or, where the state machine builds it itself (the
stage changes, UnformattedFailure), has a model the ASL's fields are tested against
(tests/unit/test_schemas.py). schemas/events/ is generated from ``DETAIL_TYPES`` by
``python -m tools.schemas``: the published JSON Schemas are what is sent. A new detail-type is
its model and one line in ``DETAIL_TYPES``.

Every field is always sent (``null`` when not known), so the schemas mark every field required,
but for the resource a release made: ``model_package_*`` for a model package, ``algorithm_*`` for
an algorithm, sent only when there is one (``only_when_set``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlpublish.release import ProductKind
from mlpublish.state import ImageScanResult, StatusItem, Trigger

READY = "Release Ready For Listing"
FAILED = "Release Failed"
RELEASE_STARTED = "Release Started"
RELEASE_WAITING = "Release Waiting"
STAGE_CHANGED = "Release Stage Changed"

StageSeconds = Annotated[
    dict[str, float],
    Field(
        description="Seconds each stage took, by stage name; a stage whose start or end was not recorded is left out"
    ),
]


def _schema_of_sent_fields(schema: dict[str, Any], model: type[Any]) -> None:
    model.adjust_schema(schema)


class _Detail(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        json_schema_serialization_defaults_required=True,
        json_schema_extra=_schema_of_sent_fields,
    )

    # Fields sent only when they have a value; every other field is always sent.
    only_when_set: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        """The detail as sent: JSON types, field aliases, unset ``only_when_set`` fields left out."""
        unset = {name for name in self.only_when_set if getattr(self, name) is None}
        return self.model_dump(mode="json", by_alias=True, exclude=unset)

    @classmethod
    def adjust_schema(cls, schema: dict[str, Any]) -> None:
        """``only_when_set`` fields are optional and, when sent, never null."""
        schema["required"] = [name for name in schema.get("required", []) if name not in cls.only_when_set]
        for name in cls.only_when_set:
            field = schema["properties"][name]
            field.pop("default", None)
            [sent] = [branch for branch in field.pop("anyOf") if branch != {"type": "null"}]
            field.update(sent)


# --- the trigger's progress ------------------------------------------------------------------


class TriggerCause(_Detail):
    """The event the trigger acted on (an ECR push or an S3 upload)."""

    detail_type: str = Field(alias="detail-type", description="e.g. ECR Image Action, Object Created")
    account: str
    region: str


class ReleaseStartedDetail(_Detail):
    """The trigger began an execution for a release."""

    release: str = Field(description="s3:// URI of the release file")
    execution: str = Field(description="The execution's ARN")
    execution_name: str
    refused: str | None = Field(
        default=None,
        description="Why the stack refuses the release's sources (the execution fails in preflight and "
        "announces it); null when they are allowed",
    )
    trigger: TriggerCause


class ReleaseWaitingDetail(_Detail):
    """A release cannot start yet: a source it names is not there."""

    release: str = Field(description="s3:// URI of the release file")
    missing: str = Field(description="Each source not there yet; the release starts by itself when it arrives")
    trigger: TriggerCause


class ReleaseStageChangedDetail(_Detail):
    """A release entered a stage (raised by the state machine, best effort)."""

    stage: Literal["CopyToPublishingRegion", "ScanImages", "AwaitValidation", "ListVersion"]
    product: str
    version: str
    release_uri: str | None = Field(description="s3:// URI of the release file; null for an inline release")
    execution: str = Field(description="The execution's ARN")
    entered: str = Field(description="When the release entered the stage (ISO 8601, UTC)")


# --- the announcements: how a release ended ----------------------------------------------------


class AnnouncedImage(_Detail):
    container: str
    image_uri: str = Field(description="REPO_URI@DIGEST in the publishing region")
    digest: str
    source_digest: str = Field(description="The digest the release was pinned to (differs when converted)")
    media_type: str
    conversion: str = Field(description="none, or oci-to-docker")
    os: str | None = Field(description="The OS its os-release names; null if not detected")
    os_bytes_read: int | None = Field(description="Layer bytes read to tell the OS (0: remembered); null: not read")
    os_uncertain: str | None = Field(description="Why the OS is not certain (ECR's scan decided); null when certain")
    os_remembered: bool = Field(description="The OS is an earlier read's, recorded for this digest")


class AnnouncedArtifact(_Detail):
    role: str = Field(description="model_data, validation_input, training_input or package_model_data")
    container: str | None
    uri: str = Field(description="s3:// URI in the publishing region")


class AnnouncedValidation(_Detail):
    status: str
    validation_statuses: list[StatusItem]
    image_scan_statuses: list[StatusItem]


ResourceAction = Literal["created", "reused", "recreated"]
MODEL_PACKAGE_FIELDS = ("model_package_arn", "model_package_name", "model_package_action")
ALGORITHM_FIELDS = ("algorithm_arn", "algorithm_name", "algorithm_action")


class AnnouncedListing(_Detail):
    """The version added to the seller's Marketplace product: added, not yet public (AWS
    Marketplace reviews and publishes the version)."""

    product_id: str
    version_title: str
    change_set_id: str | None = Field(description="Null when the product had this version already")
    change_set_arn: str | None
    already_listed: bool


class ReleaseReadyDetail(_Detail):
    """A release is validated and ready to list on AWS Marketplace."""

    only_when_set = (*MODEL_PACKAGE_FIELDS, *ALGORITHM_FIELDS, "source_algorithm_arn", "listing")

    product: str
    version: str
    kind: ProductKind
    publishing_region: str
    model_package_arn: str | None = Field(
        default=None, description="For a model package, and an algorithm release's package built on it"
    )
    model_package_name: str | None = None
    model_package_action: ResourceAction | None = None
    algorithm_arn: str | None = Field(default=None, description="For an algorithm")
    algorithm_name: str | None = None
    algorithm_action: ResourceAction | None = None
    source_algorithm_arn: str | None = Field(
        default=None, description="For a model package built from an algorithm: the algorithm it is built on"
    )
    listed: bool = Field(default=False, description="The version was added to the Marketplace product (listing)")
    listing: AnnouncedListing | None = Field(default=None, description="With a listing: the change set that added it")
    fingerprint: str = Field(description="Hash of the spec and every pinned digest and ETag")
    images: list[AnnouncedImage]
    artifacts: list[AnnouncedArtifact]
    validation: AnnouncedValidation
    image_scans: list[ImageScanResult]
    release_uri: str | None = Field(description="s3:// URI of the release file; null for an inline release")
    trigger: Trigger
    execution: str = Field(description="The execution's ARN")
    stage_seconds: StageSeconds

    @classmethod
    def adjust_schema(cls, schema: dict[str, Any]) -> None:
        super().adjust_schema(schema)
        # An algorithm names itself, and the model package built on it when its release has a
        # package section; a model package names itself only.
        schema["if"] = {"properties": {"kind": {"const": "algorithm"}}}
        schema["then"] = {"required": list(ALGORITHM_FIELDS)}
        schema["else"] = {
            "required": list(MODEL_PACKAGE_FIELDS),
            "not": {"anyOf": [{"required": [field]} for field in ALGORITHM_FIELDS]},
        }


class ReleaseFailedDetail(_Detail):
    """A release failed: the stage, the reason and every listed reason (e.g. each FailureReason)."""

    only_when_set = ("model_package_arn", "algorithm_arn")

    product: str | None = Field(description="null when the release could not be read")
    version: str | None
    stage: str
    error: str = Field(description="The error's name, e.g. PreflightFailed, ValidationFailed")
    reason: str
    reasons: list[str]
    release_uri: str | None
    trigger: Trigger | None
    execution: str
    stage_seconds: StageSeconds
    model_package_arn: str | None = Field(default=None, description="The model package, when one was created")
    algorithm_arn: str | None = Field(default=None, description="The algorithm, when one was created")
    unformatted: bool = Field(
        default=False,
        description="true when the announcement itself could not be built: reason is then the raw error as JSON",
    )


DETAIL_TYPES: dict[str, type[_Detail]] = {
    RELEASE_STARTED: ReleaseStartedDetail,
    RELEASE_WAITING: ReleaseWaitingDetail,
    STAGE_CHANGED: ReleaseStageChangedDetail,
    READY: ReleaseReadyDetail,
    FAILED: ReleaseFailedDetail,
}

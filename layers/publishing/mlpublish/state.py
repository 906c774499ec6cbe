"""Models of the state machine's payloads.

The state carries references (URIs, digests, ARNs, sizes), never manifests or blob bytes,
so every payload stays far below Step Functions' 256 KiB limit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

from mlpublish.release import ImageRef, ReleaseSpec

DOCKER_V2_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
#: How long a waiting task listens for the event that ends its wait before it polls once (its
#: TimeoutSecondsPath reads ``wait_seconds``, which the polling functions set to this).
WAIT_FALLBACK_SECONDS = 1800

TriggerKind = Literal["ecr-push", "s3-upload", "release-upload", "manual"]


class _State(BaseModel):
    # Validators are built on a model's first use: each handler builds the few it parses and
    # returns, not every model of the pipeline at import (defer_build is inherited).
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class Trigger(_State):
    kind: TriggerKind
    ref: str = Field(default="", description="What fired: IMAGE@DIGEST, s3://BUCKET/KEY or a note")


class PinSet(_State):
    """Digest per container name; ETag and size per s3:// URI."""

    images: dict[str, str] = {}
    etags: dict[str, str] = {}
    sizes: dict[str, int] = {}


class StartInput(_State):
    """The execution input. A manual start names a release file or inlines the spec.

    ``pins`` are set by the trigger (which pins to compute the execution name); a manual
    start may omit them and ResolveRelease pins what is missing.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    release_uri: str | None = None
    release: dict[str, Any] | None = None
    trigger: Trigger = Trigger(kind="manual")
    pins: PinSet = PinSet()

    @model_validator(mode="after")
    def _one_source(self) -> StartInput:
        if (self.release_uri is None) == (self.release is None):
            raise ValueError("give exactly one of release_uri (s3://BUCKET/KEY) or release")
        return self


class PinnedImage(_State):
    container: str
    source: ImageRef = Field(description="Source image with the digest the release is pinned to")
    platform: str
    destination_repository: str
    os: str | None = Field(
        default=None, description="The OS its os-release names, e.g. Debian GNU/Linux 12 (bookworm); None if not known"
    )
    os_bytes_read: int | None = Field(
        default=None, description="Layer bytes downloaded to tell the OS (0: remembered for its digest); None: not read"
    )
    os_uncertain: str | None = Field(
        default=None, description="Why the OS is not certain (read budget or time ran out); ECR's scan decides"
    )
    os_remembered: bool = Field(default=False, description="The OS is an earlier read's, recorded for this digest")


class PinnedObject(_State):
    role: Literal["model_data", "validation_input", "training_input", "package_model_data"]
    container: str | None = None
    source_bucket: str
    source_key: str
    etag: str
    size: int
    destination_bucket: str
    destination_key: str

    @property
    def source_uri(self) -> str:
        return f"s3://{self.source_bucket}/{self.source_key}"

    @property
    def destination_uri(self) -> str:
        return f"s3://{self.destination_bucket}/{self.destination_key}"


class Release(_State):
    """A release with every source pinned: the output of ResolveRelease."""

    spec: ReleaseSpec
    release_uri: str | None
    trigger: Trigger
    fingerprint: str = Field(description="Hash of the spec and every pinned digest and ETag")
    resource_name: str = Field(description="Model package / algorithm name, deterministic")
    account_id: str
    source_region: str
    publishing_region: str = Field(description="The spec's publishing_region, else the stack's PublishingRegion")
    publishing_bucket: str = Field(
        description="In publishing_region: PublishingBucketName, else mlpublish-ACCOUNT-REGION of that region"
    )
    validation_role_arn: str
    validation_output_uri: str
    images: list[PinnedImage]
    objects: list[PinnedObject]

    def object_for(self, role: str, container: str | None = None) -> PinnedObject | None:
        for item in self.objects:
            if item.role == role and item.container == container:
                return item
        return None


class ReleaseSummary(_State):
    """The release as the execution's state carries it: what the state machine's paths and
    choices read, and where ResolveRelease kept the whole ``Release`` (mlpublish/records.py), so
    the state stays small whatever the number of containers and objects."""

    record: str = Field(description="s3://PIPELINE_BUCKET/mlpublish/releases/v1/<sha256 of its bytes>.json")
    release_uri: str | None
    product: str
    version: str
    kind: str
    publishing_region: str
    source_region: str
    timeout_minutes: int
    package: bool = Field(description="An algorithm release with a package section")
    listing: bool = Field(description="The release has a listing section")
    containers: list[str] = Field(description="Each pinned image's container, in the release's order")


class BlobRef(_State):
    digest: str
    size: int
    media_type: str


class CopyTarget(_State):
    """Where an image comes from and goes to; shared by the plan, blob and manifest steps."""

    container: str
    source: ImageRef
    platform: str
    destination_region: str
    destination_repository: str


class ImagePlan(_State):
    """What PlanImage decided for one image: counts and batch numbers, never a list of blobs,
    so the state stays the same size whatever the image's layer count. The blobs are the
    published manifest's (config, then layers), which every step derives again from the pinned
    source; ``batches_of`` groups them the same way each time (mlpublish/images/copy.py)."""

    target: CopyTarget
    source_media_type: str
    selected_digest: str = Field(description="Digest of the single-platform source manifest")
    published_digest: str
    published_media_type: str = DOCKER_V2_MANIFEST
    conversion: Literal["none", "oci-to-docker"]
    blobs: int = Field(description="Blobs of the published manifest: the config and each layer")
    blobs_to_copy: int = Field(description="Blobs the destination lacked when planned")
    bytes_to_copy: int
    batches: list[int] = Field(description="The batches holding a blob to copy; CopyBlobs' Map runs one item each")


class UploadProgress(_State):
    """Where an unfinished blob upload stands: enough for the next invocation to go on."""

    location: str = Field(description="The registry's upload URL, as it last named it")
    offset: int = Field(ge=0, description="Bytes the registry acknowledged")


class CopyBlobInput(_State):
    target: CopyTarget
    blob: BlobRef
    progress: UploadProgress | None = Field(default=None, description="Set when an earlier invocation ran out of time")


class BlobCopied(_State):
    digest: str
    bytes_copied: int
    skipped: bool
    done: bool = Field(default=True, description="False: call CopyBlob again with ``progress``")
    progress: UploadProgress | None = None


class BatchProgress(_State):
    """Where an unfinished batch stands: the blob it is at, its upload, and the counts so far."""

    blob: int = Field(ge=0, description="Index in the batch of the blob to go on with")
    upload: UploadProgress | None = Field(default=None, description="That blob's unfinished upload, if one started")
    blobs_copied: int = 0
    blobs_skipped: int = 0
    bytes_copied: int = 0


class CopyBatchInput(_State):
    target: CopyTarget
    published_digest: str
    batch: int = Field(ge=0, description="Which of the plan's batches (batches_of) to copy")
    progress: BatchProgress | None = Field(default=None, description="Set when an earlier invocation ran out of time")


class BatchCopied(_State):
    batch: int
    done: bool = Field(default=True, description="False: call CopyBlob again with ``progress``")
    progress: BatchProgress | None = None
    blobs_copied: int = Field(default=0, description="Blobs this release uploaded")
    blobs_skipped: int = Field(default=0, description="Blobs already there (copied by an earlier or concurrent run)")
    bytes_copied: int = 0


class PublishedImage(_State):
    """An image put into the publishing region. The state carries its ``compact`` form (what
    cannot be derived again); ``repository`` and ``digest`` are read from ``image_uri``, and the
    pinned digest is in the release record."""

    container: str
    image_uri: str = Field(description="REPO_URI@DIGEST in the publishing region")
    conversion: str = "none"
    blobs_copied: int
    blobs_skipped: int
    bytes_copied: int
    repository: str = Field(default="", description="From image_uri when not given")
    digest: str = Field(default="", description="From image_uri when not given")
    media_type: str = DOCKER_V2_MANIFEST
    source_digest: str | None = Field(default=None, description="The digest the release was pinned to")
    selected_digest: str | None = Field(
        default=None, description="The single-platform source manifest, where it is not the pinned one (an index)"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_uri(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("image_uri"), str):
            name, _, digest = data["image_uri"].partition("@")
            data = {"repository": name.partition("/")[2], "digest": digest, **data}
        return data

    def compact(self) -> dict[str, Any]:
        """What the execution's state keeps of it: about 170 bytes, whatever else is known."""
        kept = {"container", "image_uri", "conversion", "blobs_copied", "blobs_skipped", "bytes_copied"}
        if self.selected_digest != self.source_digest:
            kept.add("selected_digest")
        return self.model_dump(mode="json", include=kept, exclude_defaults=True)


class PartUpload(_State):
    """A multipart copy of one object, as every step of it needs it: counts, never a list of
    parts, so the state stays the same size whatever the object's size (mlpublish/objects.py)."""

    upload_id: str
    part_size: int = Field(description="Bytes per part; the last part has the rest")
    parts: int = Field(description="Parts of the object, numbered 1..parts")
    parts_per_range: int = Field(description="Parts per range: range R holds parts R*parts_per_range+1 onwards")
    ranges: int
    last_range: int = Field(description="ranges - 1: the state machine's States.ArrayRange(0, last_range, 1)")
    parts_done: int = Field(default=0, description="Parts the upload held when planned (a resumed copy)")


class ArtifactCopy(_State):
    """One iteration of the artifact copy: small objects copied whole (CopyObject) in one
    invocation, or one large object copied in part ranges (``upload``)."""

    objects: list[PinnedObject] = []
    object: PinnedObject | None = None
    upload: PartUpload | None = None


class ArtifactPlan(_State):
    copies: list[ArtifactCopy]


class PartRangeCopy(_State):
    """A range of an object's parts being copied: CopyArtifactParts' input and output. The state
    machine invokes it again with its own output until ``done``."""

    object: PinnedObject
    upload: PartUpload
    range_index: int
    source_region: str
    publishing_region: str
    next_part: int = Field(default=0, description="The first part not yet done (0: the range's first)")
    done: bool = False
    parts_copied: int = Field(default=0, description="Parts this range copied (UploadPartCopy) so far")
    parts_present: int = Field(default=0, description="Parts found done already (an earlier attempt's)")
    invocations: int = 0


class CompleteArtifactInput(_State):
    object: PinnedObject
    upload: PartUpload
    publishing_region: str


class CopiedObject(_State):
    role: str
    container: str | None
    uri: str
    etag: str
    size: int
    copied: bool


class ResourceResult(_State):
    arn: str
    name: str
    action: Literal["created", "reused", "recreated"]


class StatusItem(_State):
    name: str
    status: str
    failure_reason: str | None = None


class ValidationProgress(_State):
    status: str
    attempt: int
    wait_seconds: int = Field(description="How long the next wait listens for the event before it polls")
    elapsed_seconds: int = Field(description="Seconds of validation waited for, the next wait included")
    validation_statuses: list[StatusItem] = []
    image_scan_statuses: list[StatusItem] = []


class ListingProgress(_State):
    """Where adding the version to the Marketplace product stands (Catalog API change set)."""

    status: str = Field(description="NONE before a change set; PREPARING|APPLYING|SUCCEEDED|FAILED|CANCELLED")
    attempt: int = 0
    wait_seconds: int = 0
    product_id: str = ""
    version_title: str = ""
    change_set_id: str | None = None
    change_set_arn: str | None = None
    already_listed: bool = Field(default=False, description="The product had a version of this resource already")


class ListVersionInput(_State):
    release: ReleaseSummary
    resource_arn: str
    listing: ListingProgress
    execution: str


class ImageScanResult(_State):
    repository: str
    digest: str
    status: str
    severity_counts: dict[str, int] = {}


class ScanStatus(_State):
    """An image's scan as the state keeps it: in the order of the published images, which name it."""

    status: str
    severity_counts: dict[str, int] = {}


class ScanProgress(_State):
    complete: bool
    attempt: int
    wait_seconds: int
    images: list[ScanStatus] = Field(description="One per published image, in their order")


class Failure(_State):
    stage: str
    error: str
    reason: str
    reasons: list[str] = []


Outcome = Literal["ready", "failed"]


class MessageAttribute(TypedDict):
    """An SNS message attribute, in the shape Publish (and Step Functions' sns:publish) takes."""

    DataType: Literal["String"]
    StringValue: str


class Announcement(_State):
    outcome: Outcome
    subject: str = Field(max_length=100)
    message: str
    message_attributes: dict[str, MessageAttribute] = Field(
        description="outcome, and product, version, kind and region where known: what subscribers filter on"
    )
    detail_type: str
    detail: dict[str, Any]


# --- announcements the state machine could not send: the announcement queue's messages -----


class DeferredNotification(_State):
    """The SNS notification of an announcement, as the announcement queue keeps it."""

    channel: Literal["sns"]
    outcome: Outcome
    subject: str = Field(max_length=100)
    message: str
    message_attributes: dict[str, MessageAttribute] = {}
    execution: str = ""


class DeferredEvent(_State):
    """The EventBridge event of an announcement, as the announcement queue keeps it."""

    channel: Literal["events"]
    detail_type: str
    detail: dict[str, Any]
    execution: str = ""


# One message per channel that failed: a message is done once its one channel accepts it, so
# no channel is ever sent an announcement twice by a retry of the other.
Deferred = Annotated[DeferredNotification | DeferredEvent, Field(discriminator="channel")]


class QueuedAnnouncement(_State):
    """A channel did not take the announcement; the announcement queue holds it for DeliverAnnouncement."""

    queue: str
    message_id: str
    reason: str = Field(description="What the channel answered")


class UndeliveredAnnouncement(_State):
    """Neither the channel nor the announcement queue took the announcement."""

    channel: Literal["sns", "events"]
    reason: str
    queue_error: str


class AnnouncementSent(_State):
    """BuildAnnouncement's result, which the execution ends with: the outcome, and where the
    announcement went when a channel did not take it at once (absent: sent on both)."""

    outcome: Outcome
    subject: str
    deferred_notification: QueuedAnnouncement | None = None
    deferred_event: QueuedAnnouncement | None = None
    undelivered: list[UndeliveredAnnouncement] | None = Field(
        default=None, description="Lost unless the execution's history is read: the execution fails for it"
    )


# --- handler inputs: what the state machine passes each Lambda (its task Parameters) -------


class PlanImageInput(_State):
    release: ReleaseSummary
    container: str = Field(description="Which of the release's pinned images (PinnedImage.container)")


class PutManifestInput(_State):
    plan: ImagePlan
    batches: list[BatchCopied] = Field(description="CopyBlobs' results, one per batch copied")


class PlanArtifactsInput(_State):
    release: ReleaseSummary


class CopyArtifactsInput(_State):
    objects: list[PinnedObject]
    source_region: str
    publishing_region: str
    buckets_ready: bool = Field(
        default=False, description="The publishing buckets are set up (PlanArtifacts did it): copy only"
    )


class ScanImagesInput(_State):
    images: list[PublishedImage]
    attempt: int
    publishing_region: str


class CreateModelPackageInput(_State):
    release: ReleaseSummary
    images: list[PublishedImage]
    algorithm_arn: str | None = Field(
        default=None, description="Create the release's package (its package section) on this validated algorithm"
    )


class CheckValidationInput(_State):
    arn: str
    attempt: int
    elapsed_seconds: int
    timeout_minutes: int
    publishing_region: str


class AnnouncementInput(_State):
    outcome: Outcome
    state: dict[str, Any] = Field(description="The execution's state when it ended")
    execution: str = ""
    finished: str = Field(default="", description="When the announcement began ($$.State.EnteredTime)")

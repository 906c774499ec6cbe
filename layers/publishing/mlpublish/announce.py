"""What people and systems are told when a release ends: ready for listing, or failed.

One function builds both the SNS message (for people) and the EventBridge event detail (for
automation); ``send`` publishes them from BuildAnnouncement, so the announcement (an entry per
image, by the event contract) never passes through the execution's state. What a channel does
not take (after the client's retries) goes to the announcement queue, one message per channel;
DeliverAnnouncement publishes it from there with ``deliver``, and ``postpone`` backs off while
the channel is still down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, ValidationError

from mlpublish.aws import client
from mlpublish.errors import AnnouncementNotDelivered
from mlpublish.events import (
    FAILED,
    READY,
    AnnouncedArtifact,
    AnnouncedImage,
    AnnouncedListing,
    AnnouncedValidation,
    ReleaseFailedDetail,
    ReleaseReadyDetail,
)
from mlpublish.images.osinfo import format_size
from mlpublish.settings import AnnouncementSettings
from mlpublish.state import (
    Announcement,
    AnnouncementSent,
    CopiedObject,
    Deferred,
    DeferredEvent,
    DeferredNotification,
    Failure,
    ImageScanResult,
    ListingProgress,
    MessageAttribute,
    Outcome,
    PinnedImage,
    PublishedImage,
    QueuedAnnouncement,
    Release,
    ReleaseSummary,
    ResourceResult,
    ScanProgress,
    Trigger,
    UndeliveredAnnouncement,
    ValidationProgress,
)
from mlpublish.timeline import timeline


class Copied(BaseModel):
    model_config = ConfigDict(extra="ignore")

    images: list[PublishedImage]
    artifacts: list[CopiedObject]


class SuccessState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    execution: str = ""
    release: Release
    copied: Copied
    scan: ScanProgress
    resource: ResourceResult
    validation: ValidationProgress
    stages: dict[str, Any] = {}
    finished: str = ""
    listing: ListingProgress | None = None
    # An algorithm release's package section: the model package built on the algorithm.
    package: ResourceResult | None = None
    package_validation: ValidationProgress | None = None


# SNS takes subjects of printable ASCII shorter than 100 characters: a longer or non-ASCII
# subject is refused or replaced, so it is cut with an ASCII "...".
SUBJECT_MAX = 99


def _subject(text: str) -> str:
    text = text.encode("ascii", "replace").decode("ascii")
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 3] + "..."


def message_attributes(
    outcome: Outcome,
    *,
    product: str | None = None,
    version: str | None = None,
    kind: str | None = None,
    region: str | None = None,
) -> dict[str, MessageAttribute]:
    """The SNS message attributes subscribers filter on (a subscription's filter policy). What is
    not known is left out: SNS refuses an attribute with an empty value."""
    values = {"outcome": outcome, "product": product, "version": version, "kind": kind, "region": region}
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items() if value}


def _announced_image(image: PublishedImage, pinned: PinnedImage | None) -> AnnouncedImage:
    """The published image, with its OS and how it was told: layer bytes read, remembered, or why not certain."""
    return AnnouncedImage(
        container=image.container,
        image_uri=image.image_uri,
        digest=image.digest,
        source_digest=image.source_digest or (pinned.source.digest if pinned else None) or image.digest,
        media_type=image.media_type,
        conversion=image.conversion,
        os=pinned.os if pinned else None,
        os_bytes_read=pinned.os_bytes_read if pinned else None,
        os_uncertain=pinned.os_uncertain if pinned else None,
        os_remembered=pinned.os_remembered if pinned else False,
    )


def _os_text(image: AnnouncedImage) -> str:
    """E.g. ``Debian GNU/Linux 12 (bookworm), read from 1.2 MiB of its layers``."""
    read = image.os_bytes_read
    if read is None:
        return str(image.os or "not detected")
    if image.os_remembered:
        return f"{image.os or 'none'}, as recorded for this digest by an earlier read (no layer read)"
    if image.os_uncertain:
        return (
            f"not certain ({image.os_uncertain}, of {format_size(read)} read); "
            "ECR's scan decided that it can be scanned"
        )
    return f"{image.os or 'none'}, read from {format_size(read)} of its layers"


def ready(state: SuccessState) -> Announcement:
    release, resource = state.release, state.resource
    spec = release.spec
    pinned = {image.container: image for image in release.images}
    times = timeline(state.stages, state.finished)
    listed = state.listing if state.listing is not None and state.listing.status == "SUCCEEDED" else None
    algorithm = spec.is_algorithm
    label = "algorithm" if algorithm else "model package"
    package = state.package if algorithm else resource  # the model package, if the release made one
    detail = ReleaseReadyDetail(
        product=spec.product.name,
        version=spec.product.version,
        kind=spec.product.kind,
        publishing_region=release.publishing_region,
        model_package_arn=package.arn if package else None,
        model_package_name=package.name if package else None,
        model_package_action=package.action if package else None,
        algorithm_arn=resource.arn if algorithm else None,
        algorithm_name=resource.name if algorithm else None,
        algorithm_action=resource.action if algorithm else None,
        source_algorithm_arn=spec.source_algorithm.algorithm if spec.source_algorithm else None,
        listed=listed is not None,
        listing=(
            AnnouncedListing(
                product_id=listed.product_id,
                version_title=listed.version_title,
                change_set_id=listed.change_set_id,
                change_set_arn=listed.change_set_arn,
                already_listed=listed.already_listed,
            )
            if listed is not None
            else None
        ),
        fingerprint=release.fingerprint,
        images=[_announced_image(image, pinned.get(image.container)) for image in state.copied.images],
        artifacts=[AnnouncedArtifact(role=a.role, container=a.container, uri=a.uri) for a in state.copied.artifacts],
        validation=AnnouncedValidation(
            status=state.validation.status,
            validation_statuses=state.validation.validation_statuses,
            image_scan_statuses=state.validation.image_scan_statuses,
        ),
        image_scans=[
            ImageScanResult(repository=image.repository, digest=image.digest, **scan.model_dump())
            for image, scan in zip(state.copied.images, state.scan.images, strict=False)
        ],
        release_uri=release.release_uri,
        trigger=release.trigger,
        execution=state.execution,
        stage_seconds=times.seconds,
    )
    lines = [
        (
            f"{spec.product.name} {spec.product.version} is listed: version {listed.version_title} was added to "
            f"AWS Marketplace product {listed.product_id} (AWS Marketplace reviews it before buyers see it)."
            if listed is not None
            else f"{spec.product.name} {spec.product.version} is ready to list on AWS Marketplace."
        ),
        "",
        f"{label.capitalize()}: {resource.arn} ({resource.action})",
        f"Publishing region: {release.publishing_region}",
        *(
            [f"Built on algorithm: {spec.source_algorithm.algorithm} (it serves the model; no image of its own)"]
            if spec.source_algorithm
            else []
        ),
        *(
            [
                f"Model package built on it: {state.package.arn} ({state.package.action}; validation "
                f"{state.package_validation.status if state.package_validation else 'unknown'})"
            ]
            if algorithm and state.package is not None
            else []
        ),
        *(["Images:"] if detail.images else []),
        *(
            f"  {image.container}: {image.image_uri} ({image.media_type}"
            + (f", converted from {image.source_digest}" if image.digest != image.source_digest else "")
            + f"; OS: {_os_text(image)})"
            for image in detail.images
        ),
        f"Validation: {state.validation.status}"
        + (
            "; image scans: " + ", ".join(f"{scan.repository} {scan.status}" for scan in detail.image_scans)
            if detail.image_scans
            else ""
        ),
        *([f"Time taken: {times.summary()}"] if times.seconds else []),
        "",
        *(
            [
                f"Change set: {listed.change_set_id} ({listed.change_set_arn})"
                if listed.change_set_id
                else "The product had a version of this resource already; nothing was changed."
            ]
            if listed is not None
            else [
                f"Next: in the AWS Marketplace Management Portal, add a version to the product with this {label} "
                "ARN (or give the release a listing section, and the pipeline adds it)."
            ]
        ),
        f"Execution: {state.execution}",
    ]
    return Announcement(
        outcome="ready",
        subject=_subject(
            f"{'Listed' if listed is not None else 'Ready for listing'}: {spec.product.name} {spec.product.version}"
        ),
        message="\n".join(lines),
        message_attributes=message_attributes(
            "ready",
            product=spec.product.name,
            version=spec.product.version,
            kind=spec.product.kind,
            region=release.publishing_region,
        ),
        detail_type=READY,
        detail=detail.to_json(),
    )


def parse_error(error: dict[str, Any] | None, stage: str) -> Failure:
    """Turn a Catch block's ``{"Error", "Cause"}`` into stage, reason and every listed reason."""
    error = error or {}
    name = str(error.get("Error", "States.Runtime"))
    cause = str(error.get("Cause", "") or "")
    message = cause
    try:
        payload = json.loads(cause)
        if isinstance(payload, dict) and "errorMessage" in payload:
            message = str(payload["errorMessage"])
            name = str(payload.get("errorType", name))
    except ValueError:
        pass
    reason, _, rest = message.partition("\n- ")
    reasons = [line for line in rest.split("\n- ") if line.strip()] if rest else []
    return Failure(stage=stage, error=name, reason=reason.strip() or name, reasons=[r.strip() for r in reasons])


def failed(state: dict[str, Any]) -> Announcement:
    failure = parse_error(state.get("error"), str(state.get("failed_stage", "unknown")))
    release = _release_or_none(state.get("release"))
    summary = _summary_or_none(state.get("release")) if release is None else None
    version = release.spec.product.version if release else summary.version if summary else ""
    # Before ResolveRelease succeeds, the release file is all there is to name.
    release_file = str(state.get("release_uri") or "inline release").rsplit("/", 1)[-1]
    named = release.spec.product.name if release else summary.product if summary else None
    product = named or release_file
    title = f"{product} {version}".strip()
    times = timeline(state.get("stages"), state.get("finished"))
    resource = state.get("resource")
    arn = str(resource.get("arn") or "") if isinstance(resource, dict) else ""
    detail = ReleaseFailedDetail(
        product=named,
        version=version or None,
        stage=failure.stage,
        error=failure.error,
        reason=failure.reason,
        reasons=failure.reasons,
        release_uri=release.release_uri if release else summary.release_uri if summary else state.get("release_uri"),
        trigger=release.trigger if release else _trigger_or_none(state.get("trigger")),
        execution=state.get("execution", ""),
        stage_seconds=times.seconds,
        model_package_arn=arn if arn and ":algorithm/" not in arn else None,
        algorithm_arn=arn if ":algorithm/" in arn else None,
    )
    lines = [
        f"Publishing {title} failed at stage {failure.stage}.",
        "",
        f"{failure.error}: {failure.reason}",
        *(f"  - {reason}" for reason in failure.reasons),
        *([f"Time taken: {times.summary()}"] if times.seconds else []),
        "",
        "Nothing was listed. Fix the cause and push, upload or start the release again: finished "
        "work (copied blobs and objects, a validated package) is reused.",
        f"Execution: {detail.execution}",
    ]
    return Announcement(
        outcome="failed",
        subject=_subject(f"Release failed: {title} at {failure.stage}"),
        message="\n".join(lines),
        message_attributes=message_attributes(
            "failed",
            product=detail.product,
            version=detail.version,
            kind=release.spec.product.kind if release else summary.kind if summary else None,
            region=release.publishing_region if release else summary.publishing_region if summary else None,
        ),
        detail_type=FAILED,
        detail=detail.to_json(),
    )


def _trigger_or_none(raw: Any) -> Trigger | None:
    """The execution input's trigger, if it is one (the input may be what failed)."""
    try:
        return Trigger.model_validate(raw)
    except ValidationError:
        return None


def _summary_or_none(raw: Any) -> ReleaseSummary | None:
    """The state's summary of the release, when its record could not be read."""
    try:
        return ReleaseSummary.model_validate(raw)
    except ValidationError:
        return None


def _release_or_none(raw: Any) -> Release | None:
    if not isinstance(raw, dict):
        return None
    try:
        return Release.model_validate(raw)
    except ValidationError:
        return None


# --- the announcement queue: deferred announcements, delivered again -----------------------

# A deferred announcement is tried again after 1, 2, 4, ... minutes, then hourly: with the
# queue's maxReceiveCount of 100 that is about four days before it moves to the dead-letter
# queue, well within the 14 days both queues keep a message.
RETRY_FIRST_SECONDS = 60
RETRY_MAX_SECONDS = 3600


@dataclass(frozen=True)
class Channels:
    """Where announcements go: the stack's topic and event bus, with clients for them."""

    sns: Any
    events: Any
    topic_arn: str
    event_bus: str
    event_source: str


def stack_channels(config: AnnouncementSettings, max_attempts: int) -> Channels:
    """The stack's topic and bus, with clients that try each call ``max_attempts`` times."""
    return Channels(
        sns=client("sns", config.region, max_attempts=max_attempts),
        events=client("events", config.region, max_attempts=max_attempts),
        topic_arn=config.notification_topic_arn,
        event_bus=config.event_bus_name,
        event_source=config.event_source,
    )


@dataclass(frozen=True)
class Queue:
    """The announcement queue: what a channel does not take waits there for DeliverAnnouncement.
    Its client is made only when a channel is down."""

    url: str
    region: str
    max_attempts: int

    def keep(self, message: Deferred) -> str:
        """Queue ``message``; its message id."""
        sqs = client("sqs", self.region, max_attempts=self.max_attempts)
        return str(sqs.send_message(QueueUrl=self.url, MessageBody=message.model_dump_json())["MessageId"])


def notification_of(announcement: Announcement, execution: str) -> DeferredNotification:
    return DeferredNotification(
        channel="sns",
        outcome=announcement.outcome,
        subject=announcement.subject,
        message=announcement.message,
        message_attributes=announcement.message_attributes,
        execution=execution,
    )


def event_of(announcement: Announcement, execution: str) -> DeferredEvent:
    return DeferredEvent(
        channel="events", detail_type=announcement.detail_type, detail=announcement.detail, execution=execution
    )


def send(announcement: Announcement, execution: str, channels: Channels, queue: Queue) -> AnnouncementSent:
    """Publish the announcement to SNS and to EventBridge. A channel that does not take it
    (after the client's retries) gets it later: the announcement queue keeps it, one message per
    channel, so the channel that did take it is never sent it twice. What the queue does not
    take either is returned as undelivered, with both reasons: the execution ends with its own
    error for it."""
    queued: dict[str, QueuedAnnouncement] = {}
    undelivered: list[UndeliveredAnnouncement] = []
    for message in (notification_of(announcement, execution), event_of(announcement, execution)):
        try:
            deliver(message, channels)
            continue
        except AnnouncementNotDelivered as exc:
            reason = str(exc)
        try:
            message_id = queue.keep(message)
        except (ClientError, BotoCoreError) as exc:
            undelivered.append(
                UndeliveredAnnouncement(
                    channel=message.channel,
                    reason=reason,
                    queue_error=f"the announcement queue did not take it ({exc})",
                )
            )
            continue
        queued[message.channel] = QueuedAnnouncement(queue=queue.url, message_id=message_id, reason=reason)
    return AnnouncementSent(
        outcome=announcement.outcome,
        subject=announcement.subject,
        deferred_notification=queued.get("sns"),
        deferred_event=queued.get("events"),
        undelivered=undelivered or None,
    )


def deliver(deferred: Deferred, channels: Channels) -> None:
    """Publish an announcement to its one channel; AnnouncementNotDelivered when it does not take it."""
    try:
        if isinstance(deferred, DeferredNotification):
            channels.sns.publish(
                TopicArn=channels.topic_arn,
                Subject=deferred.subject,
                Message=deferred.message,
                # A message queued before the attributes were deferred too carries the outcome only.
                MessageAttributes={**message_attributes(deferred.outcome), **deferred.message_attributes},
            )
            return
        response = channels.events.put_events(
            Entries=[
                {
                    "EventBusName": channels.event_bus,
                    "Source": channels.event_source,
                    "DetailType": deferred.detail_type,
                    "Detail": json.dumps(deferred.detail),
                    # As Step Functions' putEvents integration does: the execution is the event's resource.
                    "Resources": [deferred.execution] if deferred.execution else [],
                }
            ]
        )
    except (ClientError, BotoCoreError) as exc:
        raise AnnouncementNotDelivered(
            f"{_channel_name(deferred)} did not take the announcement of {deferred.execution or 'an execution'} ({exc})"
        ) from exc
    if response.get("FailedEntryCount"):
        [entry] = response.get("Entries", [{}])
        raise AnnouncementNotDelivered(
            f"EventBridge refused the event of {deferred.execution or 'an execution'} "
            f"({entry.get('ErrorCode')}: {entry.get('ErrorMessage')})"
        )


def retry_delay(receive_count: int) -> int:
    """Seconds to wait before the ``receive_count``-th delivery is tried again."""
    doublings = min(max(receive_count - 1, 0), 12)  # 2**12 minutes is past the cap already
    return min(RETRY_FIRST_SECONDS * (1 << doublings), RETRY_MAX_SECONDS)


def postpone(sqs: Any, queue_url: str, receipt_handle: str, receive_count: int) -> int:
    """Keep a message that failed out of sight for ``retry_delay`` (the queue's own visibility
    timeout is the fallback when this fails); returns the delay asked for."""
    delay = retry_delay(receive_count)
    try:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=delay)
    except (ClientError, BotoCoreError):
        return 0
    return delay


def _channel_name(deferred: Deferred) -> str:
    return "SNS" if isinstance(deferred, DeferredNotification) else "EventBridge"

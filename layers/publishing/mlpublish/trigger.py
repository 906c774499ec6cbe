"""From an ECR push or S3 upload event to a started (or deduplicated) release execution.

The execution name is derived from the release's content fingerprint, so a duplicate
delivery or a second push of the same digest finds the execution already running or done
and starts nothing. After a failed execution the next attempt gets a ``-rN`` suffix and
reuses everything the failed one finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlpublish.aws import error_code, transient_errors
from mlpublish.errors import InvalidRelease, PipelineError, RecordRefused, ReleaseNotFound
from mlpublish.events import (
    RELEASE_STARTED,
    RELEASE_WAITING,
    ReleaseStartedDetail,
    ReleaseWaitingDetail,
    TriggerCause,
)
from mlpublish.preflight import source_problems
from mlpublish.records import PIPELINE_PREFIX
from mlpublish.release import ReleaseSpec, parse_release
from mlpublish.resolve import execution_name, fingerprint, pin, release_objects
from mlpublish.settings import AllowedSources
from mlpublish.state import PinSet, StartInput, Trigger, TriggerKind

RELEASE_SUFFIXES = (".yaml", ".yml", ".json")
MAX_ATTEMPTS = 50
RUNNING_OR_DONE = frozenset({"RUNNING", "SUCCEEDED", "PENDING_REDRIVE"})


class EcrPushDetail(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    result: str
    action_type: str = Field(alias="action-type")
    repository_name: str = Field(alias="repository-name")
    image_digest: str = Field(alias="image-digest")
    image_tag: str | None = Field(default=None, alias="image-tag")


class S3Bucket(BaseModel):
    name: str


class S3Object(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key: str
    etag: str | None = None
    size: int | None = None


class S3CreatedDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bucket: S3Bucket
    object: S3Object


class EventBridgeEvent(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    source: str
    detail_type: str = Field(alias="detail-type")
    account: str
    region: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Started:
    release_uri: str
    execution_arn: str
    name: str
    outcome: Literal["started", "duplicate", "waiting"]
    note: str = ""


class ReleaseCatalog:
    """Release files in the pipeline bucket, parsed once per ETag for the container's life."""

    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix
        self._parsed: dict[tuple[str, str], ReleaseSpec | None] = {}

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def is_release_key(self, bucket: str, key: str) -> bool:
        return (
            bucket == self.bucket
            and key.startswith(self.prefix)
            and key.endswith(RELEASE_SUFFIXES)
            and not key.startswith(PIPELINE_PREFIX)  # the pipeline's own records (ReleasePrefix may be "")
        )

    def release_key(self, bucket: str, event_key: str) -> str | None:
        """The release file an uploaded key names, as stored; None for any other object.

        The key as sent is taken unless it does not exist and its URL-decoded form does
        (see ``key_forms``); only then is S3 asked, so plain keys cost no request.
        """
        forms = key_forms(event_key)
        if not any(self.is_release_key(bucket, key) for key in forms):
            return None
        stored = event_key
        if len(forms) > 1 and not self._exists(event_key) and self._exists(forms[1]):
            stored = forms[1]
        return stored if self.is_release_key(bucket, stored) else None

    def _exists(self, key: str) -> bool:
        try:
            with transient_errors(f"checking {self.uri(key)}"):
                self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def load(self, key: str) -> ReleaseSpec:
        try:
            with transient_errors(f"reading {self.uri(key)}"):
                response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
                raise RecordRefused(
                    f"release file {self.uri(key)} was deleted before the trigger read it; nothing to start "
                    "(upload it again to start the release)"
                ) from exc
            raise
        return parse_release(response["Body"].read(), source=self.uri(key))

    def all(self) -> list[tuple[str, ReleaseSpec]]:
        """Every valid release; invalid files are skipped here (they fail loudly on upload)."""
        releases = []
        paginator = self.s3.get_paginator("list_objects_v2")
        with transient_errors(f"listing {self.uri(self.prefix)}"):
            pages = list(paginator.paginate(Bucket=self.bucket, Prefix=self.prefix))
        for page in pages:
            for item in page.get("Contents", []):
                key, etag = item["Key"], item["ETag"]
                if not key.endswith(RELEASE_SUFFIXES) or key.startswith(PIPELINE_PREFIX):
                    continue
                if (key, etag) not in self._parsed:
                    try:
                        self._parsed[(key, etag)] = self.load(key)
                    except InvalidRelease:
                        self._parsed[(key, etag)] = None
                spec = self._parsed[(key, etag)]
                if spec is not None:
                    releases.append((key, spec))
        return releases


def releases_for_push(catalog: ReleaseCatalog, event: EventBridgeEvent) -> list[tuple[str, ReleaseSpec, PinSet]]:
    """Releases with an image (a container's, or an algorithm's training image) that is the
    pushed repository and tag (or digest)."""
    push = EcrPushDetail.model_validate(event.detail)
    if push.result != "SUCCESS" or push.action_type != "PUSH":
        return []
    matches = []
    for key, spec in catalog.all():
        pinned = {}
        for name, _, _, ref in spec.images():
            same_repo = (ref.registry_id, ref.region, ref.repository) == (
                event.account,
                event.region,
                push.repository_name,
            )
            if same_repo and (ref.digest == push.image_digest or (not ref.digest and ref.reference == push.image_tag)):
                pinned[name] = push.image_digest
        if pinned:
            matches.append((key, spec, PinSet(images=pinned)))
    return matches


def key_forms(event_key: str) -> tuple[str, ...]:
    """The keys an S3 event's key may stand for: as sent, then URL-decoded if that differs.

    S3 URL-encodes keys in some notifications ("a b" -> "a+b", "(" -> "%28") and not in
    others, so the key as sent is either the stored key or its encoding.
    """
    decoded = unquote_plus(event_key)
    return (event_key,) if decoded == event_key else (event_key, decoded)


@dataclass(frozen=True)
class Upload:
    """An S3 upload with its key normalised once (see ``key_forms``).

    ``key`` is the key as the event sent it; ``release_key`` is the release file's key as
    stored when the upload is a release file, else None.
    """

    bucket: str
    key: str
    etag: str | None
    size: int | None
    release_key: str | None

    @classmethod
    def of(cls, catalog: ReleaseCatalog, event: EventBridgeEvent) -> Upload:
        detail = S3CreatedDetail.model_validate(event.detail)
        bucket, key = detail.bucket.name, detail.object.key
        return cls(bucket, key, detail.object.etag, detail.object.size, catalog.release_key(bucket, key))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.release_key or self.key}"

    def named_by(self, spec: ReleaseSpec) -> list[str]:
        """The URIs, one per form of the key, by which the release names this object."""
        named = {uri for _, _, uri in release_objects(spec)}
        return [uri for uri in (f"s3://{self.bucket}/{key}" for key in key_forms(self.key)) if uri in named]


def releases_for_upload(catalog: ReleaseCatalog, event: EventBridgeEvent) -> list[tuple[str, ReleaseSpec, PinSet]]:
    """The uploaded release file itself, or releases that name the uploaded object."""
    return _releases_for_upload(catalog, Upload.of(catalog, event))


def _releases_for_upload(catalog: ReleaseCatalog, upload: Upload) -> list[tuple[str, ReleaseSpec, PinSet]]:
    if upload.release_key is not None:
        return [(upload.release_key, catalog.load(upload.release_key), PinSet())]
    matches = []
    for release_key, spec in catalog.all():
        uris = upload.named_by(spec)
        if not uris:
            continue
        pins = PinSet()
        # Pinned under the URI the release names, so that ResolveRelease uses the pin and the
        # fingerprint covers the release's own objects only. A release naming both forms
        # names two objects and the event cannot say which was uploaded: pin neither.
        if len(uris) == 1 and upload.etag and upload.size is not None:
            pins = PinSet(etags={uris[0]: upload.etag}, sizes={uris[0]: upload.size})
        matches.append((release_key, spec, pins))
    return matches


def start_release(
    sfn: Any,
    state_machine_arn: str,
    *,
    release_uri: str,
    spec: ReleaseSpec,
    pins: PinSet,
    trigger: Trigger,
    publishing_region: str,
) -> Started:
    """Start the release's execution unless one for the same content runs or succeeded."""
    fp = fingerprint(spec, pins, spec.publishing_region or publishing_region)
    payload = _payload(StartInput(release_uri=release_uri, trigger=trigger, pins=pins))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        name = execution_name(spec, fp, attempt)
        arn, status = _start_unless_named(sfn, state_machine_arn, name, payload)
        if status is None:
            return Started(release_uri, arn, name, "started")
        if status in RUNNING_OR_DONE:
            return Started(release_uri, arn, name, "duplicate")
    raise PipelineError(
        f"release {release_uri} failed {MAX_ATTEMPTS} times with the same content; fix it before retrying"
    )


def _payload(start: StartInput) -> str:
    return json.dumps(start.model_dump(mode="json", exclude_none=True))


def _start_unless_named(sfn: Any, state_machine_arn: str, name: str, payload: str) -> tuple[str, str | None]:
    """Start the execution ``name`` unless it exists: (its ARN, None) when started here, else
    (its ARN, the existing execution's status)."""
    arn = f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
    # Look first: StartExecution with the name and input of a running execution succeeds
    # (it is idempotent), which would count a duplicate delivery as a new start.
    status = _execution_status(sfn, arn)
    if status is not None:
        return arn, status
    try:
        with transient_errors(f"starting execution {name}"):
            response = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=payload)
        return str(response["executionArn"]), None
    except ClientError as exc:
        if error_code(exc) != "ExecutionAlreadyExists":
            raise
    return arn, _execution_status(sfn, arn)  # started meanwhile by another delivery


def _execution_status(sfn: Any, arn: str) -> str | None:
    """The execution's status, or None when no execution has that name."""
    try:
        with transient_errors(f"describing execution {arn}"):
            return str(sfn.describe_execution(executionArn=arn)["status"])
    except ClientError as exc:
        if error_code(exc) == "ExecutionDoesNotExist":
            return None
        raise


def _unresolvable_name(key: str, trigger: Trigger) -> str:
    """Name for a release that cannot be pinned here: ResolveRelease will fail and announce why."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", key.rsplit("/", 1)[-1]).strip("-")[:50]
    return f"{slug}-{hashlib.sha256(trigger.ref.encode()).hexdigest()[:12]}"


def parse_record(body: str) -> EventBridgeEvent:
    """The EventBridge event an SQS record carries; RecordRefused says why a body is not one."""
    try:
        return EventBridgeEvent.model_validate(json.loads(body))
    except ValueError as exc:  # JSON or model errors: the same body fails the same way every time
        raise RecordRefused(
            f"the trigger queue received a record that is not an EventBridge event ({exc}); only the stack's "
            "ECR push and S3 upload rules should send to it"
        ) from exc


def start_for_event(
    event: EventBridgeEvent,
    *,
    catalog: ReleaseCatalog,
    sfn: Any,
    state_machine_arn: str,
    ecr_for: Any,
    publishing_region: str,
    sources: AllowedSources | None = None,
) -> list[Started]:
    """Start every release the event concerns; an empty list means none uses it.

    A release naming sources the stack does not allow (``sources``) is started unread: its
    ResolveRelease refuses it before reading anything and announces why.
    """
    try:
        return _start_for_event(
            event,
            catalog=catalog,
            sfn=sfn,
            state_machine_arn=state_machine_arn,
            ecr_for=ecr_for,
            publishing_region=publishing_region,
            sources=sources,
        )
    except ValidationError as exc:
        raise RecordRefused(
            f"the {event.detail_type} event from {event.source} lacks what the trigger reads ({exc.error_count()} "
            f"problem(s): {exc.errors()[0]['loc']} {exc.errors()[0]['msg']})"
        ) from exc


def _start_for_event(
    event: EventBridgeEvent,
    *,
    catalog: ReleaseCatalog,
    sfn: Any,
    state_machine_arn: str,
    ecr_for: Any,
    publishing_region: str,
    sources: AllowedSources | None,
) -> list[Started]:
    if event.detail_type == "ECR Image Action":
        push = EcrPushDetail.model_validate(event.detail)
        trigger = Trigger(kind="ecr-push", ref=f"{push.repository_name}@{push.image_digest}")
        matches = releases_for_push(catalog, event)
    elif event.detail_type == "Object Created":
        upload = Upload.of(catalog, event)
        kind: TriggerKind = "s3-upload" if upload.release_key is None else "release-upload"
        trigger = Trigger(kind=kind, ref=f"{upload.uri}#{upload.etag}")
        try:
            matches = _releases_for_upload(catalog, upload)
        except InvalidRelease:
            # Start anyway: ResolveRelease fails with every field error and announces them.
            key = upload.release_key or upload.key
            return [_start_unresolvable(sfn, state_machine_arn, key, catalog.uri(key), trigger)]
    else:
        raise RecordRefused(
            f"unexpected event {event.source}/{event.detail_type}; the trigger queue only takes ECR pushes "
            "and S3 uploads (check the EventBridge rules)"
        )
    started = []
    stack_account = state_machine_arn.split(":")[4]
    for key, spec, known in matches:
        uri = catalog.uri(key)
        refused = source_problems(spec, sources, stack_account)
        if refused:
            # Read nothing it names: the execution's preflight refuses it and announces why.
            begun = start_release(
                sfn,
                state_machine_arn,
                release_uri=uri,
                spec=spec,
                pins=PinSet(),
                trigger=trigger,
                publishing_region=publishing_region,
            )
            started.append(dataclasses.replace(begun, note="its sources are refused: " + "; ".join(refused)))
            continue
        try:
            pins = pin(spec, ecr_for=ecr_for, s3=catalog.s3, known=known)
        except ReleaseNotFound as exc:
            # Sellers upload the release file, artifacts and images in any order: the last
            # one to arrive starts the release. A manual start reports what is missing.
            started.append(Started(uri, "", "", "waiting", note=exc.message))
            continue
        started.append(
            start_release(
                sfn,
                state_machine_arn,
                release_uri=uri,
                spec=spec,
                pins=pins,
                trigger=trigger,
                publishing_region=publishing_region,
            )
        )
    return started


def _start_unresolvable(sfn: Any, state_machine_arn: str, key: str, uri: str, trigger: Trigger) -> Started:
    name = _unresolvable_name(key, trigger)
    payload = _payload(StartInput(release_uri=uri, trigger=trigger))
    arn, status = _start_unless_named(sfn, state_machine_arn, name, payload)
    return Started(uri, arn, name, "started" if status is None else "duplicate")


PUT_EVENTS_MAX = 10  # entries per PutEvents call


def progress_entries(started: list[Started], event: EventBridgeEvent, *, bus: str, source: str) -> list[dict[str, Any]]:
    """EventBridge entries saying what the trigger did with ``event``: one "Release Started"
    per execution it began (refused sources included: that execution fails in preflight and
    announces why) and one "Release Waiting" per release still missing a source, naming it.
    A duplicate delivery began nothing and says nothing."""
    cause = TriggerCause(detail_type=event.detail_type, account=event.account, region=event.region)
    entries = []
    for item in started:
        if item.outcome == "duplicate":
            continue
        detail: ReleaseStartedDetail | ReleaseWaitingDetail
        if item.outcome == "waiting":
            detail_type = RELEASE_WAITING
            detail = ReleaseWaitingDetail(release=item.release_uri, missing=item.note, trigger=cause)
        else:
            detail_type = RELEASE_STARTED
            detail = ReleaseStartedDetail(
                release=item.release_uri,
                execution=item.execution_arn,
                execution_name=item.name,
                refused=item.note or None,
                trigger=cause,
            )
        entries.append(
            {
                "EventBusName": bus,
                "Source": source,
                "DetailType": detail_type,
                "Detail": json.dumps(detail.to_json()),
            }
        )
    return entries


def put_progress(events: Any, entries: list[dict[str, Any]]) -> list[str]:
    """Send ``entries``; a problem per entry EventBridge did not take (empty when all went)."""
    problems = []
    for first in range(0, len(entries), PUT_EVENTS_MAX):
        batch = entries[first : first + PUT_EVENTS_MAX]
        try:
            response = events.put_events(Entries=batch)
        except (ClientError, BotoCoreError) as exc:
            reason = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
            problems += [f"{_about(entry)}: {reason}" for entry in batch]
            continue
        for entry, result in zip(batch, response.get("Entries", []), strict=False):
            if result.get("ErrorCode"):
                problems.append(f"{_about(entry)}: {result['ErrorCode']} {result.get('ErrorMessage', '')}".rstrip())
    return problems


def _about(entry: dict[str, Any]) -> str:
    return f"{entry['DetailType']} of {json.loads(entry['Detail'])['release']}"

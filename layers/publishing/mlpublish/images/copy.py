"""The image-copy steps: plan, copy a batch of blobs, put the manifest (one Lambda each).

The state machine runs ``plan_image`` once per container, ``copy_batch`` in a Map over the
plan's batches (in parallel, each batch over as many invocations as it takes), then
``put_manifest``. Each step is idempotent and re-derives the blob list from the pinned
source digest (``batches_of`` groups it the same way every time), so the state carries
digests, counts and batch numbers, never a list that grows with the image's layers.
Registries are passed in (``EcrRegistry`` in AWS, fakes in tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from mlpublish.errors import (
    BlobDigestMismatch,
    ImageCopyFailed,
    ImageScanBlocked,
    InvalidRelease,
    SourceChanged,
    TransientAwsError,
)
from mlpublish.images.manifests import (
    ConvertedManifest,
    blobs_of,
    layers_of,
    parse_manifest,
    select_platform,
    sha256_digest,
    to_docker_v2,
)
from mlpublish.images.osinfo import READ_SECONDS, SCANNABLE_NAMES, OsDetection, detect_os
from mlpublish.images.osrecords import OsRecords
from mlpublish.images.registry import READ_CHUNK, BlobStream, FetchedManifest, ImageRegistry
from mlpublish.images.registry_api import CHUNK_SIZE, chunk_size_for
from mlpublish.release import ImageRef
from mlpublish.state import (
    DOCKER_V2_MANIFEST,
    BatchCopied,
    BatchProgress,
    BlobCopied,
    BlobRef,
    CopyTarget,
    ImagePlan,
    PinnedImage,
    PublishedImage,
    UploadProgress,
)

# Left for returning progress after the last chunk, on top of twice the slowest chunk.
MARGIN_MS = 1000
# A new upload of a blob longer than this many chunks returns its progress after the first.
EARLY_RETURN_CHUNKS = 4
# Small blobs share an invocation: a batch holds consecutive blobs of the manifest up to this
# many bytes and blobs (a larger blob is a batch of its own). A 100-layer image of small
# layers is then 2 invocations, not 101; each blob still costs a few registry requests.
BATCH_BYTES = 256 * 1024 * 1024
BATCH_BLOBS = 64
# Transient failures retried within an invocation, the first after RETRY_SECONDS, doubling.
RETRIES = 4
RETRY_SECONDS = 0.5

RegistryFactory = Callable[[str], ImageRegistry]
PUBLISHED_TAG_PREFIX = "mlpublish-"


@dataclass(frozen=True)
class _Resolved:
    """The source as published: top-level media type, platform manifest, Docker v2 result."""

    source_media_type: str
    selected_digest: str
    published: ConvertedManifest


def check_publishable(
    images: Iterable[PinnedImage],
    publishing_region: str,
    registry_for: RegistryFactory,
    records: OsRecords | None = None,
) -> dict[str, OsDetection]:
    """Preflight for images: each pinned image yields a Docker v2 manifest for its platform,
    built on an OS that ECR can scan. Returns what was found of each container's OS.

    Runs in ResolveRelease, before anything is copied, so an image that cannot be
    published (zstd layers, schema 1, a missing platform, a corrupt manifest, no scannable
    OS) stops the release before artifacts or blobs reach the publishing region. An image
    whose OS cannot be told for certain (the read budget or time ran out, a layer served
    wrong) is let through: the ScanImages stage still gates it (UNSUPPORTED_IMAGE fails it).
    With ``records``, the OS found for a published manifest digest is remembered, and a
    digest read before downloads no layer.
    """
    found: dict[str, OsDetection] = {}
    deadline = time.monotonic() + READ_SECONDS
    detected: dict[tuple[str, str | None, str, str], OsDetection] = {}
    unscannable: list[str] = []
    for image in images:
        target = copy_target(image, publishing_region)
        source = registry_for(image.source.region)
        resolved = _resolve(target, source)
        key = (image.source.region, image.source.registry_id, image.source.repository, resolved.published.digest)
        if key not in detected:
            detected[key] = _detect_os(target, resolved, source, deadline, records)
        detection = detected[key]
        found[image.container] = detection
        recorded = (
            f" (as recorded in {records.uri(resolved.published.digest)} from an earlier read; delete the record "
            "to read the layers again)"
            if detection.remembered and records is not None
            else ""
        )
        if detection.absent:
            unscannable.append(
                f"container {image.container}: {_source_name(target)} has no /etc/os-release or "
                "/usr/lib/os-release in any of its layers, like an image built FROM scratch, or "
                f"distroless without OS files{recorded}"
            )
        elif detection.os is not None and not detection.os.scannable:
            unscannable.append(
                f"container {image.container}: {_source_name(target)} is built on {detection.os.name} "
                f"(os-release ID {detection.os.id}), which ECR basic scanning does not support{recorded}"
            )
    if unscannable:
        raise ImageScanBlocked(
            f"ECR cannot scan the OS of {len(unscannable)} image(s), and AWS Marketplace rejects images "
            f"it cannot scan (UnscannableImage). Base each image on {SCANNABLE_NAMES} (for example "
            "FROM public.ecr.aws/amazonlinux/amazonlinux:2023) and push it again; nothing was copied:",
            reasons=unscannable,
        )
    return found


def _detect_os(
    target: CopyTarget, resolved: _Resolved, source: ImageRegistry, deadline: float, records: OsRecords | None
) -> OsDetection:
    """The OS of the image as published: as recorded for its digest, else read from its layers
    in the source registry (and recorded once certain)."""
    digest = resolved.published.digest
    remembered = records.get(digest) if records is not None else None
    if remembered is not None:
        return remembered
    image = target.source
    detection = detect_os(
        layers_of(parse_manifest(resolved.published.raw, DOCKER_V2_MANIFEST)),
        lambda layer: source.open_blob(image.repository, layer, image.registry_id),
        deadline=deadline,
    )
    if records is not None:
        records.put(digest, detection)
    return detection


def copy_target(image: PinnedImage, publishing_region: str) -> CopyTarget:
    return CopyTarget(
        container=image.container,
        source=image.source,
        platform=image.platform,
        destination_region=publishing_region,
        destination_repository=image.destination_repository,
    )


def plan_image(target: CopyTarget, source: ImageRegistry, destination: ImageRegistry) -> ImagePlan:
    """Decide what to publish and which batches of blobs hold one the destination lacks.

    Every check (digests, platform, convertibility) runs before the first write, which is
    creating the destination repository.
    """
    resolved = _resolve(target, source)
    blobs = _published_blobs(resolved)
    destination.ensure_repository(target.destination_repository)
    missing = destination.missing_blobs(target.destination_repository, [blob.digest for blob in blobs])
    return ImagePlan(
        target=target,
        source_media_type=resolved.source_media_type,
        selected_digest=resolved.selected_digest,
        published_digest=resolved.published.digest,
        conversion=resolved.published.conversion,
        blobs=len(blobs),
        blobs_to_copy=sum(1 for blob in blobs if blob.digest in missing),
        bytes_to_copy=sum(blob.size for blob in blobs if blob.digest in missing),
        batches=[
            number for number, batch in enumerate(batches_of(blobs)) if any(blob.digest in missing for blob in batch)
        ],
    )


def batches_of(blobs: list[BlobRef]) -> list[list[BlobRef]]:
    """The manifest's blobs in order, grouped: consecutive blobs up to BATCH_BYTES and
    BATCH_BLOBS per batch, a blob larger than BATCH_BYTES alone. The same blobs always give
    the same batches, so a batch number names the same blobs in every step."""
    batches: list[list[BlobRef]] = []
    size = 0
    for blob in blobs:
        if not batches or len(batches[-1]) >= BATCH_BLOBS or size + blob.size > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(blob)
        size += blob.size
    return batches


def copy_batch(
    target: CopyTarget,
    published_digest: str,
    batch: int,
    source: ImageRegistry,
    destination: ImageRegistry,
    progress: BatchProgress | None = None,
    remaining_ms: Callable[[], int] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> BatchCopied:
    """Copy the blobs of one of the plan's batches, as many as time allows (``copy_blob``
    each, blobs already there skipped).

    The batch is derived again from the pinned source, whose published manifest must still
    hash to ``published_digest``. A blob starts only while the time left covers a margin
    plus twice the longest blob so far; otherwise, or when a blob returns unfinished, the
    result is ``done=False`` with ``progress`` (the blob reached, its upload, the counts), and
    the next invocation goes on from there.
    """
    resolved = _resolve(target, source)
    _check_planned(target, resolved, published_digest)
    batches = batches_of(_published_blobs(resolved))
    if batch >= len(batches):
        raise ImageCopyFailed(
            f"batch {batch} of {published_digest} does not exist: the manifest's {sum(map(len, batches))} blobs "
            f"make {len(batches)} batch(es). The pipeline's batching changed during the release; start it again."
        )
    start = done = progress or BatchProgress(blob=0)
    longest = 0.0
    for index in range(done.blob, len(batches[batch])):
        if index > start.blob and remaining_ms is not None and remaining_ms() < MARGIN_MS + 2000 * longest:
            return BatchCopied(batch=batch, done=False, progress=done)
        started = time.monotonic()
        try:
            result = copy_blob(
                target,
                batches[batch][index],
                source,
                destination,
                progress=done.upload,
                remaining_ms=remaining_ms,
                chunk_size=chunk_size,
            )
        except TransientAwsError:
            if done == start:
                raise  # nothing done in this invocation: the state machine retries it
            return BatchCopied(batch=batch, done=False, progress=done)  # keep the counts of the blobs done
        longest = max(longest, time.monotonic() - started)
        if not result.done:
            return BatchCopied(batch=batch, done=False, progress=done.model_copy(update={"upload": result.progress}))
        done = BatchProgress(
            blob=index + 1,
            blobs_copied=done.blobs_copied + (0 if result.skipped else 1),
            blobs_skipped=done.blobs_skipped + (1 if result.skipped else 0),
            bytes_copied=done.bytes_copied + (0 if result.skipped else result.bytes_copied),
        )
    return BatchCopied(
        batch=batch, blobs_copied=done.blobs_copied, blobs_skipped=done.blobs_skipped, bytes_copied=done.bytes_copied
    )


def _check_planned(target: CopyTarget, resolved: _Resolved, published_digest: str) -> None:
    if resolved.published.digest != published_digest:
        raise SourceChanged(
            f"the manifest derived from {_source_name(target)} is now {resolved.published.digest}, "
            f"but {published_digest} was planned; the source image or the pipeline changed during "
            "the release. Start the release again."
        )


def copy_blob(
    target: CopyTarget,
    blob: BlobRef,
    source: ImageRegistry,
    destination: ImageRegistry,
    progress: UploadProgress | None = None,
    remaining_ms: Callable[[], int] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> BlobCopied:
    """Stream one blob into the destination's registry, as many chunks as time allows.

    Each chunk is read from the source download straight into the body of one PATCH, through
    one 1 MiB buffer (nothing holds a chunk, nothing goes to /tmp). With ``remaining_ms`` (the Lambda context's),
    chunks go up while the time left covers a margin plus twice the slowest chunk so far; the
    result is then ``done=False`` with ``progress`` (the upload's location and the bytes the
    registry acknowledged), and the next invocation goes on from there. It first asks the
    registry what it holds, so chunks acknowledged after ``progress`` was returned (a worker
    killed mid-copy) are not sent again. A new upload of a blob longer than
    EARLY_RETURN_CHUNKS chunks returns after its first chunk, so its location is in the
    state machine's hands before a worker can be lost with it (at most that chunk is re-sent).

    Verification survives any number of invocations without carrying hash state: the
    completing PUT names the digest and the registry refuses bytes that do not hash to it
    (BlobDigestMismatch, nothing stored); each chunk's range and length are checked against
    what the registry acknowledged; the source must serve exactly the declared size. The
    source's download URL gives no per-chunk checksum, so a corrupt source byte is caught
    by the registry's digest check at the end, not at its chunk.

    Throttling, 5xx and broken connections (TransientAwsError) are retried here up to RETRIES
    times with backoff, as the SDK retries API calls: each retry asks the registry what it
    holds and reopens the download there. When they persist, the progress made is returned
    (the state machine goes on with it), or the error raised if there is none.
    """
    known = [progress] if progress is not None else []
    for attempt in range(RETRIES + 1):
        try:
            return _copy_some(
                target, blob, source, destination, known, remaining_ms, chunk_size, fresh=progress is None
            )
        except TransientAwsError:
            pause = RETRY_SECONDS * 2**attempt
            time_left = remaining_ms is None or remaining_ms() > MARGIN_MS + 1000 * pause
            if attempt == RETRIES or not time_left:
                if known and known[-1].offset > (progress.offset if progress else 0):
                    return BlobCopied(  # hand over what was done; the next invocation goes on
                        digest=blob.digest, bytes_copied=known[-1].offset, skipped=False, done=False, progress=known[-1]
                    )
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def _copy_some(
    target: CopyTarget,
    blob: BlobRef,
    source: ImageRegistry,
    destination: ImageRegistry,
    known: list[UploadProgress],
    remaining_ms: Callable[[], int] | None,
    chunk_size: int,
    *,
    fresh: bool,
) -> BlobCopied:
    """One attempt of ``copy_blob`` from the last progress ``known`` (appended to as chunks are
    acknowledged, so a retry after a transient failure starts from there)."""
    repository = target.destination_repository
    where = _image_name(target.source)
    uploads = destination.uploads()
    progress = known[-1] if known else None
    state = uploads.upload_state(progress.location) if progress is not None else None
    if state is None and not destination.missing_blobs(repository, [blob.digest]):
        return BlobCopied(digest=blob.digest, bytes_copied=0, skipped=True)
    if state is not None and progress is not None:
        # Never below what a PATCH acknowledged: ECR's Range was seen lagging (registry_api).
        state = state._replace(offset=max(state.offset, progress.offset))
    offset = state.offset if state is not None else 0
    size = chunk_size_for(blob.size, chunk_size)
    if offset < blob.size:
        with source.download(target.source.repository, blob.digest, target.source.registry_id, offset) as stream:
            # The upload starts once the source is readable: a refused download leaves none behind.
            location = state.location if state is not None else uploads.start_upload(repository)
            known.append(UploadProgress(location=location, offset=offset))
            reader = _ChunkReader(stream, blob, where)
            slowest = 0.0
            while offset < blob.size:
                out_of_time = slowest and remaining_ms is not None and remaining_ms() < MARGIN_MS + 2000 * slowest
                # A new upload of a long blob hands its location to the state machine after one
                # chunk: a worker lost later then resumes it instead of starting again.
                first_of_many = fresh and offset > 0 and blob.size > EARLY_RETURN_CHUNKS * size
                if out_of_time or first_of_many:
                    return BlobCopied(
                        digest=blob.digest, bytes_copied=offset, skipped=False, done=False, progress=known[-1]
                    )
                length = min(size, blob.size - offset)
                started = time.monotonic()
                location, held = uploads.upload_chunk(location, offset, reader.take(length), length)
                slowest = max(slowest, time.monotonic() - started)
                if held != offset + length:
                    raise ImageCopyFailed(
                        f"the registry acknowledged {held} bytes of blob {blob.digest} after a chunk ending at "
                        f"{offset + length}; the upload was abandoned. Re-run the release."
                    )
                offset = held
                known.append(UploadProgress(location=location, offset=offset))
            reader.expect_end()
    else:
        location = state.location if state is not None else uploads.start_upload(repository)
    try:
        uploads.complete_upload(location, blob.digest)
    except BlobDigestMismatch as exc:
        raise _corrupt(where, blob, f"bytes that do not hash to it ({exc})") from exc
    return BlobCopied(digest=blob.digest, bytes_copied=blob.size, skipped=False)


class _ChunkReader:
    """Hands a download to one chunk at a time, exactly ``length`` bytes per chunk, through one
    buffer: each piece is read from the socket straight into it and sent from it, so a byte is
    copied by no code of ours. A piece is valid until the next is asked for (a request body is
    sent piece by piece). A source that ends early or serves more than the declared size raises
    BlobDigestMismatch before the upload is completed.
    """

    def __init__(self, stream: BlobStream, blob: BlobRef, where: str) -> None:
        self._stream, self._blob, self._where = stream, blob, where
        self._buffer = memoryview(bytearray(READ_CHUNK))

    def take(self, length: int) -> Iterator[memoryview]:
        while length > 0:
            count = self._stream.readinto(self._buffer[: min(len(self._buffer), length)])
            if not count:
                raise _corrupt(self._where, self._blob, f"fewer than the {self._blob.size} bytes the manifest declares")
            length -= count
            yield self._buffer[:count]

    def expect_end(self) -> None:
        if self._stream.readinto(self._buffer[:1]):
            raise _corrupt(self._where, self._blob, f"more than the {self._blob.size} bytes the manifest declares")


def put_manifest(
    target: CopyTarget,
    published_digest: str,
    source: ImageRegistry,
    destination: ImageRegistry,
    copied: Iterable[BatchCopied] = (),
) -> PublishedImage:
    """Publish the planned manifest once all its blobs are in the destination.

    The manifest is derived again from the source (the same deterministic path as the plan)
    and must hash to ``published_digest``. ``copied`` are the Map's results, one per batch;
    the counts cover the manifest's blobs: copied = uploaded by this release, skipped = the
    rest (already present at plan time, or uploaded by a concurrent copy).
    """
    resolved = _resolve(target, source)
    _check_planned(target, resolved, published_digest)
    blobs = _published_blobs(resolved)
    repository = target.destination_repository
    missing = destination.missing_blobs(repository, [blob.digest for blob in blobs])
    if missing:
        raise ImageCopyFailed(
            f"{len(missing)} blob(s) of {published_digest} are missing from {repository} in "
            f"{target.destination_region}; re-run the release to copy them:",
            reasons=[f"{blob.digest} ({blob.size} bytes)" for blob in blobs if blob.digest in missing],
        )
    tag = _published_tag(target, published_digest, immutable=destination.tags_are_immutable(repository))
    destination.put_manifest(repository, resolved.published.raw, DOCKER_V2_MANIFEST, tag=tag)
    batches = list(copied)
    uploaded = sum(batch.blobs_copied for batch in batches)
    return PublishedImage(
        container=target.container,
        repository=repository,
        image_uri=f"{destination.repository_uri(repository)}@{published_digest}",
        digest=published_digest,
        media_type=DOCKER_V2_MANIFEST,
        source_digest=_pinned_digest(target),
        selected_digest=resolved.selected_digest,
        conversion=resolved.published.conversion,
        blobs_copied=uploaded,
        blobs_skipped=len(blobs) - uploaded,
        bytes_copied=sum(batch.bytes_copied for batch in batches),
    )


def _resolve(target: CopyTarget, source: ImageRegistry) -> _Resolved:
    """Pinned digest -> (index ->) single-platform manifest -> Docker v2 bytes, all verified."""
    digest = _pinned_digest(target)
    where = _source_name(target)
    top = _fetch_verified(source, target.source, digest, where)
    manifest = parse_manifest(top.raw, top.media_type, where=where)
    single = manifest
    if manifest.kind == "index":
        entry = select_platform(top.raw, target.platform, media_type_hint=manifest.media_type, where=where)
        where = f"{where} ({entry.platform} image {entry.digest})"
        child = _fetch_verified(source, target.source, entry.digest, where, size=entry.size)
        single = parse_manifest(child.raw, child.media_type or entry.media_type, where=where)
    return _Resolved(
        source_media_type=manifest.media_type,
        selected_digest=sha256_digest(single.raw),
        published=to_docker_v2(single.raw, single.media_type, where=where),
    )


def _fetch_verified(
    source: ImageRegistry, image: ImageRef, digest: str, where: str, size: int | None = None
) -> FetchedManifest:
    fetched = source.get_manifest(image.repository, digest, image.registry_id)
    actual = sha256_digest(fetched.raw)
    if actual != digest or (size is not None and len(fetched.raw) != size):
        raise BlobDigestMismatch(
            f"ECR returned a manifest for {where} that hashes to {actual} ({len(fetched.raw)} bytes), "
            f"not the {digest} asked for; nothing was written. Re-run the release; if it persists, "
            "push the image again."
        )
    return fetched


def _published_blobs(resolved: _Resolved) -> list[BlobRef]:
    return blobs_of(parse_manifest(resolved.published.raw, DOCKER_V2_MANIFEST))


def _corrupt(where: str, blob: BlobRef, what: str) -> BlobDigestMismatch:
    return BlobDigestMismatch(
        f"blob {blob.digest} of {where} is corrupt: the source served {what}. The upload was "
        "abandoned and nothing was published. Re-run the release; if it persists, push the "
        "source image again."
    )


def _pinned_digest(target: CopyTarget) -> str:
    if not target.source.digest:
        raise InvalidRelease(
            f"container {target.container}: source image {_image_name(target.source)} is not pinned "
            "to a digest; ResolveRelease must pin every image before copying"
        )
    return target.source.digest


def _published_tag(target: CopyTarget, published_digest: str, *, immutable: bool) -> str | None:
    """The source tag where no tag can move (the repositories the pipeline creates are
    immutable); anywhere else, in a repository the seller may tag by hand, only a tag of the
    pipeline's own, derived from the digest, so no tag of the seller's is ever moved (and
    rules expiring untagged images spare the image it named)."""
    same_repository = (target.source.region, target.source.repository) == (
        target.destination_region,
        target.destination_repository,
    )
    if immutable and not same_repository:
        return target.source.tag
    return f"{PUBLISHED_TAG_PREFIX}{published_digest.removeprefix('sha256:')[:12]}"


def _image_name(image: ImageRef) -> str:
    return f"{image.host}/{image.repository}"


def _source_name(target: CopyTarget) -> str:
    return f"{_image_name(target.source)}@{_pinned_digest(target)}"

"""ECR as real ECR behaves, for the parts moto 5.2.5 lacks.

moto accepts layer uploads but keeps no bytes after ``CompleteLayerUpload`` and never
checks the digest the client declared; ``GetDownloadUrlForLayer`` raises
NotImplementedError; ``PutImage`` accepts manifests whose blobs are missing and, given
no ``imageDigest``, invents one from the layer digests; no push event reaches
EventBridge; image scans always report one fake HIGH finding. The pipeline's whole
image copy (stream each blob, verify it, push, then the manifest) and its scan gate
depend on those behaviours, so this extension supplies them:

* Blobs: parts are spooled to disk while uploading (bounded memory), verified against
  the declared digest on completion (``InvalidLayerException``), refused when already
  present (``LayerAlreadyExistsException``), empty (``EmptyUploadException``) or split
  into non-final parts under 5 MiB (``LayerPartTooSmallException``). Bytes are stored
  content-addressed on disk; a repository's membership is moto's own
  ``Repository.layers`` (digest -> size), which ``BatchCheckLayerAvailability`` already
  answers from and which disappears with the repository.
* ``GetDownloadUrlForLayer`` returns a URL on a small threaded HTTP server on 127.0.0.1
  (a stand-in for the pre-signed S3 URL) that streams the blob, with Range support.
  Unknown blobs give ``LayersNotFoundException``; blobs no image in the repository
  references give ``LayerInaccessibleException``, as in ECR.
* ``PutImage`` computes the digest as sha256 of the exact manifest bytes, rejects a
  declared ``imageDigest`` that differs (``ImageDigestDoesNotMatchException``), an image
  manifest whose config or layers are missing (``LayersNotFoundException``) and an index
  whose child manifests are not images of the repository
  (``ReferencedImagesNotFoundException``). A successful push emits the EventBridge
  ``ECR Image Action`` event and, with ``scanOnPush``, starts a scan.
* Scans follow a configurable ``ScanOutcome`` on the virtual clock: IN_PROGRESS for
  ``duration_seconds``, then COMPLETE with the configured severity counts (default:
  none), or UNSUPPORTED_IMAGE / FAILED. One basic scan per image per 24 virtual hours.
* Fault ``corrupt-blob``: the HTTP server serves one layer with one byte flipped.
* The registry endpoint (``sandbox.ecr_registry``): ``GetAuthorizationToken`` issues tokens
  for per-registry HTTPS servers that take blob pushes through the Docker Registry HTTP API
  v2 into the same uploads, checks and store as the API's layer upload calls.
* ``bandwidth_mib_s``: each blob download and each registry request body moves at most that fast.

Exception names come from botocore's ECR service model (2015-09-21).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, cast
from unittest.mock import patch

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr.exceptions import (
    InvalidLayerPartException,
    InvalidParameterException,
    LimitExceededException,
    ScanNotFoundException,
    UploadNotFoundException,
)
from moto.ecr.models import ECRBackend, ecr_backends
from moto.ecr.responses import ECRResponse
from moto.events.models import events_backends

from mlpublish.images.manifests import INDEX_TYPES, sha256_digest
from sandbox.audit import ApiCall
from sandbox.clock import VirtualClock
from sandbox.ecr_registry import RegistryEndpoints
from sandbox.extension import Extension

LOG = logging.getLogger(__name__)

#: ECR documents a 5 MiB minimum for every part but the last (LayerPartTooSmallException).
MIN_PART_SIZE = 5 * 1024 * 1024
#: StartImageScan: "A basic image scan can only be started once per 24 hours on an individual image".
SCAN_QUOTA_SECONDS = 24 * 3600
FAULT_CORRUPT_BLOB = "corrupt-blob"
_CHUNK = 1024 * 1024


def _ecr_error(code: str, **attributes: str) -> type[ServiceException]:
    """An ECR error moto does not define: a ServiceException class named by its code."""
    return type(code, (ServiceException,), {"__module__": __name__, "code": code, **attributes})


InvalidLayerException = _ecr_error("InvalidLayerException")
LayerAlreadyExistsException = _ecr_error("LayerAlreadyExistsException")
EmptyUploadException = _ecr_error("EmptyUploadException")
LayerPartTooSmallException = _ecr_error("LayerPartTooSmallException")
LayersNotFoundException = _ecr_error("LayersNotFoundException")
LayerInaccessibleException = _ecr_error("LayerInaccessibleException")
ReferencedImagesNotFoundException = _ecr_error("ReferencedImagesNotFoundException")
ImageDigestDoesNotMatchException = _ecr_error("ImageDigestDoesNotMatchException")
UnsupportedImageTypeException = _ecr_error(
    "UnsupportedImageTypeException", message="The image is of a type that cannot be scanned."
)


@dataclass(frozen=True)
class ScanOutcome:
    """How a basic scan of an image ends, and after how many virtual seconds."""

    status: str = "COMPLETE"
    severity_counts: Mapping[str, int] = field(default_factory=dict)
    duration_seconds: float = 0.0
    description: str | None = None


UNSUPPORTED_IMAGE = ScanOutcome(
    status="UNSUPPORTED_IMAGE",
    description="UnsupportedImageError: The operating system and/or package manager are not supported.",
)


@dataclass(frozen=True)
class _Scan:
    started_at: dt.datetime
    outcome: ScanOutcome


@dataclass
class _Spool:
    """An in-progress upload spooled to disk, hashed as it arrives."""

    path: Path
    hasher: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    part_sizes: list[int] = field(default_factory=list)
    writing: Any = field(default_factory=threading.Lock)  # one part at a time


def manifest_digest(manifest: str) -> str:
    """ECR's image digest: sha256 of the exact manifest bytes."""
    return sha256_digest(manifest.encode("utf-8"))


def emit_image_push_event(
    account_id: str,
    region: str,
    repository_name: str,
    image_digest: str,
    image_tag: str | None,
    when: dt.datetime | None = None,
) -> None:
    """Put ECR's push event on the region's default bus (moto's ECR emits none).

    Shape from the ECR user guide sample "Event for a completed image push". Injected
    into moto's events backend directly: a client ``PutEvents`` is the customer's path,
    not how an AWS service delivers its ``aws.*`` events.
    """
    detail: dict[str, str] = {
        "result": "SUCCESS",
        "repository-name": repository_name,
        "image-digest": image_digest,
        "action-type": "PUSH",
    }
    if image_tag:
        detail["image-tag"] = image_tag
    entry: dict[str, Any] = {
        "Source": "aws.ecr",
        "DetailType": "ECR Image Action",
        "Detail": json.dumps(detail),
        "Resources": [],
    }
    if when is not None:
        entry["Time"] = when.timestamp()
    results = events_backends[account_id][region].put_events([entry])
    failed = [r for r in results if "ErrorCode" in r]
    if failed:
        raise RuntimeError(f"EventBridge refused the ECR push event: {failed}")


class _BlobHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that goes away mid-download (a killed worker) is routine, not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def __init__(self, owner: EcrExtension) -> None:
        super().__init__(("127.0.0.1", 0), _BlobRequestHandler)
        self.owner = owner


class _BlobRequestHandler(BaseHTTPRequestHandler):
    server: _BlobHTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.owner._serve(self, with_body=True)

    def do_HEAD(self) -> None:
        self.server.owner._serve(self, with_body=False)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("blob server: " + format, *args)


class EcrExtension(Extension):
    """Real-ECR blob, manifest, download-URL, push-event and scan behaviour on moto.

    Install with ``undo = ext.install()`` (or ``with ext:``): starts the blob HTTP server
    and patches moto's ECR; ``undo()`` restores moto, stops the server and deletes the
    blob directory (unless ``blob_dir`` was given).
    """

    def __init__(
        self,
        clock: VirtualClock,
        *,
        scan_outcome: ScanOutcome | None = None,
        fault: str | None = None,
        emit_push_events: bool = True,
        blob_dir: Path | None = None,
        observers: list[Callable[[ApiCall], None]] | None = None,
        bandwidth_mib_s: float | None = None,
    ) -> None:
        if fault not in (None, FAULT_CORRUPT_BLOB):
            raise ValueError(f"unknown ECR fault {fault!r}; known: {FAULT_CORRUPT_BLOB!r}")
        self.clock = clock
        self.default_scan_outcome = scan_outcome or ScanOutcome()
        self.emit_push_events = emit_push_events
        self._given_blob_dir = blob_dir
        self._blob_dir: Path | None = None
        self._lock = threading.Lock()
        self._spools: dict[str, _Spool] = {}
        self._urls: dict[str, str] = {}
        self._scan_outcomes: dict[str, ScanOutcome] = {}
        self._scans: dict[tuple[str, str, str, str], _Scan] = {}
        self._corrupt_armed = fault == FAULT_CORRUPT_BLOB
        self._corrupt_digest: str | None = None
        self.event_errors: list[str] = []
        self._server: _BlobHTTPServer | None = None
        if bandwidth_mib_s is not None and bandwidth_mib_s <= 0:
            raise ValueError("the bandwidth must be more than 0 MiB/s")
        self.bytes_per_second = bandwidth_mib_s * 1024 * 1024 if bandwidth_mib_s else None
        self.registries = RegistryEndpoints(
            self, observers if observers is not None else [], clock.now, bandwidth_mib_s
        )

    # ----------------------------------------------------------------- lifecycle

    def _patch(self, stack: ExitStack) -> None:
        """Start the blob server and patch moto's ECR."""
        self._blob_dir = self._given_blob_dir or Path(tempfile.mkdtemp(prefix="sandbox-ecr-"))
        (self._blob_dir / "uploads").mkdir(parents=True, exist_ok=True)
        if self._given_blob_dir is None:
            stack.callback(shutil.rmtree, self._blob_dir, True)
        self._server = _BlobHTTPServer(self)
        # A short poll interval keeps undo (server shutdown) fast.
        thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="sandbox-ecr-blobs", daemon=True
        )
        thread.start()
        stack.callback(self._stop_server)
        stack.callback(self.registries.stop)
        for name, replacement in self._backend_patches().items():
            stack.enter_context(patch.object(ECRBackend, name, replacement))
        stack.enter_context(patch.object(ECRResponse, "get_download_url_for_layer", self._download_url_response()))
        stack.enter_context(patch.object(ECRResponse, "get_authorization_token", self._authorization_response()))

    @property
    def base_url(self) -> str:
        """Where the blob server listens (``http://127.0.0.1:<port>``)."""
        if self._server is None:
            raise RuntimeError("EcrExtension is not installed")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ----------------------------------------------------------------- configuration

    def set_scan_outcome(self, outcome: ScanOutcome, repository_name: str | None = None) -> None:
        """The outcome of scans started from now on (in one repository, or by default)."""
        if repository_name is None:
            self.default_scan_outcome = outcome
        else:
            self._scan_outcomes[repository_name] = outcome

    def corrupt_blob(self, digest: str | None = None) -> str | None:
        """Arm the ``corrupt-blob`` fault: every download of one blob has one byte flipped.

        With no digest, the target is the largest layer referenced by any stored image
        now; if there is none yet, it is chosen at the first download-URL request, as
        the largest layer of that repository's images. Returns the target if known.
        """
        with self._lock:
            self._corrupt_armed = True
            self._corrupt_digest = digest or self._largest_layer(None)
            return self._corrupt_digest

    def clear_faults(self) -> None:
        """Serve every blob intact again."""
        with self._lock:
            self._corrupt_armed = False
            self._corrupt_digest = None

    @property
    def corrupted_digest(self) -> str | None:
        """The blob the corrupt-blob fault flips a byte of, once chosen."""
        return self._corrupt_digest

    def blob_path(self, digest: str) -> Path:
        """Where the bytes of ``digest`` are stored (content-addressed)."""
        if self._blob_dir is None:
            raise RuntimeError("EcrExtension is not installed")
        algorithm, _, hexpart = digest.partition(":")
        if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self._blob_dir / "sha256" / hexpart

    # ----------------------------------------------------------------- moto patches

    def _backend_patches(self) -> dict[str, Callable[..., Any]]:
        ext = self
        original_put_image = ECRBackend.put_image

        # The replacements keep moto's signatures: moto calls them positionally.
        def upload_layer_part(
            backend: ECRBackend,
            repository_name: str,
            upload_id: str,
            part_first_byte: int,
            part_last_byte: int,
            layer_part_blob: bytes,
            registry_id: str | None = None,
        ) -> dict[str, Any]:
            repository = backend._get_repository(repository_name, registry_id)
            return ext._upload_layer_part(
                repository, upload_id, int(part_first_byte), int(part_last_byte), layer_part_blob or b""
            )

        def complete_layer_upload(
            backend: ECRBackend,
            repository_name: str,
            upload_id: str,
            layer_digests: list[str],
            registry_id: str | None = None,
        ) -> dict[str, Any]:
            return ext._complete_layer_upload(backend, repository_name, upload_id, layer_digests, registry_id)

        def put_image(
            backend: ECRBackend,
            repository_name: str,
            image_manifest: str,
            image_tag: str,
            image_manifest_mediatype: str | None = None,
            digest: str | None = None,
        ) -> Any:
            computed = ext._check_manifest(backend, repository_name, image_manifest, digest)
            image = original_put_image(
                backend, repository_name, image_manifest, image_tag, image_manifest_mediatype, computed
            )
            ext._after_push(backend, repository_name, image, image_tag)
            return image

        def start_image_scan(
            backend: ECRBackend, registry_id: str, repository_name: str, image_id: dict[str, str]
        ) -> dict[str, Any]:
            return ext._start_image_scan(backend, registry_id, repository_name, image_id)

        def describe_image_scan_findings(
            backend: ECRBackend, registry_id: str, repository_name: str, image_id: dict[str, Any]
        ) -> dict[str, Any]:
            return ext._describe_image_scan_findings(backend, registry_id, repository_name, image_id)

        return {
            "upload_layer_part": upload_layer_part,
            "complete_layer_upload": complete_layer_upload,
            "put_image": put_image,
            "start_image_scan": start_image_scan,
            "describe_image_scan_findings": describe_image_scan_findings,
        }

    def _download_url_response(self) -> Callable[[ECRResponse], ActionResult]:
        ext = self

        # A plain function: moto dispatches only to functions defined on the class.
        def get_download_url_for_layer(response: ECRResponse) -> ActionResult:
            backend = response.ecr_backend
            result = ext._download_url(
                backend,
                response._get_param("repositoryName"),
                response._get_param("layerDigest"),
                response._get_param("registryId"),
            )
            return ActionResult(result)

        return get_download_url_for_layer

    def _authorization_response(self) -> Callable[[ECRResponse], ActionResult]:
        ext = self

        def get_authorization_token(response: ECRResponse) -> ActionResult:
            registry_ids = response._get_param("registryIds") or [response.current_account]
            access_key = _access_key(response.headers.get("Authorization"))
            return ActionResult(
                {
                    "authorizationData": [
                        ext.registries.issue_token(access_key, registry_id, response.region)
                        for registry_id in registry_ids
                    ]
                }
            )

        return get_authorization_token

    # ----------------------------------------------------------------- blobs

    def spooled(self, upload_id: str) -> int:
        """Bytes an upload holds so far."""
        with self._lock:
            spool = self._spools.get(upload_id)
            return spool.size if spool is not None else 0

    @contextmanager
    def appending(self, upload_id: str) -> Iterator[Callable[[bytes], None]]:
        """Append one part's bytes to an upload; the upload holds them only once the part has
        arrived whole (until then its size and hash are as before; a part cut short is dropped)."""
        spool = self._spool(upload_id)
        with spool.writing:
            size, hasher = spool.size, spool.hasher.copy()
            arrived = 0
            with spool.path.open("ab") as out:

                def append(piece: bytes) -> None:
                    nonlocal arrived
                    out.write(piece)
                    hasher.update(piece)
                    arrived += len(piece)

                try:
                    yield append
                except BaseException:
                    out.truncate(size)
                    raise
            spool.size, spool.hasher = size + arrived, hasher
            spool.part_sizes.append(arrived)

    def complete_upload(
        self, backend: ECRBackend, repository_name: str, upload_id: str, layer_digests: list[str]
    ) -> dict[str, Any]:
        """CompleteLayerUpload, for the registry endpoint's completing PUT."""
        return self._complete_layer_upload(backend, repository_name, upload_id, layer_digests, None)

    def discard_upload(self, upload_id: str) -> None:
        with self._lock:
            spool = self._spools.pop(upload_id, None)
        if spool is not None:
            spool.path.unlink(missing_ok=True)

    def _upload_layer_part(self, repository: Any, upload_id: str, first: int, last: int, blob: bytes) -> dict[str, Any]:
        """Append one part to the upload's spool file, in order, hashing as it goes."""
        repository_name = repository.name
        if upload_id not in repository.uploads:
            raise UploadNotFoundException(upload_id, repository_name, repository.registry_id)
        spool = self._spool(upload_id)
        if first != spool.size or last - first + 1 != len(blob):
            raise InvalidLayerPartException(repository.registry_id, repository_name, upload_id, spool.size - 1)
        with spool.path.open("ab") as out:
            out.write(blob)
        spool.hasher.update(blob)
        spool.size += len(blob)
        spool.part_sizes.append(len(blob))
        return {
            "registryId": repository.registry_id,
            "repositoryName": repository_name,
            "uploadId": upload_id,
            "lastByteReceived": spool.size - 1,
        }

    def _spool(self, upload_id: str) -> _Spool:
        with self._lock:
            if upload_id not in self._spools:
                self._spools[upload_id] = _Spool(path=self._dir("uploads") / upload_id)
            return self._spools[upload_id]

    def _complete_layer_upload(
        self,
        backend: ECRBackend,
        repository_name: str,
        upload_id: str,
        layer_digests: list[str],
        registry_id: str | None,
    ) -> dict[str, Any]:
        repository = backend._get_repository(repository_name, registry_id)
        if upload_id not in repository.uploads:
            raise UploadNotFoundException(upload_id, repository_name, repository.registry_id)
        with self._lock:
            spool = self._spools.pop(upload_id, None)
        # The sandbox ends the upload whatever the outcome: a retry starts a new upload.
        del repository.uploads[upload_id]
        if spool is None or spool.size == 0:
            raise EmptyUploadException(f"The layer upload with id '{upload_id}' does not contain any layer parts")
        try:
            digest = self._verify_upload(repository, spool, layer_digests or [])
            self._store(spool, digest)
        finally:
            spool.path.unlink(missing_ok=True)
        repository.layers[digest] = spool.size
        return {
            "registryId": repository.registry_id,
            "repositoryName": repository_name,
            "uploadId": upload_id,
            "layerDigest": digest,
        }

    @staticmethod
    def _verify_upload(repository: Any, spool: _Spool, declared: list[str]) -> str:
        """The uploaded blob's digest, if ECR would accept it into ``repository``."""
        if any(size < MIN_PART_SIZE for size in spool.part_sizes[:-1]):
            raise LayerPartTooSmallException(
                f"Layer parts must be at least {MIN_PART_SIZE} bytes in size (parts: {spool.part_sizes})"
            )
        digest = "sha256:" + str(spool.hasher.hexdigest())
        mismatched = [d for d in declared if d != digest]
        if mismatched:
            raise InvalidLayerException(
                f"The layer digest calculation performed by Amazon ECR upon receipt of the image layer "
                f"({digest}) does not match the digest specified ({', '.join(mismatched)})"
            )
        if digest in repository.layers:
            raise LayerAlreadyExistsException(
                f"Layer {digest} already exists in the repository with name '{repository.name}'"
            )
        return digest

    def _store(self, spool: _Spool, digest: str) -> None:
        target = self.blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            return
        os.replace(spool.path, target)

    def _dir(self, name: str) -> Path:
        if self._blob_dir is None:
            raise RuntimeError("EcrExtension is not installed")
        return self._blob_dir / name

    # ----------------------------------------------------------------- manifests

    def _check_manifest(
        self, backend: ECRBackend, repository_name: str, manifest_text: str, declared: str | None
    ) -> str:
        """Validate a manifest as ECR's PutImage does; returns its digest."""
        repository = backend._get_repository(repository_name)
        try:
            manifest = json.loads(manifest_text)
        except ValueError as exc:
            raise InvalidParameterException(
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'"
            ) from exc
        digest = manifest_digest(manifest_text)
        if declared and declared != digest:
            raise ImageDigestDoesNotMatchException(
                f"Invalid parameter at 'imageDigest' failed to satisfy constraint: "
                f"'The specified digest {declared} does not match the digest {digest} calculated for the image'"
            )
        if not isinstance(manifest, dict):
            return digest
        missing_blobs = [d for d in referenced_blobs(manifest) if d not in repository.layers]
        if missing_blobs:
            raise LayersNotFoundException(
                f"Layers with digests {missing_blobs} required for pushing image into repository with name "
                f"'{repository_name}' in registry with id '{repository.registry_id}' do not exist"
            )
        present = {image.get_image_digest() for image in repository.images}
        missing_images = [d for d in child_manifests(manifest) if d not in present]
        if missing_images:
            raise ReferencedImagesNotFoundException(
                f"The manifest list references images that do not exist in repository "
                f"'{repository_name}': {missing_images}"
            )
        return digest

    def _after_push(self, backend: ECRBackend, repository_name: str, image: Any, image_tag: str | None) -> None:
        repository = backend._get_repository(repository_name)
        if _scans_on_push(repository) and _is_scannable(image):
            self._record_scan(backend, repository_name, image.get_image_digest())
        if not self.emit_push_events:
            return
        try:
            emit_image_push_event(
                account_id=backend.account_id,
                region=backend.region_name,
                repository_name=repository_name,
                image_digest=image.get_image_digest(),
                image_tag=image_tag,
                when=self.clock.now(),
            )
        except Exception as exc:  # a push never fails because of its event
            LOG.warning("ECR push event not delivered: %s", exc)
            self.event_errors.append(f"{repository_name}@{image.get_image_digest()}: {exc!r}")

    # ----------------------------------------------------------------- downloads

    def _download_url(
        self, backend: ECRBackend, repository_name: str, digest: str, registry_id: str | None
    ) -> dict[str, str]:
        repository = backend._get_repository(repository_name, registry_id)
        path = self.blob_path(digest) if re.fullmatch(r"sha256:[0-9a-f]{64}", digest or "") else None
        if digest not in repository.layers or path is None or not path.exists():
            raise LayersNotFoundException(
                f"The specified layer {digest} could not be found in the repository with name "
                f"'{repository_name}' in the registry with id '{repository.registry_id}'"
            )
        if not any(digest in referenced_blobs(_manifest(image)) for image in repository.images):
            raise LayerInaccessibleException(
                f"The specified layer {digest} is not available because it is not associated with an image"
            )
        token = uuid.uuid4().hex
        with self._lock:
            self._urls[token] = digest
            if self._corrupt_armed and self._corrupt_digest is None:
                self._corrupt_digest = self._largest_layer(repository)
        return {"downloadUrl": f"{self.base_url}/blobs/{token}", "layerDigest": digest}

    def _largest_layer(self, repository: Any | None) -> str | None:
        """The largest stored layer of the repository's images (or of every repository's)."""
        sizes: dict[str, int] = {}
        repositories = [repository] if repository is not None else self._all_repositories()
        for repo in repositories:
            for image in repo.images:
                sizes.update(layer_sizes(_manifest(image)))
        stored = {d: s for d, s in sizes.items() if self._blob_dir and self.blob_path(d).exists()}
        return max(stored, key=lambda d: stored[d]) if stored else None

    @staticmethod
    def _all_repositories() -> Iterator[Any]:
        for _account, _region, backend in ecr_backends.iter_backends():
            yield from cast(ECRBackend, backend).repositories.values()

    def _serve(self, request: BaseHTTPRequestHandler, with_body: bool) -> None:
        """Answer one blob download like a pre-signed S3 GET (optionally one byte range)."""
        token = request.path.split("?", 1)[0].rsplit("/", 1)[-1]
        with self._lock:
            digest = self._urls.get(token)
            corrupt = digest is not None and digest == self._corrupt_digest
        path = self.blob_path(digest) if digest else None
        if path is None or not path.exists():
            body = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code></Error>"
            request.send_response(404)
            request.send_header("Content-Type", "application/xml")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body if with_body else b"")
            return
        size = path.stat().st_size
        start, end = _byte_range(request.headers.get("Range"), size)
        partial = (start, end) != (0, size - 1)
        request.send_response(206 if partial else 200)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("Content-Length", str(end - start + 1))
        if partial:
            request.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        request.end_headers()
        if with_body:
            with path.open("rb") as blob:
                try:
                    _copy_range(
                        blob,
                        request.wfile,
                        start,
                        end,
                        flip_at=size // 2 if corrupt else None,
                        rate=self.bytes_per_second,
                    )
                except (ConnectionResetError, BrokenPipeError):
                    # The reader had what it needed (an OS read stops at os-release), as S3 sees
                    # a client close a download early: not the server's error.
                    request.close_connection = True

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ----------------------------------------------------------------- scans

    def _start_image_scan(
        self, backend: ECRBackend, registry_id: str | None, repository_name: str, image_id: dict[str, str]
    ) -> dict[str, Any]:
        repository = backend._get_repository(repository_name, registry_id)
        image = repository._get_image(image_id.get("imageTag"), image_id.get("imageDigest"))
        if not _is_scannable(image):
            raise UnsupportedImageTypeException()
        key = (backend.account_id, backend.region_name, repository_name, image.get_image_digest())
        with self._lock:
            previous = self._scans.get(key)
        if previous and self.clock.seconds_since(previous.started_at) < SCAN_QUOTA_SECONDS:
            raise LimitExceededException()
        self._record_scan(backend, repository_name, image.get_image_digest())
        return {
            "registryId": repository.registry_id,
            "repositoryName": repository_name,
            "imageId": {"imageDigest": image.get_image_digest(), **_tag_of(image)},
            "imageScanStatus": {"status": "IN_PROGRESS"},
        }

    def _record_scan(self, backend: ECRBackend, repository_name: str, image_digest: str) -> None:
        outcome = self._scan_outcomes.get(repository_name, self.default_scan_outcome)
        key = (backend.account_id, backend.region_name, repository_name, image_digest)
        with self._lock:
            self._scans[key] = _Scan(started_at=self.clock.now(), outcome=outcome)

    def _describe_image_scan_findings(
        self, backend: ECRBackend, registry_id: str | None, repository_name: str, image_id: dict[str, Any]
    ) -> dict[str, Any]:
        repository = backend._get_repository(repository_name, registry_id)
        image = repository._get_image(image_id.get("imageTag"), image_id.get("imageDigest"))
        key = (backend.account_id, backend.region_name, repository_name, image.get_image_digest())
        with self._lock:
            scan = self._scans.get(key)
        if scan is None:
            raise ScanNotFoundException(
                image_id=json.dumps(image_id), repository_name=repository_name, registry_id=repository.registry_id
            )
        response: dict[str, Any] = {
            "registryId": repository.registry_id,
            "repositoryName": repository_name,
            "imageId": {"imageDigest": image.get_image_digest(), **_tag_of(image)},
        }
        completed_at = scan.started_at + dt.timedelta(seconds=scan.outcome.duration_seconds)
        if self.clock.now() < completed_at:
            response["imageScanStatus"] = {"status": "IN_PROGRESS"}
            return response
        response["imageScanStatus"] = _scan_status(scan.outcome)
        if scan.outcome.status == "COMPLETE":
            response["imageScanFindings"] = _findings(scan.outcome, completed_at)
        return response


# --------------------------------------------------------------------- helpers


def referenced_blobs(manifest: Mapping[str, Any]) -> list[str]:
    """Config and layer digests of an image manifest (foreign layers with URLs excluded)."""
    blobs: list[str] = []
    config = manifest.get("config")
    if isinstance(config, dict) and config.get("digest"):
        blobs.append(str(config["digest"]))
    for layer in manifest.get("layers") or []:
        if isinstance(layer, dict) and layer.get("digest") and not layer.get("urls"):
            blobs.append(str(layer["digest"]))
    return blobs


def layer_sizes(manifest: Mapping[str, Any]) -> dict[str, int]:
    """Layer digest -> declared size of an image manifest."""
    return {
        str(layer["digest"]): int(layer.get("size") or 0)
        for layer in manifest.get("layers") or []
        if isinstance(layer, dict) and layer.get("digest")
    }


def child_manifests(manifest: Mapping[str, Any]) -> list[str]:
    """Digests an index / manifest list points at."""
    return [
        str(child["digest"])
        for child in manifest.get("manifests") or []
        if isinstance(child, dict) and child.get("digest")
    ]


def _manifest(image: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(image.image_manifest)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _is_scannable(image: Any) -> bool:
    media_type = image.image_manifest_media_type or _manifest(image).get("mediaType")
    return media_type not in INDEX_TYPES and "manifests" not in _manifest(image)


def _scans_on_push(repository: Any) -> bool:
    config = repository.image_scanning_configuration
    return isinstance(config, dict) and bool(config.get("scanOnPush"))


def _tag_of(image: Any) -> dict[str, str]:
    return {"imageTag": image.image_tag} if image.image_tag else {}


def _scan_status(outcome: ScanOutcome) -> dict[str, str]:
    descriptions = {
        "COMPLETE": "The scan was completed successfully.",
        "FAILED": "The scan failed.",
    }
    description = outcome.description or descriptions.get(outcome.status)
    return {"status": outcome.status, **({"description": description} if description else {})}


def _findings(outcome: ScanOutcome, completed_at: dt.datetime) -> dict[str, Any]:
    """Synthetic findings matching the configured counts (only non-zero severities, as ECR)."""
    counts = {severity: n for severity, n in outcome.severity_counts.items() if n > 0}
    findings = [
        {
            "name": f"SANDBOX-{severity}-{index}",
            "description": "Synthetic finding configured in the sandbox scan outcome.",
            "uri": f"https://sandbox.invalid/findings/{severity.lower()}/{index}",
            "severity": severity,
            "attributes": [
                {"key": "package_name", "value": "sandbox-package"},
                {"key": "package_version", "value": "0.0.0"},
            ],
        }
        for severity, n in counts.items()
        for index in range(1, n + 1)
    ]
    return {
        "imageScanCompletedAt": completed_at,
        "vulnerabilitySourceUpdatedAt": completed_at,
        "findingSeverityCounts": counts,
        "findings": findings,
    }


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """The inclusive byte range a single-range ``Range`` header asks for (else the whole blob)."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not match or size == 0 or match.groups() == ("", ""):
        return 0, size - 1
    first, last = match.groups()
    if first == "":
        return max(0, size - int(last)), size - 1
    return int(first), min(size - 1, int(last)) if last else size - 1


def _copy_range(
    source: BinaryIO, sink: Any, start: int, end: int, flip_at: int | None, rate: float | None = None
) -> None:
    """Stream bytes start..end (inclusive) in chunks, flipping the byte at ``flip_at``, at
    most ``rate`` bytes a second."""
    source.seek(start)
    position = start
    began = time.monotonic()
    while position <= end:
        chunk = bytearray(source.read(min(_CHUNK, end - position + 1)))
        if not chunk:
            return
        if flip_at is not None and position <= flip_at < position + len(chunk):
            chunk[flip_at - position] ^= 0xFF
        sink.write(chunk)
        position += len(chunk)
        if rate:
            ahead = (position - start) / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)


def _access_key(authorization: str | None) -> str:
    """The access key that signed a request (SigV4 ``Credential=<key>/...``)."""
    match = re.search(r"Credential=([^/,\s]+)/", authorization or "")
    return match.group(1) if match else ""

"""ECR as an image registry: manifests, blob presence, blob download and upload.

The only module of the image domain that calls boto3. One ``EcrRegistry`` serves one region;
its client comes from ``mlpublish.aws.client`` (one per container) or is passed in, and so
are the HTTP pool that pushes blobs and the opener that downloads them, so tests can pass
fakes. Downloads use http.client directly: its response reads into the caller's buffer. Blobs go up
through ECR's registry endpoint (``registry_api``), not the ECR API's ``UploadLayerPart``.

Errors: throttling, 5xx and broken connections become TransientAwsError (the state machine
retries); a missing repository or image becomes ReleaseNotFound; any other refusal becomes
ImageCopyFailed naming the call, the repository and ECR's reason.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import os
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from mlpublish import aws
from mlpublish.errors import ImageCopyFailed, ReleaseNotFound, TransientAwsError
from mlpublish.images.manifests import (
    DOCKER_MANIFEST_LIST,
    DOCKER_V1_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    sha256_digest,
)
from mlpublish.images.registry_api import RegistryApi, UploadState, http_pool
from mlpublish.state import DOCKER_V2_MANIFEST

# Every manifest type ECR may hold. Without this list ECR converts on the fly (an index to
# one platform, OCI to Docker) and the bytes would not hash to the digest asked for.
# ``v1+prettyjws`` is left out: ECR documents ``v1+json`` as the schema 1 value.
ACCEPTED_MEDIA_TYPES = [DOCKER_V2_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX, DOCKER_V1_MANIFEST]

MANAGED_BY_TAG = {"Key": "managed-by", "Value": "mlpublish"}
CHECK_BATCH = 100  # BatchCheckLayerAvailability accepts at most 100 digests
READ_CHUNK = 1024 * 1024  # bytes read from the download per step
DOWNLOAD_TIMEOUT = 60.0  # seconds without a byte before a download counts as broken
# A token is valid for 12 hours; one is renewed this long before ECR says it expires.
TOKEN_RENEWAL = dt.timedelta(minutes=15)


class FetchedManifest(NamedTuple):
    raw: bytes
    media_type: str | None
    digest: str


class ImageRegistry(Protocol):
    """What the copy steps need from a registry (EcrRegistry in AWS, fakes in tests)."""

    def get_manifest(self, repository: str, reference: str, registry_id: str | None = None) -> FetchedManifest: ...

    def ensure_repository(self, name: str) -> str: ...

    def repository_uri(self, name: str) -> str: ...

    def missing_blobs(self, repository: str, digests: Iterable[str]) -> set[str]: ...

    def open_blob(
        self, repository: str, digest: str, registry_id: str | None = None, first_byte: int = 0
    ) -> AbstractContextManager[Iterator[bytes]]: ...

    def download(
        self, repository: str, digest: str, registry_id: str | None = None, first_byte: int = 0
    ) -> AbstractContextManager[BlobStream]: ...

    def uploads(self) -> BlobUploads: ...

    def put_manifest(self, repository: str, raw: bytes, media_type: str, tag: str | None = None) -> str: ...

    def tags_are_immutable(self, repository: str) -> bool: ...


class BlobStream(Protocol):
    """A blob download: ``readinto`` fills the caller's buffer, ``read`` returns new bytes."""

    status: int

    def readinto(self, buffer: memoryview) -> int: ...

    def read(self, amount: int) -> bytes: ...

    def close(self) -> None: ...


Opener = Callable[[str, Mapping[str, str]], BlobStream]


class BlobUploads(Protocol):
    """A registry's blob uploads (``RegistryApi`` on ECR's registry endpoint)."""

    def start_upload(self, repository: str) -> str: ...

    def upload_state(self, location: str) -> UploadState | None: ...

    def upload_chunk(
        self, location: str, first_byte: int, body: Iterable[bytes | memoryview], length: int
    ) -> UploadState: ...

    def complete_upload(self, location: str, digest: str) -> None: ...


class EcrRegistry:
    """ECR in one region."""

    def __init__(self, region: str, client: Any = None, http: Any = None, opener: Opener | None = None) -> None:
        self.region = region
        self._ecr = client if client is not None else aws.client("ecr", region)
        self._http = http if http is not None else http_pool()
        self._open: Opener = opener if opener is not None else _Download
        self._api: tuple[RegistryApi, dt.datetime] | None = None
        self._api_lock = threading.Lock()

    def get_manifest(self, repository: str, reference: str, registry_id: str | None = None) -> FetchedManifest:
        """The stored manifest bytes, exactly as pushed, by digest or tag."""
        where = self._where(repository, reference, registry_id)
        image_id = {"imageDigest": reference} if reference.startswith("sha256:") else {"imageTag": reference}
        with self._refusals("BatchGetImage", where):
            try:
                response = self._ecr.batch_get_image(
                    **_registry(registry_id),
                    repositoryName=repository,
                    imageIds=[image_id],
                    acceptedMediaTypes=ACCEPTED_MEDIA_TYPES,
                )
            except ClientError as exc:
                if aws.error_code(exc) == "RepositoryNotFoundException":
                    raise _not_found(where, "the repository does not exist") from exc
                raise
        images = response.get("images") or []
        if not images:
            failures = response.get("failures") or [{}]
            reason = f"{failures[0].get('failureCode', 'ImageNotFound')}: {failures[0].get('failureReason', '')}"
            raise _not_found(where, reason.strip(": "))
        image = images[0]
        return FetchedManifest(
            raw=str(image["imageManifest"]).encode("utf-8"),
            media_type=image.get("imageManifestMediaType"),
            digest=str(image.get("imageId", {}).get("imageDigest", "")),
        )

    def ensure_repository(self, name: str) -> str:
        """Create the repository if missing and return its URI; an existing one is left as is.

        Scan on push stays off: ECR allows one basic scan per image per 24 h, and the
        ScanImages stage starts the scan it waits for. Tags are immutable in what the pipeline
        creates: a version once published under a tag keeps it.
        """
        where = self._where(name)
        with self._refusals("CreateRepository", where):
            try:
                response = self._ecr.create_repository(
                    repositoryName=name,
                    tags=[MANAGED_BY_TAG],
                    imageScanningConfiguration={"scanOnPush": False},
                    imageTagMutability="IMMUTABLE",
                )
            except ClientError as exc:
                if aws.error_code(exc) != "RepositoryAlreadyExistsException":
                    raise
                return self.repository_uri(name)
        return str(response["repository"]["repositoryUri"])

    def repository_uri(self, name: str) -> str:
        where = self._where(name)
        with self._refusals("DescribeRepositories", where):
            try:
                response = self._ecr.describe_repositories(repositoryNames=[name])
            except ClientError as exc:
                if aws.error_code(exc) == "RepositoryNotFoundException":
                    raise ImageCopyFailed(
                        f"repository {where} does not exist; re-run the release to create it"
                    ) from exc
                raise
        return str(response["repositories"][0]["repositoryUri"])

    def missing_blobs(self, repository: str, digests: Iterable[str]) -> set[str]:
        """The digests not available in the repository (absent, unavailable or archived)."""
        unique = list(dict.fromkeys(digests))
        missing: set[str] = set()
        for start in range(0, len(unique), CHECK_BATCH):
            batch = unique[start : start + CHECK_BATCH]
            with self._refusals("BatchCheckLayerAvailability", self._where(repository)):
                response = self._ecr.batch_check_layer_availability(repositoryName=repository, layerDigests=batch)
            invalid = [f for f in response.get("failures", []) if f.get("failureCode") != "MissingLayerDigest"]
            if invalid:
                raise ImageCopyFailed(
                    f"ECR refused to check blobs in {self._where(repository)}",
                    reasons=[f"{f.get('layerDigest')}: {f.get('failureReason')}" for f in invalid],
                )
            available = {
                layer["layerDigest"]
                for layer in response.get("layers", [])
                if layer.get("layerAvailability") == "AVAILABLE"
            }
            missing.update(digest for digest in batch if digest not in available)
        return missing

    @contextmanager
    def open_blob(
        self, repository: str, digest: str, registry_id: str | None = None, first_byte: int = 0
    ) -> Iterator[Iterator[bytes]]:
        """Stream a blob's bytes from ``first_byte`` on, in chunks of READ_CHUNK (the last one
        shorter), as stored (no decoding)."""
        with self.download(repository, digest, registry_id, first_byte) as stream:
            yield _read_chunks(stream, self._where(repository, digest, registry_id))

    @contextmanager
    def download(
        self, repository: str, digest: str, registry_id: str | None = None, first_byte: int = 0
    ) -> Iterator[BlobStream]:
        """The blob's bytes from ``first_byte`` on as a stream (``readinto``: straight from the
        socket into the caller's buffer), from the URL GetDownloadUrlForLayer gives."""
        where = self._where(repository, digest, registry_id)
        with self._refusals("GetDownloadUrlForLayer", where):
            url = self._ecr.get_download_url_for_layer(
                **_registry(registry_id), repositoryName=repository, layerDigest=digest
            )["downloadUrl"]
        headers = {"Range": f"bytes={first_byte}-"} if first_byte else {}
        try:
            stream = self._open(url, headers)
        except (OSError, http.client.HTTPException) as exc:
            raise TransientAwsError(f"downloading {where} failed ({exc}); retrying") from exc
        try:
            if stream.status != (206 if first_byte else 200):
                raise _download_refused(where, stream.status)
            yield _Guarded(stream, where)
        finally:
            stream.close()

    def uploads(self) -> RegistryApi:
        """ECR's registry endpoint in this region, with a token from GetAuthorizationToken
        (renewed before it expires, for as long as this object is used)."""
        with self._api_lock:
            now = dt.datetime.now(dt.UTC)
            if self._api is None or self._api[1] - TOKEN_RENEWAL <= now:
                where = f"the registry endpoint (ECR {self.region})"
                with self._refusals("GetAuthorizationToken", where):
                    data = self._ecr.get_authorization_token()["authorizationData"][0]
                expires = data.get("expiresAt")
                if not isinstance(expires, dt.datetime) or expires.tzinfo is None:
                    expires = now + dt.timedelta(hours=1)
                _check_token(str(data["authorizationToken"]), where)
                api = RegistryApi(str(data["proxyEndpoint"]), str(data["authorizationToken"]), self._http)
                self._api = (api, expires)
            return self._api[0]

    def put_manifest(self, repository: str, raw: bytes, media_type: str, tag: str | None = None) -> str:
        """Store the manifest bytes as they are (ECR checks the digest); idempotent."""
        digest = sha256_digest(raw)
        where = self._where(repository, digest)
        request = {
            "repositoryName": repository,
            "imageManifest": raw.decode("utf-8"),
            "imageManifestMediaType": media_type,
            "imageDigest": digest,
        }
        if tag:
            request["imageTag"] = tag
        with self._refusals("PutImage", where):
            try:
                self._ecr.put_image(**request)
            except ClientError as exc:
                if aws.error_code(exc) not in (
                    "ImageAlreadyExistsException",
                    "ImageTagAlreadyExistsException",
                ):
                    raise
                self._require_existing(repository, digest, tag)
        return digest

    def tags_are_immutable(self, repository: str) -> bool:
        """Whether no tag in the repository can be moved to another image."""
        where = self._where(repository)
        with self._refusals("DescribeRepositories", where):
            found = self._ecr.describe_repositories(repositoryNames=[repository])["repositories"]
        return bool(found) and found[0].get("imageTagMutability") == "IMMUTABLE"

    def _require_existing(self, repository: str, digest: str, tag: str | None) -> None:
        """After "already exists": fine if this digest is there with this tag, else a conflict."""
        try:
            images = self._ecr.describe_images(repositoryName=repository, imageIds=[{"imageDigest": digest}]).get(
                "imageDetails", []
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ImageNotFoundException":
                raise
            images = []
        if images and (tag is None or tag in images[0].get("imageTags", [])):
            return
        raise ImageCopyFailed(
            f"tag {tag!r} in {self._where(repository)} already names a different image and the "
            "repository's tags are immutable. Publish under a new product version, or remove "
            "that image or make the repository's tags mutable."
        )

    def _where(self, repository: str, reference: str | None = None, registry_id: str | None = None) -> str:
        """E.g. ``repo@sha256:... (ECR us-east-1, account 123456789012)``."""
        ref = "" if not reference else (f"@{reference}" if reference.startswith("sha256:") else f":{reference}")
        account = f", account {registry_id}" if registry_id else ""
        return f"{repository}{ref} (ECR {self.region}{account})"

    @contextmanager
    def _refusals(self, action: str, where: str) -> Iterator[None]:
        try:
            with aws.transient_errors(f"ECR {action} on {where}"):
                yield
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", "")
            code = aws.error_code(exc)
            # Another account's repository is read only as its repository policy allows.
            policy = (
                " (a repository of another account must grant the stack's account this action in its repository policy)"
                if code.startswith("AccessDenied")
                else ""
            )
            raise ImageCopyFailed(
                f"ECR {action} refused {where}: {code}: {message}. "
                f"Check the pipeline role's ECR permissions and the repository{policy}, then re-run the release."
            ) from exc


def _registry(registry_id: str | None) -> dict[str, str]:
    return {"registryId": registry_id} if registry_id else {}


def _check_token(token: str, where: str) -> None:
    """An ECR token is base64 of ``AWS:<password>`` and goes into Basic auth as it is."""
    try:
        user = base64.b64decode(token, validate=True).split(b":", 1)[0]
    except ValueError as exc:
        raise ImageCopyFailed(f"GetAuthorizationToken for {where} returned a token that is not base64") from exc
    if user != b"AWS":
        raise ImageCopyFailed(f"GetAuthorizationToken for {where} returned a token for user {user!r}, not AWS")


def _read_chunks(stream: BlobStream, where: str) -> Iterator[bytes]:
    while chunk := stream.read(READ_CHUNK):
        yield chunk


class _Guarded:
    """A download whose broken connection is a TransientAwsError (the copy resumes or retries)."""

    def __init__(self, stream: BlobStream, where: str) -> None:
        self._stream, self._where = stream, where
        self.status = stream.status

    def readinto(self, buffer: memoryview) -> int:
        try:
            return self._stream.readinto(buffer)
        except (OSError, http.client.HTTPException) as exc:
            raise TransientAwsError(f"download of {self._where} was interrupted ({exc}); retrying") from exc

    def read(self, amount: int) -> bytes:
        try:
            return self._stream.read(amount)
        except (OSError, http.client.HTTPException) as exc:
            raise TransientAwsError(f"download of {self._where} was interrupted ({exc}); retrying") from exc

    def close(self) -> None:
        self._stream.close()


class _Download:
    """One GET over http.client: its response reads straight into a caller's buffer."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        parts = urlsplit(url)
        if parts.scheme == "https":
            self._connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=DOWNLOAD_TIMEOUT, context=_tls_context()
            )
        elif parts.scheme == "http":  # the sandbox's loopback stand-in for S3
            self._connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=DOWNLOAD_TIMEOUT)
        else:
            raise ImageCopyFailed(f"GetDownloadUrlForLayer returned a URL this copy cannot read: {parts.scheme}://")
        try:
            self._connection.request(
                "GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=dict(headers)
            )
            self._response = self._connection.getresponse()
        except BaseException:
            self._connection.close()
            raise
        self.status = self._response.status

    def readinto(self, buffer: memoryview) -> int:
        return self._response.readinto(buffer)

    def read(self, amount: int) -> bytes:
        return self._response.read(amount)

    def close(self) -> None:
        self._response.close()
        self._connection.close()


def _tls_context() -> ssl.SSLContext:
    """The CAs in AWS_CA_BUNDLE when set (as botocore and the registry pool), else the system's."""
    return _tls_context_for(os.environ.get("AWS_CA_BUNDLE") or None)


@cache
def _tls_context_for(ca_bundle: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle)


def _download_refused(where: str, status: int) -> Exception:
    if status >= 500 or status == 429:
        return TransientAwsError(f"download of {where} failed with HTTP {status}; retrying")
    return ImageCopyFailed(
        f"download of {where} was refused with HTTP {status}; check that the pipeline role may "
        "read the source repository (ecr:GetDownloadUrlForLayer) and re-run the release"
    )


def _not_found(where: str, reason: str) -> ReleaseNotFound:
    return ReleaseNotFound(
        f"image {where} was not found ({reason}). Push the image or fix the release's image URI, "
        "then start the release again."
    )

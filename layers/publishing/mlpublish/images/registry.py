"""ECR as an image registry: manifests, blob presence, blob download and upload.

The only module of the image domain that calls boto3. One ``EcrRegistry`` serves one region;
its client comes from ``mlpublish.aws.client`` (one per container) or is passed in, and so
is the HTTP pool used to download blobs, so tests can pass fakes.

Errors: throttling, 5xx and broken connections become TransientAwsError (the state machine
retries); a missing repository or image becomes ReleaseNotFound; any other refusal becomes
ImageCopyFailed naming the call, the repository and ECR's reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple, Protocol

import urllib3
from botocore.exceptions import ClientError

from mlpublish import aws
from mlpublish.errors import BlobDigestMismatch, ImageCopyFailed, ReleaseNotFound, TransientAwsError
from mlpublish.images.manifests import (
    DOCKER_MANIFEST_LIST,
    DOCKER_V1_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    sha256_digest,
)
from mlpublish.state import DOCKER_V2_MANIFEST

# Every manifest type ECR may hold. Without this list ECR converts on the fly (an index to
# one platform, OCI to Docker) and the bytes would not hash to the digest asked for.
# ``v1+prettyjws`` is left out: ECR documents ``v1+json`` as the schema 1 value.
ACCEPTED_MEDIA_TYPES = [DOCKER_V2_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX, DOCKER_V1_MANIFEST]

MANAGED_BY_TAG = {"Key": "managed-by", "Value": "mlpublish"}
CHECK_BATCH = 100  # BatchCheckLayerAvailability accepts at most 100 digests
DEFAULT_PART_SIZE = 10 * 1024 * 1024  # used only if InitiateLayerUpload omits partSize
MAX_PART_SIZE = 20 * 1024 * 1024  # LayerPartBlob's limit in the ECR API
READ_CHUNK = 1024 * 1024  # bytes read from the download per step

# One pool per container. Blob downloads are presigned S3 URLs (a loopback URL in the sandbox).
_HTTP = urllib3.PoolManager(
    maxsize=8,
    timeout=urllib3.Timeout(connect=10.0, read=60.0),
    retries=urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504)),
)


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
        self, repository: str, digest: str, registry_id: str | None = None
    ) -> AbstractContextManager[Iterator[bytes]]: ...

    def upload_blob(self, repository: str, digest: str, size: int, chunks: Iterable[bytes]) -> bool: ...

    def put_manifest(self, repository: str, raw: bytes, media_type: str, tag: str | None = None) -> str: ...

    def tags_are_immutable(self, repository: str) -> bool: ...


class EcrRegistry:
    """ECR in one region."""

    def __init__(self, region: str, client: Any = None, http: urllib3.PoolManager | None = None) -> None:
        self.region = region
        self._ecr = client if client is not None else aws.client("ecr", region)
        self._http = http if http is not None else _HTTP

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
    def open_blob(self, repository: str, digest: str, registry_id: str | None = None) -> Iterator[Iterator[bytes]]:
        """Stream a blob's bytes in chunks of at most READ_CHUNK, as stored (no decoding)."""
        where = self._where(repository, digest, registry_id)
        with self._refusals("GetDownloadUrlForLayer", where):
            url = self._ecr.get_download_url_for_layer(
                **_registry(registry_id), repositoryName=repository, layerDigest=digest
            )["downloadUrl"]
        try:
            response = self._http.request("GET", url, preload_content=False, decode_content=False)
        except urllib3.exceptions.HTTPError as exc:
            raise TransientAwsError(f"downloading {where} failed ({exc}); retrying") from exc
        try:
            if response.status != 200:
                raise _download_refused(where, response.status)
            yield _read_chunks(response, where)
        finally:
            # A half-read body must not go back to the pool: close the connection first.
            response.close()
            response.release_conn()

    def upload_blob(self, repository: str, digest: str, size: int, chunks: Iterable[bytes]) -> bool:
        """Upload a blob in parts of exactly ``partSize`` (the last one shorter), in order.

        The upload is completed only after ``chunks`` is exhausted without error and exactly
        ``size`` bytes went up; a caller that verifies the bytes raises from ``chunks`` to
        abandon it. Holds at most one part plus one chunk in memory. Returns False when ECR
        already had the blob (a concurrent copy won).
        """
        where = self._where(repository, digest)
        with self._refusals("InitiateLayerUpload", where):
            started = self._ecr.initiate_layer_upload(repositoryName=repository)
        upload_id = started["uploadId"]
        sent = 0
        for part in _parts(chunks, _part_size(started.get("partSize"))):
            with self._refusals("UploadLayerPart", where):
                self._ecr.upload_layer_part(
                    repositoryName=repository,
                    uploadId=upload_id,
                    partFirstByte=sent,
                    partLastByte=sent + len(part) - 1,
                    layerPartBlob=part,
                )
            sent += len(part)
        if sent != size:
            raise BlobDigestMismatch(
                f"{where}: {sent} bytes were read but the manifest says {size}; the upload was "
                "abandoned. Re-run the release; if it persists, push the source image again."
            )
        with self._refusals("CompleteLayerUpload", where):
            try:
                self._ecr.complete_layer_upload(repositoryName=repository, uploadId=upload_id, layerDigests=[digest])
            except ClientError as exc:
                if aws.error_code(exc) == "LayerAlreadyExistsException":
                    return False
                raise
        return True

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


def _part_size(advertised: object) -> int:
    if isinstance(advertised, int) and advertised > 0:
        return min(advertised, MAX_PART_SIZE)
    return DEFAULT_PART_SIZE


def _parts(chunks: Iterable[bytes], part_size: int) -> Iterator[bytes]:
    """Re-cut a stream of chunks into parts of exactly ``part_size`` (the last one shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= part_size:
            yield bytes(buffer[:part_size])
            del buffer[:part_size]
    if buffer:
        yield bytes(buffer)


def _read_chunks(response: Any, where: str) -> Iterator[bytes]:
    try:
        yield from response.stream(READ_CHUNK, decode_content=False)
    except urllib3.exceptions.HTTPError as exc:
        raise TransientAwsError(f"download of {where} was interrupted ({exc}); retrying") from exc


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

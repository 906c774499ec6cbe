"""Copying an image between ECR registries: plan, stream blobs, put the manifest.

The real ``EcrRegistry`` and copy steps run over an in-memory fake of the boto3 ECR client
and of the HTTP pool that downloads blobs and pushes them to the registry endpoint (Docker
Registry HTTP API v2). The fake is as strict as ECR where it matters: chunks must arrive
contiguously, a completed upload must hash to its digest, and a manifest is refused when
its digest is wrong or its blobs are missing.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
from botocore.exceptions import ClientError

from mlpublish.errors import (
    BlobDigestMismatch,
    ImageCopyFailed,
    ReleaseNotFound,
    SourceChanged,
    TransientAwsError,
    UnsupportedImage,
)
from mlpublish.images import manifests as m
from mlpublish.images.copy import BATCH_BLOBS, BATCH_BYTES, batches_of, copy_batch, copy_blob, plan_image, put_manifest
from mlpublish.images.registry import ACCEPTED_MEDIA_TYPES, EcrRegistry
from mlpublish.images.registry_api import MAX_PARTS, MiB, chunk_size_for
from mlpublish.release import ImageRef
from mlpublish.state import BatchCopied, BatchProgress, BlobCopied, BlobRef, CopyTarget, ImagePlan, UploadProgress

pytestmark = pytest.mark.unit

SOURCE_ACCOUNT = "111122223333"
DESTINATION_ACCOUNT = "111122223333"
SOURCE_REPOSITORY = "team/model"
DESTINATION_REPOSITORY = "mlpublish/model"
PART_SIZE = 1000
SLICE = 256  # bytes the fake network hands over per read


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client_error(code: str, operation: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": f"{code} (fake)"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


# --- fakes ----------------------------------------------------------------------------


@dataclass
class Part:
    first: int
    last: int
    size: int
    read_before: int  # bytes the download had delivered when this part was sent


@dataclass
class FakeRepository:
    uri: str
    tags: list[dict[str, str]]
    blobs: dict[str, bytes] = field(default_factory=dict)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # digest -> manifest, type, tags
    mutability: str = "MUTABLE"


class FakeEcr:
    """The boto3 ECR client calls EcrRegistry makes, in memory."""

    def __init__(self, account: str, region: str, part_size: int = PART_SIZE) -> None:
        self.account, self.region, self.part_size = account, region, part_size
        self.repositories: dict[str, FakeRepository] = {}
        self.uploads: dict[str, bytearray] = {}
        self.parts: list[Part] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.urls: dict[str, tuple[str, str]] = {}
        self.failures: dict[str, ClientError] = {}  # operation -> error to raise once
        self.read_counter: Callable[[], int] = lambda: 0

    def _call(self, operation: str, kwargs: dict[str, Any]) -> None:
        self.calls.append((operation, kwargs))
        if operation in self.failures:
            raise self.failures.pop(operation)

    def called(self, operation: str) -> list[dict[str, Any]]:
        return [kwargs for name, kwargs in self.calls if name == operation]

    def repository(self, name: str, operation: str) -> FakeRepository:
        if name not in self.repositories:
            raise client_error("RepositoryNotFoundException", operation)
        return self.repositories[name]

    # Test set-up helpers.
    def add_repository(self, name: str) -> FakeRepository:
        uri = f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{name}"
        return self.repositories.setdefault(name, FakeRepository(uri=uri, tags=[]))

    def push_blob(self, repository: str, data: bytes) -> BlobRef:
        self.add_repository(repository).blobs[sha(data)] = data
        return BlobRef(digest=sha(data), size=len(data), media_type="application/octet-stream")

    def push_manifest(self, repository: str, raw: bytes, media_type: str | None, tag: str | None = None) -> str:
        self.add_repository(repository).images[sha(raw)] = {
            "manifest": raw.decode(),
            "media_type": media_type,
            "tags": [tag] if tag else [],
        }
        return sha(raw)

    # The boto3 surface.
    def create_repository(self, **kwargs: Any) -> dict[str, Any]:
        self._call("CreateRepository", kwargs)
        name = kwargs["repositoryName"]
        if name in self.repositories:
            raise client_error("RepositoryAlreadyExistsException", "CreateRepository")
        repository = self.add_repository(name)
        repository.tags = kwargs.get("tags", [])
        repository.mutability = kwargs.get("imageTagMutability", "MUTABLE")
        return {"repository": {"repositoryName": name, "repositoryUri": repository.uri}}

    def describe_repositories(self, **kwargs: Any) -> dict[str, Any]:
        self._call("DescribeRepositories", kwargs)
        name = kwargs["repositoryNames"][0]
        repository = self.repository(name, "DescribeRepositories")
        return {"repositories": [{"repositoryUri": repository.uri, "imageTagMutability": repository.mutability}]}

    def batch_get_image(self, **kwargs: Any) -> dict[str, Any]:
        self._call("BatchGetImage", kwargs)
        repository = self.repository(kwargs["repositoryName"], "BatchGetImage")
        wanted = kwargs["imageIds"][0]
        for digest, image in repository.images.items():
            if wanted.get("imageDigest") == digest or wanted.get("imageTag") in image["tags"]:
                found = {"imageId": {"imageDigest": digest}, "imageManifest": image["manifest"]}
                if image["media_type"]:
                    found["imageManifestMediaType"] = image["media_type"]
                return {"images": [found], "failures": []}
        return {
            "images": [],
            "failures": [{"imageId": wanted, "failureCode": "ImageNotFound", "failureReason": "not found"}],
        }

    def batch_check_layer_availability(self, **kwargs: Any) -> dict[str, Any]:
        self._call("BatchCheckLayerAvailability", kwargs)
        digests = kwargs["layerDigests"]
        if len(digests) > 100:
            raise client_error("InvalidParameterException", "BatchCheckLayerAvailability")
        blobs = self.repository(kwargs["repositoryName"], "BatchCheckLayerAvailability").blobs
        return {
            "layers": [
                {"layerDigest": d, "layerAvailability": "AVAILABLE", "layerSize": len(blobs[d])}
                for d in digests
                if d in blobs
            ],
            "failures": [
                {"layerDigest": d, "failureCode": "MissingLayerDigest", "failureReason": "missing"}
                for d in digests
                if d not in blobs
            ],
        }

    def get_download_url_for_layer(self, **kwargs: Any) -> dict[str, Any]:
        self._call("GetDownloadUrlForLayer", kwargs)
        repository, digest = kwargs["repositoryName"], kwargs["layerDigest"]
        if digest not in self.repository(repository, "GetDownloadUrlForLayer").blobs:
            raise client_error("LayersNotFoundException", "GetDownloadUrlForLayer")
        url = f"https://layers.example/{len(self.urls)}"
        self.urls[url] = (repository, digest)
        return {"downloadUrl": url, "layerDigest": digest}

    def get_authorization_token(self, **kwargs: Any) -> dict[str, Any]:
        self._call("GetAuthorizationToken", kwargs)
        return {
            "authorizationData": [
                {
                    "authorizationToken": "QVdTOnBhc3N3b3Jk",  # AWS:password
                    "proxyEndpoint": self.endpoint,
                }
            ]
        }

    @property
    def endpoint(self) -> str:
        return f"https://{self.account}.dkr.ecr.{self.region}.amazonaws.com"

    # The registry endpoint (Docker Registry HTTP API v2), as FakeHttp routes it here.
    def registry(self, method: str, url: str, headers: dict[str, str], body: Any) -> FakeResponse:
        assert headers.get("Authorization") == "Basic QVdTOnBhc3N3b3Jk"
        path, _, query = url.removeprefix(self.endpoint).partition("?")
        name, _, tail = path.removeprefix("/v2/").partition("/blobs/")
        self._call(f"{method} {tail.split('/')[0]}", {"repositoryName": name})
        repository = self.repository(name, method)
        if method == "HEAD":
            return FakeResponse(None, b"", 200 if tail in repository.blobs else 404)
        if method == "POST":
            upload_id = f"upload-{len(self.uploads)}"
            self.uploads[upload_id] = bytearray()
            return FakeResponse(None, b"", 202, {"Location": f"/v2/{name}/blobs/uploads/{upload_id}", "Range": "0-0"})
        upload_id = tail.removeprefix("uploads/")
        if upload_id not in self.uploads:
            return FakeResponse(None, b'{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}', 404)
        received = self.uploads[upload_id]
        held = {"Location": f"/v2/{name}/blobs/uploads/{upload_id}?_state={len(received)}"}
        if method == "GET":
            return FakeResponse(None, b"", 204, held | {"Range": f"0-{max(len(received) - 1, 0)}"})
        if method == "PATCH":
            first, last = (int(n) for n in headers["Content-Range"].split("-"))
            data = b"".join(bytes(piece) for piece in body)
            assert len(data) == int(headers["Content-Length"]) == last - first + 1
            if first != len(received):
                return FakeResponse(None, b"", 416, {"Range": f"0-{len(received) - 1}"})
            self.parts.append(Part(first=first, last=last, size=len(data), read_before=self.read_counter()))
            received += data
            return FakeResponse(None, b"", 201, {**held, "Range": f"0-{len(received) - 1}"})
        assert method == "PUT"
        digest = parse_qs(query)["digest"][0]
        if sha(bytes(received)) != digest:
            return FakeResponse(None, b'{"errors":[{"code":"DIGEST_INVALID","message":"mismatch"}]}', 400)
        repository.blobs[digest] = bytes(self.uploads.pop(upload_id))
        return FakeResponse(None, b"", 201)

    def put_image(self, **kwargs: Any) -> dict[str, Any]:
        self._call("PutImage", kwargs)
        repository = self.repository(kwargs["repositoryName"], "PutImage")
        raw = kwargs["imageManifest"].encode()
        if sha(raw) != kwargs["imageDigest"]:
            raise client_error("ImageDigestDoesNotMatchException", "PutImage")
        parsed = m.parse_manifest(raw, kwargs["imageManifestMediaType"])
        if any(blob.digest not in repository.blobs for blob in m.blobs_of(parsed)):
            raise client_error("LayersNotFoundException", "PutImage")
        tag = kwargs.get("imageTag")
        existing = repository.images.get(sha(raw))
        if existing and (tag is None or tag in existing["tags"]):
            raise client_error("ImageAlreadyExistsException", "PutImage")
        self.push_manifest(kwargs["repositoryName"], raw, kwargs["imageManifestMediaType"], tag)
        return {"image": {"registryId": self.account, "imageId": {"imageDigest": sha(raw)}}}

    def describe_images(self, **kwargs: Any) -> dict[str, Any]:
        self._call("DescribeImages", kwargs)
        repository = self.repository(kwargs["repositoryName"], "DescribeImages")
        digest = kwargs["imageIds"][0]["imageDigest"]
        if digest not in repository.images:
            raise client_error("ImageNotFoundException", "DescribeImages")
        return {"imageDetails": [{"imageDigest": digest, "imageTags": repository.images[digest]["tags"]}]}


class FakeResponse:
    """A download (readinto/read, at most SLICE bytes a call, as a network hands them over) or
    a registry answer (status, headers, data)."""

    def __init__(self, http: FakeHttp | None, data: bytes, status: int, headers: dict[str, str] | None = None) -> None:
        self.http, self.data, self.status, self.headers = http, data, status, headers or {}
        self.closed = False
        self.reason = ""
        self._at = 0

    def readinto(self, buffer: memoryview) -> int:
        piece = self.read(len(buffer))
        buffer[: len(piece)] = piece
        return len(piece)

    def read(self, amount: int) -> bytes:
        piece = self.data[self._at : self._at + min(amount, SLICE)]
        self._at += len(piece)
        assert self.http is not None
        self.http.bytes_read += len(piece)
        return piece

    def close(self) -> None:
        self.closed = True


class FakeHttp:
    """Serves the download URLs a FakeEcr hands out (ECR's presigned S3 URLs, with Range) and
    the registry endpoints of the FakeEcrs it knows."""

    def __init__(self, ecr: FakeEcr, status: int = 200) -> None:
        self.ecr, self.status = ecr, status
        self.registries: list[FakeEcr] = []
        self.bytes_read = 0
        self.responses: list[FakeResponse] = []

    def request(self, method: str, url: str, **kwargs: Any) -> FakeResponse:
        [registry] = [registry for registry in self.registries if url.startswith(registry.endpoint + "/v2/")]
        return registry.registry(method, url, kwargs.get("headers") or {}, kwargs.get("body"))

    def open(self, url: str, headers: Mapping[str, str]) -> FakeResponse:
        repository, digest = self.ecr.urls[url]
        first = int(headers.get("Range", "bytes=0-").removeprefix("bytes=").rstrip("-") or 0)
        status = self.status if self.status != 200 or not first else 206
        response = FakeResponse(self, self.ecr.repositories[repository].blobs[digest][first:], status)
        self.responses.append(response)
        return response


@dataclass
class World:
    source_ecr: FakeEcr
    destination_ecr: FakeEcr
    http: FakeHttp
    source: EcrRegistry
    destination: EcrRegistry


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mlpublish.images.copy.RETRY_SECONDS", 0.0)


@pytest.fixture
def world() -> World:
    source_ecr = FakeEcr(SOURCE_ACCOUNT, "eu-west-1")
    destination_ecr = FakeEcr(DESTINATION_ACCOUNT, "us-east-1")
    http = FakeHttp(source_ecr)
    http.registries.append(destination_ecr)
    destination_ecr.read_counter = lambda: http.bytes_read
    return World(
        source_ecr=source_ecr,
        destination_ecr=destination_ecr,
        http=http,
        source=EcrRegistry("eu-west-1", client=source_ecr, http=http, opener=http.open),
        destination=EcrRegistry("us-east-1", client=destination_ecr, http=http),
    )


def copy_through(
    world: World, blob: BlobRef, chunk_size: int = PART_SIZE, target: CopyTarget | None = None
) -> list[BlobCopied]:
    """Copy a blob as the state machine does: CopyBlob again with its progress until done."""
    results = [
        copy_blob(
            target or target_for("sha256:" + "0" * 64), blob, world.source, world.destination, chunk_size=chunk_size
        )
    ]
    while not results[-1].done:
        results.append(
            copy_blob(
                target or target_for("sha256:" + "0" * 64),
                blob,
                world.source,
                world.destination,
                progress=results[-1].progress,
                chunk_size=chunk_size,
            )
        )
    return results


# --- images in the fake source ----------------------------------------------------------


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def push_image(
    ecr: FakeEcr, layer_sizes: tuple[int, ...] = (5500, 300), oci: bool = True, layer_type: str | None = None
) -> tuple[str, list[BlobRef]]:
    """Push a config and layers plus a single-platform manifest; return its digest and blobs."""
    config = ecr.push_blob(SOURCE_REPOSITORY, json.dumps({"architecture": "amd64", "os": "linux"}).encode())
    layers = [ecr.push_blob(SOURCE_REPOSITORY, payload(size, seed)) for seed, size in enumerate(layer_sizes)]
    config_type, default_layer_type, media_type = (
        (m.OCI_CONFIG, m.OCI_LAYER_GZIP, m.OCI_MANIFEST)
        if oci
        else (m.DOCKER_CONFIG, m.DOCKER_LAYER_GZIP, m.DOCKER_V2_MANIFEST)
    )
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": config.digest, "size": config.size},
        "layers": [
            {"mediaType": layer_type or default_layer_type, "digest": blob.digest, "size": blob.size} for blob in layers
        ],
    }
    raw = json.dumps(document, indent=2).encode()
    return ecr.push_manifest(SOURCE_REPOSITORY, raw, media_type, tag="1.0"), [config, *layers]


def push_index(ecr: FakeEcr, amd64_digest: str, amd64_size: int) -> str:
    """An index as ``docker buildx build --push`` makes it: image plus provenance attestation."""
    attestation = {
        "mediaType": m.OCI_MANIFEST,
        "digest": "sha256:" + "e" * 64,
        "size": 840,
        "platform": {"os": "unknown", "architecture": "unknown"},
        "annotations": {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": amd64_digest,
        },
    }
    image = {
        "mediaType": m.OCI_MANIFEST,
        "digest": amd64_digest,
        "size": amd64_size,
        "platform": {"os": "linux", "architecture": "amd64"},
    }
    raw = json.dumps({"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": [attestation, image]}).encode()
    return ecr.push_manifest(SOURCE_REPOSITORY, raw, m.OCI_INDEX, tag="1.0")


def target_for(digest: str, tag: str | None = "1.0") -> CopyTarget:
    source = ImageRef(
        registry_id=SOURCE_ACCOUNT, region="eu-west-1", repository=SOURCE_REPOSITORY, tag=tag, digest=digest
    )
    return CopyTarget(
        container="model",
        source=source,
        platform="linux/amd64",
        destination_region="us-east-1",
        destination_repository=DESTINATION_REPOSITORY,
    )


def stored_size(ecr: FakeEcr, digest: str) -> int:
    return len(ecr.repositories[SOURCE_REPOSITORY].images[digest]["manifest"].encode())


# --- copy_blob ----------------------------------------------------------------------------


def test_given_a_blob_when_copied_then_it_is_pushed_in_order_in_chunks_across_invocations(world: World) -> None:
    world.destination_ecr.add_repository(DESTINATION_REPOSITORY)
    blob = world.source_ecr.push_blob(SOURCE_REPOSITORY, payload(5500, seed=1))

    results = copy_through(world, blob)

    parts = world.destination_ecr.parts
    assert [(part.first, part.size) for part in parts] == [
        (0, 1000),
        (1000, 1000),
        (2000, 1000),
        (3000, 1000),
        (4000, 1000),
        (5000, 500),
    ]
    assert world.destination_ecr.repositories[DESTINATION_REPOSITORY].blobs[blob.digest] == payload(5500, seed=1)
    # A new upload of a long blob hands its progress over after one chunk, then goes on.
    assert [result.done for result in results] == [False, True]
    assert results[0].progress == UploadProgress(location=results[0].progress.location, offset=1000)
    assert results[-1] == BlobCopied(digest=blob.digest, bytes_copied=5500, skipped=False)


def test_given_a_blob_when_copied_then_each_chunk_streams_from_the_download_without_a_buffer(world: World) -> None:
    world.destination_ecr.add_repository(DESTINATION_REPOSITORY)
    blob = world.source_ecr.push_blob(SOURCE_REPOSITORY, payload(5500, seed=2))

    copy_through(world, blob)

    # When a chunk has gone up, the download is ahead of it by less than one network read.
    read_ahead = [part.read_before - (part.last + 1) for part in world.destination_ecr.parts]
    assert max(read_ahead) < SLICE
    assert all(response.closed for response in world.http.responses)


def test_given_little_time_left_when_copying_then_progress_is_returned_and_the_next_call_resumes_from_it(
    world: World,
) -> None:
    world.destination_ecr.add_repository(DESTINATION_REPOSITORY)
    blob = world.source_ecr.push_blob(SOURCE_REPOSITORY, payload(3500, seed=3))
    times = iter([60_000, 60_000, 0])

    first = copy_blob(
        target_for("sha256:" + "0" * 64),
        blob,
        world.source,
        world.destination,
        remaining_ms=lambda: next(times),
        chunk_size=PART_SIZE,
    )
    assert first.done is False
    assert first.progress is not None
    assert first.progress.offset == 3000
    read = world.http.bytes_read
    last = copy_blob(
        target_for("sha256:" + "0" * 64),
        blob,
        world.source,
        world.destination,
        progress=first.progress,
        chunk_size=PART_SIZE,
    )

    assert last.done is True
    assert world.http.bytes_read - read == 500, "the resumed download starts at the next byte"
    assert [part.first for part in world.destination_ecr.parts] == [0, 1000, 2000, 3000]


def test_given_chunks_acknowledged_after_the_last_progress_when_resumed_then_they_are_not_sent_again(
    world: World,
) -> None:
    world.destination_ecr.add_repository(DESTINATION_REPOSITORY)
    blob = world.source_ecr.push_blob(SOURCE_REPOSITORY, payload(5500, seed=4))
    first = copy_blob(target_for("sha256:" + "0" * 64), blob, world.source, world.destination, chunk_size=PART_SIZE)
    assert first.progress is not None
    # A worker then pushed two more chunks and died before returning.
    upload_id = first.progress.location.split("/")[-1].split("?")[0]
    world.destination_ecr.uploads[upload_id] += payload(5500, seed=4)[1000:3000]

    last = copy_blob(
        target_for("sha256:" + "0" * 64),
        blob,
        world.source,
        world.destination,
        progress=first.progress,
        chunk_size=PART_SIZE,
    )

    assert last.done is True
    assert [part.first for part in world.destination_ecr.parts] == [0, 3000, 4000, 5000]
    assert world.destination_ecr.repositories[DESTINATION_REPOSITORY].blobs[blob.digest] == payload(5500, seed=4)


def test_given_a_throttled_chunk_when_copying_then_it_is_retried_from_what_the_registry_holds(world: World) -> None:
    world.destination_ecr.add_repository(DESTINATION_REPOSITORY)
    blob = world.source_ecr.push_blob(SOURCE_REPOSITORY, payload(3500, seed=9))
    registry = world.destination_ecr.registry
    patches = 0

    def throttling(method: str, url: str, headers: dict[str, str], body: Any) -> FakeResponse:
        nonlocal patches
        if method == "PATCH":
            patches += 1
            if patches == 2:
                return FakeResponse(None, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}', 429)
        return registry(method, url, headers, body)

    world.destination_ecr.registry = throttling  # type: ignore[method-assign]

    [result] = copy_through(world, blob)

    assert result.done is True
    assert [part.first for part in world.destination_ecr.parts] == [0, 1000, 2000, 3000]
    assert world.destination_ecr.repositories[DESTINATION_REPOSITORY].blobs[blob.digest] == payload(3500, seed=9)


def test_given_a_corrupt_byte_when_copied_then_the_registry_refuses_the_digest_and_nothing_is_stored(
    world: World,
) -> None:
    world.destination_ecr.add_repository(DESTINATION_REPOSITORY)
    blob = world.source_ecr.push_blob(SOURCE_REPOSITORY, payload(3500, seed=4))
    corrupt = bytearray(payload(3500, seed=4))
    corrupt[2321] ^= 0x01
    world.source_ecr.repositories[SOURCE_REPOSITORY].blobs[blob.digest] = bytes(corrupt)

    with pytest.raises(BlobDigestMismatch) as caught:
        copy_through(world, blob)

    message = str(caught.value)
    assert blob.digest in message
    assert "DIGEST_INVALID" in message
    assert SOURCE_REPOSITORY in message
    assert blob.digest not in world.destination_ecr.repositories[DESTINATION_REPOSITORY].blobs


@pytest.mark.parametrize("served_size", [2999, 3001])
def test_given_a_blob_of_the_wrong_length_when_copied_then_digest_mismatch_is_raised_before_completing(
    world: World, served_size: int
) -> None:
    world.destination_ecr.add_repository(DESTINATION_REPOSITORY)
    declared = world.source_ecr.push_blob(SOURCE_REPOSITORY, payload(3000, seed=5))
    world.source_ecr.repositories[SOURCE_REPOSITORY].blobs[declared.digest] = payload(served_size, seed=5)

    with pytest.raises(BlobDigestMismatch, match="3000"):
        copy_through(world, declared)

    assert world.destination_ecr.called("PUT uploads") == []
    assert sum(part.size for part in world.destination_ecr.parts) <= 3000


def test_given_the_blob_already_in_the_destination_when_copied_then_it_is_skipped_without_downloading(
    world: World,
) -> None:
    blob = world.source_ecr.push_blob(SOURCE_REPOSITORY, payload(700, seed=6))
    world.destination_ecr.push_blob(DESTINATION_REPOSITORY, payload(700, seed=6))

    result = copy_blob(target_for("sha256:" + "0" * 64), blob, world.source, world.destination)

    assert result == BlobCopied(digest=blob.digest, bytes_copied=0, skipped=True)
    assert world.source_ecr.called("GetDownloadUrlForLayer") == []
    assert world.destination_ecr.called("POST uploads") == []


def test_given_an_upload_the_registry_forgot_and_the_blob_stored_meanwhile_when_resumed_then_it_is_skipped(
    world: World,
) -> None:
    blob = world.source_ecr.push_blob(SOURCE_REPOSITORY, payload(700, seed=7))
    world.destination_ecr.push_blob(DESTINATION_REPOSITORY, payload(700, seed=7))
    gone = UploadProgress(location=world.destination_ecr.endpoint + "/v2/x/blobs/uploads/gone", offset=0)
    world.destination_ecr.add_repository("x")

    result = copy_blob(target_for("sha256:" + "0" * 64), blob, world.source, world.destination, progress=gone)

    assert result.skipped is True


@pytest.mark.parametrize(("status", "error"), [(403, ImageCopyFailed), (503, TransientAwsError)])
def test_given_a_refused_download_when_copied_then_it_is_reported_and_nothing_is_uploaded(
    world: World, status: int, error: type[Exception]
) -> None:
    world.http.status = status
    world.destination_ecr.add_repository(DESTINATION_REPOSITORY)
    blob = world.source_ecr.push_blob(SOURCE_REPOSITORY, payload(700, seed=8))

    with pytest.raises(error, match=f"HTTP {status}"):
        copy_blob(target_for("sha256:" + "0" * 64), blob, world.source, world.destination)

    assert world.destination_ecr.called("POST uploads") == []


def test_given_a_layer_over_4200_chunks_when_planned_then_chunks_grow_in_whole_mib_to_fit() -> None:
    assert chunk_size_for(100 * MiB) == 10 * MiB
    assert chunk_size_for(42_000 * MiB) == 10 * MiB
    grown = chunk_size_for(52_000 * MiB)
    assert grown % MiB == 0
    assert 52_000 * MiB / grown <= MAX_PARTS


# --- plan_image ---------------------------------------------------------------------------


def test_given_a_buildx_index_when_planned_then_the_platform_is_selected_and_oci_converted_to_docker(
    world: World,
) -> None:
    child_digest, blobs = push_image(world.source_ecr)
    index_digest = push_index(world.source_ecr, child_digest, stored_size(world.source_ecr, child_digest))
    world.destination_ecr.push_blob(
        DESTINATION_REPOSITORY, json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    )

    plan = plan_image(target_for(index_digest), world.source, world.destination)

    assert plan.source_media_type == m.OCI_INDEX
    assert plan.selected_digest == child_digest
    assert plan.conversion == "oci-to-docker"
    assert plan.published_digest not in (child_digest, index_digest)
    assert (plan.blobs, plan.blobs_to_copy) == (len(blobs), len(blobs) - 1)
    assert plan.bytes_to_copy == sum(blob.size for blob in blobs[1:])
    assert plan.batches == [0]


def test_given_a_docker_v2_image_when_planned_then_its_own_digest_is_published(world: World) -> None:
    digest, blobs = push_image(world.source_ecr, oci=False)

    plan = plan_image(target_for(digest), world.source, world.destination)

    assert (plan.source_media_type, plan.conversion) == (m.DOCKER_V2_MANIFEST, "none")
    assert plan.selected_digest == plan.published_digest == digest
    assert (plan.blobs, plan.blobs_to_copy, plan.bytes_to_copy) == (len(blobs), len(blobs), sum(b.size for b in blobs))


def test_given_no_destination_repository_when_planned_twice_then_it_is_created_once_tagged_as_managed(
    world: World,
) -> None:
    digest, _ = push_image(world.source_ecr)

    plan_image(target_for(digest), world.source, world.destination)
    plan_image(target_for(digest), world.source, world.destination)

    repository = world.destination_ecr.repositories[DESTINATION_REPOSITORY]
    assert {"Key": "managed-by", "Value": "mlpublish"} in repository.tags
    assert world.destination_ecr.called("CreateRepository")[0]["imageScanningConfiguration"] == {"scanOnPush": False}


def test_given_a_pinned_image_when_planned_then_its_manifest_is_fetched_accepting_every_manifest_type(
    world: World,
) -> None:
    digest, _ = push_image(world.source_ecr)

    plan_image(target_for(digest), world.source, world.destination)

    request = world.source_ecr.called("BatchGetImage")[0]
    assert set(request["acceptedMediaTypes"]) >= {
        m.DOCKER_V2_MANIFEST,
        m.DOCKER_MANIFEST_LIST,
        m.OCI_MANIFEST,
        m.OCI_INDEX,
    }
    assert request["imageIds"] == [{"imageDigest": digest}]
    assert request["registryId"] == SOURCE_ACCOUNT
    assert request["acceptedMediaTypes"] == ACCEPTED_MEDIA_TYPES


def test_given_a_manifest_not_hashing_to_the_pinned_digest_when_planned_then_it_is_rejected_before_writing(
    world: World,
) -> None:
    digest, _ = push_image(world.source_ecr)
    image = world.source_ecr.repositories[SOURCE_REPOSITORY].images[digest]
    image["manifest"] = image["manifest"].replace('"size": 300', '"size": 301')

    with pytest.raises(BlobDigestMismatch, match=digest):
        plan_image(target_for(digest), world.source, world.destination)

    assert world.destination_ecr.calls == []


def test_given_an_index_entry_that_does_not_match_its_manifest_when_planned_then_it_is_rejected(world: World) -> None:
    child_digest, _ = push_image(world.source_ecr)
    index_digest = push_index(world.source_ecr, child_digest, 12)

    with pytest.raises(BlobDigestMismatch, match="12"):
        plan_image(target_for(index_digest), world.source, world.destination)


def test_given_an_unsupported_image_when_planned_then_it_is_rejected_before_creating_anything(world: World) -> None:
    digest, _ = push_image(world.source_ecr, layer_type=m.OCI_LAYER_ZSTD)

    with pytest.raises(UnsupportedImage, match="zstd"):
        plan_image(target_for(digest), world.source, world.destination)

    assert world.destination_ecr.calls == []


def test_given_an_image_that_is_gone_when_planned_then_it_is_reported_not_found(world: World) -> None:
    world.source_ecr.add_repository(SOURCE_REPOSITORY)

    with pytest.raises(ReleaseNotFound, match="ImageNotFound"):
        plan_image(target_for("sha256:" + "9" * 64), world.source, world.destination)


# --- batches: small blobs share an invocation --------------------------------------------


def refs(*sizes: int) -> list[BlobRef]:
    return [
        BlobRef(digest=f"sha256:{index:064x}", size=size, media_type=m.DOCKER_LAYER_GZIP)
        for index, size in enumerate(sizes)
    ]


def test_given_many_small_blobs_and_a_large_one_then_batches_hold_at_most_64_blobs_and_the_large_blob_is_alone() -> (
    None
):
    blobs = refs(*[MiB] * 100, BATCH_BYTES + 1, *[MiB] * 30)

    batches = batches_of(blobs)

    assert [len(batch) for batch in batches] == [BATCH_BLOBS, 36, 1, 30]
    assert batches[2] == [blobs[100]]
    assert [blob for batch in batches for blob in batch] == blobs  # every blob once, in the manifest's order
    assert batches_of(list(blobs)) == batches  # the same blobs always make the same batches


def test_given_blobs_of_100_mib_then_a_batch_holds_no_more_than_its_bytes() -> None:
    assert [len(batch) for batch in batches_of(refs(*[100 * MiB] * 5))] == [2, 2, 1]


def countdown(starts: int, then: Callable[[], None] | None = None) -> Callable[[], int]:
    """A Lambda's remaining time that covers ``starts`` more blob starts, then runs out (and runs ``then``)."""
    calls = iter(range(10**6))

    def remaining() -> int:
        if next(calls) < starts:
            return 900_000
        if then is not None:
            then()
            return 900_000
        return 0

    return remaining


def test_given_a_batch_and_time_for_part_of_it_then_the_next_invocation_goes_on_and_reads_no_blob_twice(
    world: World,
) -> None:
    digest, blobs = push_image(world.source_ecr, layer_sizes=(300,) * 10)
    plan = plan_image(target_for(digest), world.source, world.destination)
    assert plan.batches == [0]

    first = copy_batch(
        plan.target, plan.published_digest, 0, world.source, world.destination, remaining_ms=countdown(3)
    )
    read = world.http.bytes_read
    last = copy_batch(plan.target, plan.published_digest, 0, world.source, world.destination, progress=first.progress)

    assert first.done is False
    assert first.progress == BatchProgress(blob=4, blobs_copied=4, bytes_copied=sum(b.size for b in blobs[:4]))
    assert read == sum(blob.size for blob in blobs[:4])
    assert world.http.bytes_read == sum(blob.size for blob in blobs)
    assert (last.done, last.blobs_copied, last.blobs_skipped, last.bytes_copied) == (
        True,
        len(blobs),
        0,
        sum(blob.size for blob in blobs),
    )
    assert last.progress is None


def test_given_a_batch_with_blobs_already_there_then_they_are_counted_skipped_and_not_read(world: World) -> None:
    digest, blobs = push_image(world.source_ecr, layer_sizes=(300, 400, 500))
    plan = plan_image(target_for(digest), world.source, world.destination)
    copy_blob(plan.target, blobs[1], world.source, world.destination)
    read = world.http.bytes_read

    result = copy_batch(plan.target, plan.published_digest, 0, world.source, world.destination)

    assert (result.blobs_copied, result.blobs_skipped) == (3, 1)
    assert result.bytes_copied == world.http.bytes_read - read == sum(b.size for b in blobs) - blobs[1].size


def test_given_a_throttled_registry_after_some_blobs_then_the_batch_hands_over_what_it_did(world: World) -> None:
    digest, blobs = push_image(world.source_ecr, layer_sizes=(300,) * 4)
    plan = plan_image(target_for(digest), world.source, world.destination)

    def throttle() -> None:
        world.http.status = 503

    result = copy_batch(
        plan.target, plan.published_digest, 0, world.source, world.destination, remaining_ms=countdown(2, throttle)
    )

    # Blobs 0-2 went up; blob 3's download failed past the retries: the counts are kept, not lost.
    assert result.done is False
    assert result.progress == BatchProgress(blob=3, blobs_copied=3, bytes_copied=sum(b.size for b in blobs[:3]))


def test_given_a_throttled_registry_before_any_blob_then_the_error_goes_to_the_state_machine(world: World) -> None:
    digest, _ = push_image(world.source_ecr)
    plan = plan_image(target_for(digest), world.source, world.destination)
    world.http.status = 503

    with pytest.raises(TransientAwsError):
        copy_batch(plan.target, plan.published_digest, 0, world.source, world.destination)


def test_given_a_source_changed_since_planned_when_a_batch_is_copied_then_it_is_refused(world: World) -> None:
    digest, _ = push_image(world.source_ecr)
    plan = plan_image(target_for(digest), world.source, world.destination)

    with pytest.raises(SourceChanged, match="was planned"):
        copy_batch(plan.target, "sha256:" + "f" * 64, 0, world.source, world.destination)

    assert world.destination_ecr.called("POST uploads") == []


def test_given_a_batch_number_the_manifest_does_not_have_then_it_is_refused(world: World) -> None:
    digest, _ = push_image(world.source_ecr)
    plan = plan_image(target_for(digest), world.source, world.destination)

    with pytest.raises(ImageCopyFailed, match=r"batch 1 of .* does not exist: the manifest.s 3 blobs make 1 batch"):
        copy_batch(plan.target, plan.published_digest, 1, world.source, world.destination)


# --- put_manifest and the whole copy -----------------------------------------------------


def copy_all(world: World, plan: ImagePlan) -> list[BatchCopied]:
    """Each of the plan's batches, as the state machine copies it: again with its progress until done."""
    results = []
    for batch in plan.batches:
        result = copy_batch(plan.target, plan.published_digest, batch, world.source, world.destination)
        while not result.done:
            result = copy_batch(
                plan.target, plan.published_digest, batch, world.source, world.destination, progress=result.progress
            )
        results.append(result)
    return results


def test_given_an_oci_index_when_copied_then_it_is_published_as_a_docker_v2_image_over_identical_blobs(
    world: World,
) -> None:
    child_digest, blobs = push_image(world.source_ecr)
    index_digest = push_index(world.source_ecr, child_digest, stored_size(world.source_ecr, child_digest))
    world.destination_ecr.push_blob(
        DESTINATION_REPOSITORY, world.source_ecr.repositories[SOURCE_REPOSITORY].blobs[blobs[0].digest]
    )
    plan = plan_image(target_for(index_digest), world.source, world.destination)
    copied = copy_all(world, plan)

    published = put_manifest(plan.target, plan.published_digest, world.source, world.destination, copied)

    destination = world.destination_ecr.repositories[DESTINATION_REPOSITORY]
    stored = destination.images[plan.published_digest]
    assert stored["media_type"] == m.DOCKER_V2_MANIFEST
    assert stored["tags"] == [f"mlpublish-{plan.published_digest[7:19]}"]  # a repository the seller made
    assert json.loads(stored["manifest"])["mediaType"] == m.DOCKER_V2_MANIFEST
    for blob in blobs:
        assert destination.blobs[blob.digest] == world.source_ecr.repositories[SOURCE_REPOSITORY].blobs[blob.digest]
    assert published.image_uri == (
        f"{DESTINATION_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{DESTINATION_REPOSITORY}@{plan.published_digest}"
    )
    assert (published.source_digest, published.selected_digest) == (index_digest, child_digest)
    assert (published.blobs_copied, published.blobs_skipped) == (2, 1)
    assert published.bytes_copied == blobs[1].size + blobs[2].size
    assert published.conversion == "oci-to-docker"


def test_given_a_docker_v2_image_when_copied_then_its_manifest_is_published_byte_exact(world: World) -> None:
    digest, _ = push_image(world.source_ecr, oci=False)
    plan = plan_image(target_for(digest), world.source, world.destination)
    copied = copy_all(world, plan)

    published = put_manifest(plan.target, plan.published_digest, world.source, world.destination, copied)

    source_manifest = world.source_ecr.repositories[SOURCE_REPOSITORY].images[digest]["manifest"]
    destination_manifest = world.destination_ecr.repositories[DESTINATION_REPOSITORY].images[digest]["manifest"]
    assert destination_manifest == source_manifest
    assert published.digest == digest


def test_given_a_published_manifest_when_put_again_then_the_result_is_unchanged(world: World) -> None:
    digest, _ = push_image(world.source_ecr)
    plan = plan_image(target_for(digest), world.source, world.destination)
    copied = copy_all(world, plan)
    first = put_manifest(plan.target, plan.published_digest, world.source, world.destination, copied)

    again = put_manifest(plan.target, plan.published_digest, world.source, world.destination, copied)

    assert again == first


def test_given_a_repository_the_pipeline_creates_when_published_then_tags_are_immutable_and_the_source_tag_is_set(
    world: World,
) -> None:
    digest, _ = push_image(world.source_ecr)
    plan = plan_image(target_for(digest), world.source, world.destination)
    copy_all(world, plan)

    put_manifest(plan.target, plan.published_digest, world.source, world.destination)

    repository = world.destination_ecr.repositories[DESTINATION_REPOSITORY]
    assert world.destination_ecr.called("CreateRepository")[0]["imageTagMutability"] == "IMMUTABLE"
    assert repository.images[plan.published_digest]["tags"] == ["1.0"]


def test_given_a_sellers_mutable_repository_holding_the_tag_when_published_then_the_sellers_tag_is_not_moved(
    world: World,
) -> None:
    digest, _ = push_image(world.source_ecr)
    sellers = world.destination_ecr.push_manifest(DESTINATION_REPOSITORY, b'{"schemaVersion": 2}', None, tag="1.0")
    plan = plan_image(target_for(digest), world.source, world.destination)
    copy_all(world, plan)

    put_manifest(plan.target, plan.published_digest, world.source, world.destination)

    repository = world.destination_ecr.repositories[DESTINATION_REPOSITORY]
    assert repository.images[sellers]["tags"] == ["1.0"]
    assert world.destination_ecr.called("PutImage")[0]["imageTag"] == f"mlpublish-{plan.published_digest[7:19]}"


def test_given_an_untagged_source_when_published_then_no_tag_is_set(world: World) -> None:
    digest, _ = push_image(world.source_ecr)
    target = target_for(digest, tag=None)
    plan = plan_image(target, world.source, world.destination)
    copy_all(world, plan)

    put_manifest(target, plan.published_digest, world.source, world.destination)

    assert "imageTag" not in world.destination_ecr.called("PutImage")[0]
    assert world.destination_ecr.repositories[DESTINATION_REPOSITORY].images[plan.published_digest]["tags"] == []


def test_given_a_missing_blob_when_putting_the_manifest_then_it_is_refused_naming_the_missing_blobs(
    world: World,
) -> None:
    digest, blobs = push_image(world.source_ecr)
    plan = plan_image(target_for(digest), world.source, world.destination)
    copy_blob(plan.target, blobs[0], world.source, world.destination)

    with pytest.raises(ImageCopyFailed) as caught:
        put_manifest(plan.target, plan.published_digest, world.source, world.destination)

    assert caught.value.reasons == [f"{blob.digest} ({blob.size} bytes)" for blob in blobs[1:]]
    assert world.destination_ecr.called("PutImage") == []


def test_given_a_derived_manifest_other_than_the_planned_one_when_putting_it_then_it_is_refused(world: World) -> None:
    digest, _ = push_image(world.source_ecr)
    plan = plan_image(target_for(digest), world.source, world.destination)
    copy_all(world, plan)

    with pytest.raises(SourceChanged, match=plan.published_digest):
        put_manifest(plan.target, "sha256:" + "f" * 64, world.source, world.destination)

    assert world.destination_ecr.called("PutImage") == []


def test_given_an_immutable_tag_held_by_another_image_when_putting_the_manifest_then_it_is_reported(
    world: World,
) -> None:
    digest, _ = push_image(world.source_ecr)
    plan = plan_image(target_for(digest), world.source, world.destination)
    copy_all(world, plan)
    world.destination_ecr.failures["PutImage"] = client_error("ImageTagAlreadyExistsException", "PutImage")

    with pytest.raises(ImageCopyFailed, match="immutable"):
        put_manifest(plan.target, plan.published_digest, world.source, world.destination)


# --- registry adapter ---------------------------------------------------------------------


def test_given_250_digests_when_checking_for_missing_blobs_then_at_most_100_are_sent_per_call(world: World) -> None:
    present = world.destination_ecr.push_blob(DESTINATION_REPOSITORY, b"present")
    digests = [sha(str(n).encode()) for n in range(249)] + [present.digest]

    missing = world.destination.missing_blobs(DESTINATION_REPOSITORY, digests)

    assert missing == set(digests) - {present.digest}
    sizes = [len(call["layerDigests"]) for call in world.destination_ecr.called("BatchCheckLayerAvailability")]
    assert sizes == [100, 100, 50]


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ThrottlingException", 400, TransientAwsError),
        ("ServerException", 500, TransientAwsError),
        ("AccessDeniedException", 400, ImageCopyFailed),
    ],
)
def test_given_an_sdk_error_when_checking_for_missing_blobs_then_it_becomes_a_retryable_or_named_failure(
    world: World, code: str, status: int, error: type[Exception]
) -> None:
    world.destination_ecr.add_repository(DESTINATION_REPOSITORY)
    world.destination_ecr.failures["BatchCheckLayerAvailability"] = client_error(
        code, "BatchCheckLayerAvailability", status
    )

    with pytest.raises(error, match=DESTINATION_REPOSITORY):
        world.destination.missing_blobs(DESTINATION_REPOSITORY, [sha(b"x")])

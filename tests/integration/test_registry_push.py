"""Blob copies through the sandbox's ECR registry endpoint (HTTPS, Docker Registry HTTP API v2).

The emulator runs as the sandbox runs it (moto's server on loopback, the ECR extension with
its registry endpoints); the copy runs as CopyBlob does, in this process or in a worker
process that is killed mid-copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mlpublish.errors import BlobDigestMismatch
from mlpublish.images.copy import copy_blob
from mlpublish.images.registry import EcrRegistry
from mlpublish.images.registry_api import MiB, RegistryApi
from mlpublish.release import ImageRef
from mlpublish.state import BlobRef, CopyTarget, UploadProgress
from sandbox.audit import ApiCall
from sandbox.clock import VirtualClock
from sandbox.ext_ecr import EcrExtension
from sandbox.server import EmulatorServer
from sandbox.tls import sandbox_tls

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
SOURCE_REGION, DESTINATION_REGION = "us-west-2", "us-east-1"
CHUNK = 5 * MiB
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Emulator:
    endpoint: str
    ecr: EcrExtension
    calls: list[ApiCall]
    env: dict[str, str]

    def client(self, region: str) -> Any:
        return boto3.client("ecr", region_name=region, endpoint_url=self.endpoint)

    def registry(self, region: str) -> EcrRegistry:
        return EcrRegistry(region, client=self.client(region))


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAREGISTRYTEST0001",
        "AWS_SECRET_ACCESS_KEY": "test",  # a dummy for the emulator
        "AWS_DEFAULT_REGION": SOURCE_REGION,
        "AWS_CA_BUNDLE": str(sandbox_tls().ca_bundle),
        "MOTO_ACCOUNT_ID": ACCOUNT,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        server = EmulatorServer()
        calls: list[ApiCall] = []
        server.observers.append(calls.append)
        server.start()
        # 20 MiB/s: a 5 MiB chunk takes a quarter of a second, time enough to kill a worker mid-blob.
        with EcrExtension(
            VirtualClock(), emit_push_events=False, observers=server.observers, bandwidth_mib_s=20
        ) as ecr:
            yield Emulator(server.endpoint, ecr, calls, env | {"AWS_ENDPOINT_URL": server.endpoint})
        server.stop()


def push_source(emulator: Emulator, data: bytes) -> BlobRef:
    """A source image holding ``data`` as a layer, pushed through the registry endpoint."""
    ecr = emulator.client(SOURCE_REGION)
    ecr.create_repository(repositoryName="team/model")
    api = emulator.registry(SOURCE_REGION).uploads()
    config = b'{"architecture":"amd64","os":"linux"}'
    for blob in (data, config):
        location = api.start_upload("team/model")
        state = api.upload_chunk(location, 0, [blob], len(blob))
        api.complete_upload(state.location, "sha256:" + hashlib.sha256(blob).hexdigest())
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            "size": len(config),
        },
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": digest, "size": len(data)}
        ],
    }
    ecr.put_image(repositoryName="team/model", imageManifest=json.dumps(manifest), imageTag="1.0")
    emulator.client(DESTINATION_REGION).create_repository(repositoryName="mlpublish/model")
    return BlobRef(digest=digest, size=len(data), media_type="application/vnd.docker.image.rootfs.diff.tar.gzip")


def target() -> CopyTarget:
    source = ImageRef(
        registry_id=ACCOUNT, region=SOURCE_REGION, repository="team/model", tag="1.0", digest="sha256:" + "0" * 64
    )
    return CopyTarget(
        container="model",
        source=source,
        platform="linux/amd64",
        destination_region=DESTINATION_REGION,
        destination_repository="mlpublish/model",
    )


WORKER = """
import json, sys
from mlpublish.images.copy import copy_blob
from mlpublish.images.registry import EcrRegistry
from mlpublish.state import CopyBlobInput
request = CopyBlobInput.model_validate_json(sys.argv[1])
copy_blob(request.target, request.blob, EcrRegistry(request.target.source.region),
          EcrRegistry(request.target.destination_region), progress=request.progress, chunk_size=int(sys.argv[2]))
"""


def test_given_a_worker_killed_mid_blob_when_the_next_invocation_resumes_then_no_acknowledged_byte_is_sent_again(
    emulator: Emulator,
) -> None:
    data = random.Random(9).randbytes(8 * CHUNK + 12345)
    blob = push_source(emulator, data)
    received = emulator.ecr.registries.received
    received.chunks.clear()
    received.bytes = 0
    source, destination = emulator.registry(SOURCE_REGION), emulator.registry(DESTINATION_REGION)

    # Invocation 1 starts the upload and returns its progress after its first chunk (a long blob).
    first = copy_blob(target(), blob, source, destination, chunk_size=CHUNK)
    assert first.done is False
    assert first.progress == UploadProgress(location=first.progress.location, offset=CHUNK)

    # Invocation 2 (a worker process) is killed after the registry acknowledged two more chunks.
    request = json.dumps(
        {"target": target().model_dump(), "blob": blob.model_dump(), "progress": first.progress.model_dump()}
    )
    env = {**os.environ, **emulator.env, "PYTHONPATH": str(ROOT / "layers" / "publishing")}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, request, str(CHUNK)], env=env)
    deadline = time.monotonic() + 30
    while len(received.chunks) < 3 and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    acknowledged = sum(length for _upload, _first, length in received.chunks)
    assert 3 * CHUNK <= acknowledged < blob.size

    # Invocation 3 has only invocation 1's progress, and goes on from what the registry holds.
    last = copy_blob(target(), blob, source, destination, progress=first.progress, chunk_size=CHUNK)

    assert last.done is True
    assert last.bytes_copied == blob.size
    firsts = [first_byte for _upload, first_byte, _length in received.chunks]
    assert firsts == sorted(set(firsts)), "a chunk was acknowledged twice"
    assert sum(length for *_rest, length in received.chunks) == blob.size
    assert received.bytes - blob.size < CHUNK, "at most the chunk in flight when the worker died is lost"
    assert emulator.ecr.blob_path(blob.digest).read_bytes() == data
    layers = emulator.client(DESTINATION_REGION).batch_check_layer_availability(
        repositoryName="mlpublish/model", layerDigests=[blob.digest]
    )["layers"]
    assert layers[0]["layerAvailability"] == "AVAILABLE"
    operations = {call.operation for call in emulator.calls}
    assert {"GetAuthorizationToken", "InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload"} <= operations


def test_given_bytes_that_do_not_hash_to_the_digest_when_completed_then_the_registry_refuses_them(
    emulator: Emulator,
) -> None:
    emulator.client(DESTINATION_REGION).create_repository(repositoryName="mlpublish/model")
    api = emulator.registry(DESTINATION_REGION).uploads()
    location = api.start_upload("mlpublish/model")
    state = api.upload_chunk(location, 0, [b"not the bytes"], 13)

    with pytest.raises(BlobDigestMismatch, match="DIGEST_INVALID"):
        api.complete_upload(state.location, "sha256:" + "1" * 64)

    assert "sha256:" + "1" * 64 not in emulator.ecr.registries.received.chunks


def test_given_no_token_from_get_authorization_token_when_pushing_then_the_registry_refuses(emulator: Emulator) -> None:
    endpoint = emulator.registry(DESTINATION_REGION).uploads().endpoint
    forged = RegistryApi(endpoint, "QVdTOm5vdC1pc3N1ZWQ=")  # AWS:not-issued

    with pytest.raises(Exception, match="401"):
        forged.start_upload("mlpublish/model")

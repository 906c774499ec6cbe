"""A layer too large for one CopyBlob invocation: copied across several, verified, published.

The image's bottom layer is a 300 MB uncompressed tar (a repeated pattern, made in a second),
so the blob really is 300 MB on the wire. With ECR's transfers capped at 80 MiB/s and
CopyBlob's timeout at 3 s, its copy cannot fit in one invocation: CopyBlob returns its
progress and the state machine calls it again until the registry holds the blob.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.fixtures.cli_runs import CliRun
from tests.fixtures.images import (
    CREATED,
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    EPOCH,
    OCI_INDEX,
    base_layer,
    canonical,
    digest_of,
)

pytestmark = pytest.mark.e2e

MB = 1000 * 1000
LARGE = 300 * MB
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"


def write_large_image(root: Path) -> str:
    """An OCI layout: a 300 MB uncompressed layer under the fixtures' Debian layer; its digest."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    info = tarfile.TarInfo("opt/ml/model/weights.bin")
    info.size, info.mtime, info.mode = LARGE, EPOCH, 0o644
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    pattern = bytes(range(256)) * 4096  # 1 MiB
    hasher, size = hashlib.sha256(), 0
    spool = blobs / "large"
    with spool.open("wb") as out:
        for piece in _pieces(header, pattern, LARGE):
            out.write(piece)
            hasher.update(piece)
            size += len(piece)
    large_digest = "sha256:" + hasher.hexdigest()
    spool.rename(blobs / large_digest[7:])
    base = base_layer("amd64")
    (blobs / base.digest[7:]).write_bytes(base.blob)
    config = canonical(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": CREATED,
            "config": {"Entrypoint": ["/usr/local/bin/serve"], "ExposedPorts": {"8080/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": [large_digest, base.diff_id]},
        }
    )
    (blobs / digest_of(config)[7:]).write_bytes(config)
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": digest_of(config), "size": len(config)},
            "layers": [
                {"mediaType": DOCKER_LAYER_TAR, "digest": large_digest, "size": size},
                {"mediaType": DOCKER_LAYER_GZIP, "digest": base.digest, "size": len(base.blob)},
            ],
        }
    )
    (blobs / digest_of(manifest)[7:]).write_bytes(manifest)
    (root / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    top = {
        "mediaType": DOCKER_MANIFEST,
        "digest": digest_of(manifest),
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "1.2.0"},
    }
    (root / "index.json").write_bytes(canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]}))
    return large_digest


def _pieces(header: bytes, pattern: bytes, size: int) -> Iterator[bytes]:
    yield header
    left = size
    while left:
        piece = pattern[: min(len(pattern), left)]
        yield piece
        left -= len(piece)
    yield b"\0" * (-size % 512) + b"\0" * 1024


@pytest.fixture(scope="module")
def large(e2e_dir: Path, publish: Callable[..., CliRun], release_file: Callable[..., Path]) -> tuple[str, CliRun]:
    image = e2e_dir / "images" / "large-layer"
    digest = write_large_image(image)
    run = publish(
        "--release",
        release_file(),
        "--image",
        image,
        "--bandwidth-mib-s",
        "80",
        "--lambda-timeout",
        "CopyBlob=3",
    )
    return digest, run


def test_given_a_300_mb_layer_a_capped_bandwidth_and_a_3_s_copy_blob_when_published_then_several_invocations_copy_it(
    large: tuple[str, CliRun],
) -> None:
    digest, run = large
    assert run.exit_code == 0, run.stderr
    assert run.reported["status"] == "SUCCEEDED"
    copy_blob = run.reported["lambda"]["CopyBlob"]
    assert copy_blob["invocations"] >= 4, copy_blob  # 300 MB at 80 MiB/s: about 3.6 s of transfer, 3 s a call
    assert copy_blob["timeouts"] == 0, "each invocation returned its progress in time"
    assert digest in run.published.blobs
    assert run.reported["bytes_copied"] >= LARGE
    layers = [layer["digest"] for layer in run.reported["published_manifest"]["layers"]]
    assert layers[0] == digest

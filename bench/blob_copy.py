"""Blob copy through ECR's registry endpoint: CPU per byte and memory, measured apart from the emulator.

The emulator (moto's server, the sandbox's ECR with its HTTPS registry endpoints) runs in the
bench's process; each copy runs in a worker process of its own, as CopyBlob runs in a Lambda:
``copy_blob`` downloads the blob over loopback HTTP and pushes it over TLS in 10 MiB chunks.
The worker reports the CPU time (user + system) of the copy alone, the CPU time sha256 takes
over the same number of bytes in the same process, and its peak RSS (VmHWM). Everything
the copying side does is counted (HTTP, TLS, botocore calls, the project's code); nothing the
emulator does (receiving, hashing, storing) is.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
SIZES_MIB = (16, 1024)
SOURCE_REGION, DESTINATION_REGION = "us-west-2", "us-east-2"
ACCOUNT = "123456789012"
ROOT = Path(__file__).resolve().parent.parent
CPU_GOAL, RSS_GOAL = 2.0, 1.10


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux keeps that across exec, so a worker
    forked from the bench (which holds the emulator) would report the bench's size."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(request_json: str) -> None:
    """In the worker process: copy one blob (every invocation it takes, in one process), then
    hash as many bytes; print the figures."""
    from mlpublish.images.copy import copy_blob
    from mlpublish.images.registry import EcrRegistry
    from mlpublish.state import CopyBlobInput

    request = CopyBlobInput.model_validate_json(request_json)
    source, destination = EcrRegistry(SOURCE_REGION), EcrRegistry(DESTINATION_REGION)
    started_cpu, started = _cpu(), time.perf_counter()
    result = copy_blob(request.target, request.blob, source, destination)
    while not result.done:  # as the state machine calls CopyBlob again with its progress
        result = copy_blob(request.target, request.blob, source, destination, progress=result.progress)
    copy_cpu, seconds = _cpu() - started_cpu, time.perf_counter() - started
    peak_kib = _peak_rss_kib()
    block = os.urandom(MiB)
    hasher = hashlib.sha256()
    started_cpu = _cpu()
    for _ in range(request.blob.size // MiB):
        hasher.update(block)
    sha_cpu = _cpu() - started_cpu
    print(
        json.dumps(
            {
                "copied": result.bytes_copied,
                "copy_cpu": copy_cpu,
                "sha_cpu": sha_cpu,
                "seconds": seconds,
                "rss": peak_kib,
            }
        )
    )


def _seed(ecr: Any, repository: str, size: int) -> str:
    """A blob of ``size`` pseudo-random bytes and an image naming it, pushed through the registry."""
    from sandbox.ecr_registry import seller_uploads

    ecr.create_repository(repositoryName=repository)
    uploads = seller_uploads(ecr, SOURCE_REGION)
    rng = random.Random(size)  # nosec B311  # reproducible test bytes, not secrets
    hasher, location, sent = hashlib.sha256(), uploads.start_upload(repository), 0
    while sent < size:
        part = rng.randbytes(min(10 * MiB, size - sent))
        hasher.update(part)
        location = uploads.upload_chunk(location, sent, [part], len(part)).location
        sent += len(part)
    digest = "sha256:" + hasher.hexdigest()
    uploads.complete_upload(location, digest)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    location = uploads.start_upload(repository)
    location = uploads.upload_chunk(location, 0, [config], len(config)).location
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    uploads.complete_upload(location, config_digest)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": config_digest,
        },
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": size, "digest": digest}],
    }
    ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag="bench")
    return digest


def bench_blob_copy() -> dict[str, float]:
    """Print the table; returns the two ratios (copy CPU / sha256 CPU for 1 GiB, RSS 1 GiB / 16 MiB)."""
    import boto3
    from moto import mock_aws

    from sandbox.clock import VirtualClock
    from sandbox.ext_ecr import EcrExtension
    from sandbox.server import EmulatorServer
    from sandbox.tls import sandbox_tls

    print("\n## Blob copy through the registry endpoint (a worker process per copy; the emulator apart)")
    print(
        f"{'blob':>9} {'seconds':>8} {'MiB/s':>7} {'copy CPU s':>11} {'sha256 CPU s':>13} {'CPU ratio':>10}"
        f" {'peak RSS':>10}"
    )
    figures: dict[int, dict[str, float]] = {}
    with mock_aws():
        server = EmulatorServer()
        endpoint = server.start()
        try:
            with EcrExtension(VirtualClock(), emit_push_events=False, observers=server.observers):
                for size_mib in SIZES_MIB:
                    repository = f"bench/copy-{size_mib}"
                    source = boto3.client("ecr", region_name=SOURCE_REGION, endpoint_url=endpoint)
                    digest = _seed(source, repository, size_mib * MiB)
                    boto3.client("ecr", region_name=DESTINATION_REGION, endpoint_url=endpoint).create_repository(
                        repositoryName=repository
                    )
                    request = {
                        "target": {
                            "container": "bench",
                            "source": {"registry_id": ACCOUNT, "region": SOURCE_REGION, "repository": repository},
                            "platform": "linux/amd64",
                            "destination_region": DESTINATION_REGION,
                            "destination_repository": repository,
                        },
                        "blob": {"digest": digest, "size": size_mib * MiB, "media_type": "application/octet-stream"},
                    }
                    env = {
                        **os.environ,
                        "AWS_ENDPOINT_URL": endpoint,
                        "AWS_CA_BUNDLE": str(sandbox_tls().ca_bundle),
                        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "publishing"), str(ROOT)]),
                    }
                    # BENCH_PROFILE=DIR: each worker writes a cProfile of its run to DIR/copy-<MiB>.prof.
                    profile_dir = os.environ.get("BENCH_PROFILE")
                    profile = ["-m", "cProfile", "-o", f"{profile_dir}/copy-{size_mib}.prof"] if profile_dir else []
                    done = subprocess.run(  # nosec B603  # this interpreter, this module
                        [sys.executable, *profile, "-m", "bench.blob_copy", "worker", json.dumps(request)],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    figure = json.loads(done.stdout.strip().splitlines()[-1])
                    figures[size_mib] = figure
                    print(
                        f"{size_mib:>5} MiB {figure['seconds']:>8.2f} {size_mib / figure['seconds']:>7.0f} "
                        f"{figure['copy_cpu']:>11.2f} {figure['sha_cpu']:>13.2f} "
                        f"{figure['copy_cpu'] / figure['sha_cpu']:>10.2f} {figure['rss'] / 1024:>6.0f} MiB"
                    )
        finally:
            server.stop()
    small, large = figures[SIZES_MIB[0]], figures[SIZES_MIB[-1]]
    ratios = {"cpu": large["copy_cpu"] / large["sha_cpu"], "rss": large["rss"] / small["rss"]}
    print(f"copy CPU / sha256 CPU, {SIZES_MIB[-1]} MiB: {ratios['cpu']:.2f} (goal <= {CPU_GOAL})")
    print(f"peak RSS {SIZES_MIB[-1]} MiB / {SIZES_MIB[0]} MiB: {ratios['rss']:.2f} (goal <= {RSS_GOAL})")
    print(
        "download: loopback HTTP (ECR's presigned URL stand-in); upload: HTTPS to the registry endpoint, "
        "10 MiB chunks; CPU = user + system of the worker during copy_blob; RSS = the worker's VmHWM."
    )
    return ratios


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(sys.argv[2])
    else:
        bench_blob_copy()

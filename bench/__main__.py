"""Benchmarks that print figures: ``make bench`` (``python -m bench``).

1. Blob copy: the pipeline's streamed, verified copy (mlpublish.images.copy.copy_blob) against
   a naive copy that downloads the whole blob before uploading it, in the same process and
   run, on the sandbox's ECR (loopback HTTP download + moto upload). Prints throughput and
   peak Python memory, and their ratios.
2. Waiting: the whole pipeline in the sandbox with validation taking 45 minutes and 6 hours
   of virtual time; prints state transitions and real seconds, showing the poll backoff.
3. Lambda concurrency: a 15-container release with ``--lambda-concurrency 1`` and with the
   default (as many invocations at once as Map and Parallel start), side by side.

Figures are from this machine and this run; they include moto's own overhead (the upload
goes through botocore's base64 JSON encoding and moto's request parsing) and so understate
what real ECR gives, but the ratios compare like with like.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
SOURCE_REGION, DESTINATION_REGION = "us-west-2", "us-east-2"
BLOB_SIZES_MIB = (16, 64, 256)
REPEATS = 3


def _environment() -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # nosec B106  # a dummy for the emulator
        AWS_DEFAULT_REGION=SOURCE_REGION,
        POWERTOOLS_TRACE_DISABLED="true",
    )


def _push_blob(ecr: Any, repository: str, data: bytes) -> str:
    """Upload one blob and an image referencing it (ECR serves only referenced blobs)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = ecr.initiate_layer_upload(repositoryName=repository)
    part = upload["partSize"]
    for start in range(0, len(data), part):
        chunk = data[start : start + part]
        ecr.upload_layer_part(
            repositoryName=repository,
            uploadId=upload["uploadId"],
            partFirstByte=start,
            partLastByte=start + len(chunk) - 1,
            layerPartBlob=chunk,
        )
    ecr.complete_layer_upload(repositoryName=repository, uploadId=upload["uploadId"], layerDigests=[digest])
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    config_digest = "sha256:" + hashlib.sha256(config.encode()).hexdigest()
    upload = ecr.initiate_layer_upload(repositoryName=repository)
    ecr.upload_layer_part(
        repositoryName=repository,
        uploadId=upload["uploadId"],
        partFirstByte=0,
        partLastByte=len(config) - 1,
        layerPartBlob=config.encode(),
    )
    ecr.complete_layer_upload(repositoryName=repository, uploadId=upload["uploadId"], layerDigests=[config_digest])
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": config_digest,
        },
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(data), "digest": digest}
        ],
    }
    ecr.put_image(
        repositoryName=repository,
        imageManifest=json.dumps(manifest),
        imageManifestMediaType=manifest["mediaType"],
        imageTag=f"bench-{len(data)}",
    )
    return digest


class SerializingSink:
    """Stands in for the destination ECR across the network: each request is serialized by
    botocore exactly as the Lambda would send it (JSON, base64 part bytes), then dropped.
    Only the copying process's memory is measured, not an in-process server's."""

    PART_SIZE = 10 * MiB

    def __init__(self) -> None:
        import botocore.session
        from botocore.serialize import create_serializer

        model = botocore.session.get_session().get_service_model("ecr")
        self._operation = model.operation_model("UploadLayerPart")
        self._serializer = create_serializer("json")
        self.received = 0

    def batch_check_layer_availability(self, **_: Any) -> dict[str, Any]:
        return {"layers": [], "failures": []}

    def initiate_layer_upload(self, **_: Any) -> dict[str, Any]:
        self.received = 0
        return {"uploadId": "bench", "partSize": self.PART_SIZE}

    def upload_layer_part(self, **request: Any) -> dict[str, Any]:
        wire = self._serializer.serialize_to_request(request, self._operation)
        self.received += len(request["layerPartBlob"])
        del wire
        return {"lastByteReceived": request["partLastByte"]}

    def complete_layer_upload(self, **request: Any) -> dict[str, Any]:
        return {"layerDigest": request["layerDigests"][0]}


def _naive_copy(source: Any, sink: SerializingSink, repository: str, digest: str) -> None:
    """The baseline: download everything, hash it, then upload it in parts."""
    import urllib3

    url = source.get_download_url_for_layer(repositoryName=repository, layerDigest=digest)["downloadUrl"]
    data = urllib3.PoolManager().request("GET", url).data
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise RuntimeError("corrupt")
    upload = sink.initiate_layer_upload()
    part = upload["partSize"]
    for start in range(0, len(data), part):
        chunk = data[start : start + part]
        sink.upload_layer_part(
            repositoryName=repository,
            uploadId="bench",
            partFirstByte=start,
            partLastByte=start + len(chunk) - 1,
            layerPartBlob=chunk,
        )
    sink.complete_layer_upload(layerDigests=[digest])


def _measure(action: Callable[[], None], reset: Callable[[], None]) -> tuple[float, int]:
    """Median seconds over REPEATS, and the peak traced memory of one more run."""
    seconds = []
    for _ in range(REPEATS):
        reset()
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    reset()
    tracemalloc.start()
    action()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(seconds), peak


def bench_blob_copy() -> None:
    import boto3
    from moto import mock_aws

    from mlpublish.images.copy import copy_blob
    from mlpublish.images.registry import EcrRegistry
    from mlpublish.state import BlobRef, CopyTarget
    from sandbox.clock import VirtualClock
    from sandbox.ext_ecr import EcrExtension

    print("\n## Blob copy: download from the sandbox's ECR over loopback HTTP, upload serialized by botocore")
    print(
        f"{'blob':>8} {'streamed s':>11} {'naive s':>8} {'streamed MiB/s':>15} {'naive MiB/s':>12} "
        f"{'streamed peak':>14} {'naive peak':>11} {'peak ratio':>11}"
    )
    clock = VirtualClock()
    with mock_aws(), clock, EcrExtension(clock, emit_push_events=False):
        source = boto3.client("ecr", region_name=SOURCE_REGION)
        sink = SerializingSink()
        for size_mib in BLOB_SIZES_MIB:
            repository = f"bench/blob-{size_mib}"
            source.create_repository(repositoryName=repository)
            rng = random.Random(size_mib)  # nosec B311  # reproducible test bytes, not secrets
            data = b"".join(rng.randbytes(MiB) for _ in range(size_mib))
            digest = _push_blob(source, repository, data)
            del data
            blob = BlobRef(digest=digest, size=size_mib * MiB, media_type="application/octet-stream")
            target = CopyTarget.model_validate(
                {
                    "container": "bench",
                    "source": {"registry_id": "123456789012", "region": SOURCE_REGION, "repository": repository},
                    "platform": "linux/amd64",
                    "destination_region": DESTINATION_REGION,
                    "destination_repository": repository,
                }
            )

            def reset() -> None:
                sink.received = 0

            streamed = _measure(
                lambda target=target, blob=blob: copy_blob(
                    target, blob, EcrRegistry(SOURCE_REGION, source), EcrRegistry(DESTINATION_REGION, sink)
                ),
                reset,
            )
            naive = _measure(
                lambda repository=repository, digest=digest: _naive_copy(source, sink, repository, digest),
                reset,
            )
            print(
                f"{size_mib:>5} MiB {streamed[0]:>11.2f} {naive[0]:>8.2f} {size_mib / streamed[0]:>15.1f} "
                f"{size_mib / naive[0]:>12.1f} {streamed[1] / MiB:>10.1f} MiB {naive[1] / MiB:>7.1f} MiB "
                f"{streamed[1] / naive[1]:>11.2f}"
            )
    print(
        "peak = largest Python allocation total during one copy (tracemalloc) on the copying side; "
        "part size 10 MiB (an upload part travels base64-encoded in JSON)."
    )


def bench_waiting() -> None:
    from sandbox.cli import main as sandbox_main

    print("\n## Waiting for validation (whole pipeline in the sandbox)")
    print(f"{'validation':>11} {'transitions':>12} {'virtual h':>10} {'real s':>7} {'virtual/real':>13}")
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(root / "tests"))
        from fixtures.images import write_layout

        image = write_layout(Path(tmp) / "image", "oci").path
        for minutes in (45, 360):
            out = Path(tmp) / f"report-{minutes}.json"
            started = time.perf_counter()
            with out.open("w") as stream, redirect_stdout(stream):
                sandbox_main(
                    [
                        "run",
                        "--release",
                        str(root / "events" / "release.example.yaml"),
                        "--image",
                        str(image),
                        "--validation-minutes",
                        str(minutes),
                        "--json",
                        "--log-file",
                        str(Path(tmp) / "lambda.log"),
                    ]
                )
            real = time.perf_counter() - started
            report = json.loads(out.read_text())
            virtual = report["virtual_seconds"]
            print(
                f"{minutes:>7} min {report['state_transitions']:>12} {virtual / 3600:>10.2f} {real:>7.2f} "
                f"{virtual / real:>13.0f}"
            )
    print("validation polls (3 transitions each): at once, after 5, 10, 20 min, every 15 to the first hour, then 30.")


def _fifteen_containers(root: Path, tmp: Path) -> Path:
    """The example release as a 15-container inference pipeline."""
    import yaml

    document = yaml.safe_load((root / "events" / "release.example.yaml").read_text())
    inference = document["containers"][0]
    stages = [
        {"name": f"stage{index:02d}", "image": inference["image"].replace("acme/sentiment:", f"acme/stage{index:02d}:")}
        for index in range(14)
    ]
    document["containers"] = [*stages, inference]
    path = tmp / "fifteen.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def bench_lambda_concurrency() -> None:
    """A 15-container release with one Lambda invocation at a time, and as Map/Parallel allow."""
    from sandbox.cli import main as sandbox_main

    print("\n## Lambda concurrency: a 15-container release (each Lambda in its own worker process)")
    print(f"{'concurrency':>12} {'real s':>7} {'invocations':>12} {'cold starts':>12} {'max concurrent':>15}")
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sys.path.insert(0, str(root / "tests"))
        from fixtures.images import write_layout

        image = write_layout(tmp / "image", "oci").path
        release = _fifteen_containers(root, tmp)
        images = [arg for index in range(14) for arg in ("--image", f"stage{index:02d}={image}")]
        images += ["--image", f"inference={image}"]
        figures = {}
        for concurrency in ("1", "default"):
            out = tmp / f"report-{concurrency}.json"
            limit = ["--lambda-concurrency", concurrency] if concurrency != "default" else []
            started = time.perf_counter()
            with out.open("w") as stream, redirect_stdout(stream):
                code = sandbox_main(
                    ["run", "--release", str(release), *images, "--json", "--log-file", str(tmp / "lambda.log"), *limit]
                )
            real = time.perf_counter() - started
            if code == 2 or not out.read_text().strip():
                print(f"{concurrency:>12} did not run (exit {code})")
                return
            report = json.loads(out.read_text())
            functions = report["lambda"].values()
            figures[concurrency] = real
            print(
                f"{concurrency:>12} {real:>7.2f} {sum(f['invocations'] for f in functions):>12} "
                f"{sum(f['cold_starts'] for f in functions):>12} {max(f['max_concurrent'] for f in functions):>15}"
                + ("" if code == 0 else f"  (exit {code}: {report['status']})")
            )
    speed_up = figures["1"] / figures["default"]
    print(f"speed-up of the default over one at a time: {speed_up:.2f}x ({os.cpu_count()} cores)")


def main() -> int:
    _environment()
    warnings.simplefilter("ignore")
    print("# mlpublish benchmarks")
    bench_blob_copy()
    bench_waiting()
    bench_lambda_concurrency()
    return 0


if __name__ == "__main__":
    sys.exit(main())

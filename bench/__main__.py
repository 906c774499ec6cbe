"""Benchmarks that print figures: ``make bench`` (``python -m bench``).

1. Blob copy (bench/blob_copy.py): copy_blob in a worker process of its own, through the
   sandbox's ECR registry endpoint (HTTPS), for a 16 MiB and a 1 GiB blob: the copy's CPU
   time against sha256 of the same bytes (goal <= 2.0) and peak RSS, 1 GiB / 16 MiB (goal <= 1.10).
2. Waiting: the whole pipeline in the sandbox with validation taking 20 minutes, 2 hours and
   24 hours of virtual time, with SageMaker's state-change events delivered and lost; prints
   the state transitions of the wait and how long after validation ended the pipeline knew
   (goal: at most 12 transitions for 2 hours, known within 60 s, with events delivered).
3. Lambda concurrency: a 15-container release with ``--lambda-concurrency 1`` and with the
   default (as many invocations at once as Map and Parallel start), side by side.
4. OS detection: the layer bytes ResolveRelease downloads to tell an image's OS, for a 2 GiB
   base layer (made as it is read) and for the example image published twice on the sandbox's
   ECR, the second time remembered by digest (goal: 0 bytes).
6. Artifact copy: a large model.tar.gz published in the sandbox (S3 copies capped in MiB/s, a
   short CopyArtifactParts Timeout, so its parts span invocations); prints the object bytes that
   pass through the copy Lambdas (request and response bodies of GetObject, PutObject and
   UploadPart, as the sandbox's endpoint meters them; goal 0: S3 copies server-side), the
   UploadPartCopy requests against the part count, and the invocations.
7. 15 containers × 100 layers: the largest state, the Lambda invocations and the history
   events of a release whose 15 images have 100 small layers each (goal: state < 8 KiB).
8. Re-publishing: the bytes copied into the publishing region when the same release runs
   again (goal 0), and when the next version's image shares the published one's base layers
   (goal: exactly the bytes of the blobs the publishing region lacks).
5. Cold imports: each handler module imported in a fresh Lambda-like process (Python 3.13,
   the function's code, the layer and the runtime's SDK only; the template's environment,
   X-Ray tracing active as the template deploys it), against a bare ``import boto3`` in the
   same interpreter, interleaved in the same run (CPU time). Goal: ≤ 1.2 × boto3.

Figures are from this machine and this run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
#: The figures the summary table prints beside their goals (issue 9), filled as sections run.
FIGURES: dict[str, float] = {}
SOURCE_REGION, DESTINATION_REGION = "us-west-2", "us-east-2"


def _environment() -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # nosec B106  # a dummy for the emulator
        AWS_DEFAULT_REGION=SOURCE_REGION,
        POWERTOOLS_TRACE_DISABLED="true",
    )


def bench_waiting() -> None:
    from sandbox.cli import main as sandbox_main

    print("\n## Waiting for validation (whole pipeline in the sandbox, virtual time)")
    print(
        f"{'validation':>10} {'events':>10} {'wait transitions':>17} {'known after s':>14} {'all transitions':>16} "
        f"{'real s':>7}"
    )
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(root / "tests"))
        from fixtures.images import write_layout

        image = write_layout(Path(tmp) / "image", "oci").path
        # The example release gives validation 12 hours; these runs wait up to 24.
        release = Path(tmp) / "release.yaml"
        example = (root / "events" / "release.example.yaml").read_text()
        release.write_text(example.replace("timeout_minutes: 720", "timeout_minutes: 2880"))
        for minutes in (20, 120, 1440):
            for events in ("delivered", "lost"):
                out = Path(tmp) / f"report-{minutes}-{events}.json"
                started = time.perf_counter()
                with out.open("w") as stream, redirect_stdout(stream):
                    sandbox_main(
                        [
                            "run",
                            "--release",
                            str(release),
                            "--image",
                            str(image),
                            "--validation-minutes",
                            str(minutes),
                            "--validation",  # the fixture image does not serve: the outcome is told
                            "completed",
                            "--service-events",
                            events,
                            "--json",
                            "--log-file",
                            str(Path(tmp) / "lambda.log"),
                        ]
                    )
                real = time.perf_counter() - started
                report = json.loads(out.read_text())
                # Virtual seconds from SageMaker ending the validation to the pipeline's first look
                # that saw it (the Lambdas' own real seconds are not on the virtual clock).
                after = [value for value in report["validation_known_after"].values() if value is not None]
                known = f"{max(after):.0f}" if after else "?"
                if events == "delivered" and minutes == 20:
                    FIGURES["example_wall"] = real
                if events == "delivered" and minutes == 120:
                    FIGURES["wait_2h_transitions"] = report["wait_transitions"].get("validation", 0)
                FIGURES["max_state_example"] = max(FIGURES.get("max_state_example", 0), report["max_state_bytes"])
                label = f"{minutes // 60} h" if minutes >= 60 else f"{minutes} min"
                print(
                    f"{label:>10} {events:>10} {report['wait_transitions'].get('validation', 0):>17} {known:>14} "
                    f"{report['state_transitions']:>16} {real:>7.1f}"
                    + ("" if report["status"] == "SUCCEEDED" else f"  ({report['status']})")
                )
    print(
        "known after: virtual seconds from SageMaker ending validation to the pipeline's first look that saw it. "
        "The wait listens for SageMaker's event for 30 minutes at a time; with none, it looks once and listens "
        "again (2 transitions per 30 minutes)."
    )


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


def _stage(index: int) -> str:
    """The container names of the 15-container release: stage00..stage13, then inference."""
    return "inference" if index == 14 else f"stage{index:02d}"


def _sandbox_json(tmp: Path, name: str, *args: str) -> tuple[int, dict[str, Any] | None, float]:
    """``sandbox run ARGS --validation completed --json`` (the fixture images do not serve:
    validation is told, not run): exit code, report (None if it did not run), real seconds."""
    from sandbox.cli import main as sandbox_main

    out = tmp / f"report-{name}.json"
    started = time.perf_counter()
    with out.open("w") as stream, redirect_stdout(stream):
        code = sandbox_main(
            ["run", *args, "--validation", "completed", "--json", "--log-file", str(tmp / f"lambda-{name}.log")]
        )
    real = time.perf_counter() - started
    if code == 2 or not out.read_text().strip():
        return code, None, real
    return code, json.loads(out.read_text()), real


def bench_many_layers() -> None:
    """A 15-container release whose images have 100 layers each: state, invocations, history."""
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "tests"))
    from fixtures.images import MANY_LAYERS, write_layout

    print(f"\n## 15 containers × {MANY_LAYERS} layers (small layers; validation told, not run)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        image = write_layout(tmp / "image", "hundred-layers").path
        release = _fifteen_containers(root, tmp)
        images = [arg for index in range(15) for arg in ("--image", f"{_stage(index)}={image}")]
        code, report, real = _sandbox_json(tmp, "many-layers", "--release", str(release), *images)
    if report is None:
        print(f"did not run (exit {code})")
        return
    functions = report["lambda"]
    invocations = sum(function["invocations"] for function in functions.values())
    header = f"{'status':<10} {'largest state B':>16} {'invocations':>12} {'CopyBlob':>9}"
    print(f"{header} {'history events':>15} {'real s':>7}")
    print(
        f"{report['status']:<10} {report['max_state_bytes']:>16,} "
        f"{invocations:>12} {functions['CopyBlob']['invocations']:>9} {report['history_events']:>15,} {real:>7.1f}"
    )
    print("largest state: of every state's input and output in the execution's history, announcement included")
    if code == 0:
        FIGURES["max_state_15x100"] = float(report["max_state_bytes"])
        FIGURES["history_15x100"] = float(report["history_events"])


def _moved(sandbox: Any, execution_arn: str) -> tuple[str, int, int]:
    """An execution's status, and the image and object bytes it copied into the publishing region."""
    from sandbox.report import _history, _outputs

    status = sandbox.wait(execution_arn)
    copied = _outputs(_history(sandbox, execution_arn), "CopyToPublishingRegion")[-1]["copied"]
    images = sum(image["bytes_copied"] for image in copied["images"])
    objects = sum(item["size"] for item in copied["artifacts"] if item["copied"])
    return status, images, objects


def bench_republish() -> None:
    """Bytes moved into the publishing region when the same release runs again, and when a new
    version's image shares its base layers with the published one."""
    import yaml

    from sandbox.ecr_registry import seller_uploads
    from sandbox.oci import open_layout, push_layout
    from sandbox.runner import RunOptions, Sandbox, load_release

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "tests"))
    from fixtures.images import write_layout

    print("\n## Re-publishing: bytes copied into the publishing region (images + objects)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        written = write_layout(tmp / "image", "oci")
        # The next version's image: the same base and weights layers, and 98 small layers more.
        written_grown = write_layout(tmp / "grown", "hundred-layers", tag="1.3.0")
        first, grown = open_layout(written.path), open_layout(written_grown.path)
        # Exactly what the publishing region lacks: the new config and the new layers.
        missing = sum(
            (written_grown.path / "blobs" / "sha256" / digest.removeprefix("sha256:")).stat().st_size
            for digest in set(written_grown.blobs) - set(written.blobs)
        )
        release = root / "events" / "release.example.yaml"
        document = yaml.safe_load(release.read_text())
        document["product"]["version"] = "1.3.0"
        document["containers"][0]["image"] = document["containers"][0]["image"].replace(":1.2.0", ":1.3.0")
        options = RunOptions(release=release, trigger="manual", validation="completed", log_file=tmp / "lambda.log")
        sandbox = Sandbox(load_release(release), options)
        logging.disable(logging.ERROR)  # moto's notices of what its CloudFormation skips and ASL paths absent
        try:
            with (tmp / "out.log").open("w") as log, redirect_stdout(log), sandbox.running():
                _, delivery = sandbox.seed_and_trigger(first)
                assert sandbox.stack is not None
                rows = [("first publish", *_moved(sandbox, delivery.execution_arn), "")]
                rows.append(("same release again", *_moved(sandbox, sandbox.start_manually()), "0"))
                ref = sandbox.spec.containers[0].image_ref
                ecr = sandbox.aws("ecr", ref.region, account=ref.registry_id)
                push_layout(grown, ecr, ref.repository, "1.3.0", uploads=seller_uploads(ecr, ref.region))
                sandbox.poller.wait_idle()
                uri = f"s3://{sandbox.stack.outputs['PipelineBucketName']}/manual/next-version.yaml"
                sandbox._put(uri, yaml.safe_dump(document, sort_keys=False).encode())
                moved = _moved(sandbox, sandbox.start_manually(uri))
                rows.append(("next version, base layers there", *moved, f"{missing:,}"))
        finally:
            logging.disable(logging.NOTSET)
    print(f"{'run':<32} {'status':<10} {'image bytes':>12} {'object bytes':>13}  goal (image bytes)")
    for name, status, images, objects, goal in rows:
        print(f"{name:<32} {status:<10} {images:>12,} {objects:>13,}  {goal}")
    FIGURES["moved_unchanged"] = float(rows[1][2] + rows[1][3])
    FIGURES["moved_base_present"] = float(rows[2][2])
    FIGURES["moved_base_present_goal"] = float(missing)


def bench_lambda_concurrency() -> None:
    """A 15-container release with one Lambda invocation at a time, and as Map/Parallel allow."""
    print("\n## Lambda concurrency: a 15-container release (each Lambda in its own worker process)")
    print(f"{'concurrency':>12} {'real s':>7} {'invocations':>12} {'cold starts':>12} {'max concurrent':>15}")
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sys.path.insert(0, str(root / "tests"))
        from fixtures.images import write_layout

        image = write_layout(tmp / "image", "oci").path
        release = _fifteen_containers(root, tmp)
        images = [arg for index in range(15) for arg in ("--image", f"{_stage(index)}={image}")]
        figures = {}
        for concurrency in ("1", "default"):
            limit = ["--lambda-concurrency", concurrency] if concurrency != "default" else []
            code, report, real = _sandbox_json(tmp, concurrency, "--release", str(release), *images, *limit)
            if report is None:
                print(f"{concurrency:>12} did not run (exit {code})")
                return
            functions = report["lambda"].values()
            figures[concurrency] = real
            print(
                f"{concurrency:>12} {real:>7.2f} {sum(f['invocations'] for f in functions):>12} "
                f"{sum(f['cold_starts'] for f in functions):>12} {max(f['max_concurrent'] for f in functions):>15}"
                + ("" if code == 0 else f"  (exit {code}: {report['status']})")
            )
    speed_up = figures["1"] / figures["default"]
    print(f"speed-up of the default over one at a time: {speed_up:.2f}x ({os.cpu_count()} cores)")


UBUNTU = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n'


def bench_os_detection() -> None:
    """Layer bytes ResolveRelease downloads to tell an image's OS: a large image, and an unchanged re-run."""
    import boto3
    from moto import mock_aws

    from mlpublish.images.copy import check_publishable
    from mlpublish.images.osinfo import READ_BUDGET, detect_os, format_size
    from mlpublish.images.osrecords import OsRecords
    from mlpublish.state import BlobRef, PinnedImage
    from sandbox.clock import VirtualClock
    from sandbox.ext_ecr import EcrExtension
    from sandbox.oci import open_layout, push_layout

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "tests"))
    from fixtures.images import write_layout
    from fixtures.layers import LazyLayer, file, lazy_member, lazy_opener, symlink

    print("\n## OS detection in ResolveRelease: layer bytes downloaded")
    print(f"{'image':<72} {'read':>10} {'seconds':>8}  goal")
    # A CUDA-style image: a 2 GiB Ubuntu base layer whose /etc/os-release links to
    # ../usr/lib/os-release 40 MiB further into the tar, under a 64 MiB application layer that
    # must be read to its end (only that proves it leaves os-release alone). Made as it is read.
    base = LazyLayer(
        symlink("etc/os-release", "../usr/lib/os-release"),
        lazy_member("usr/lib/gcc/x86_64-linux-gnu/13/cc1plus", 40 * MiB),
        file("usr/lib/os-release", UBUNTU),
        lazy_member("usr/lib/x86_64-linux-gnu/libcudnn_engines_precompiled.so.9", 2048 * MiB),
    )
    app_bytes = b"".join(LazyLayer(lazy_member("opt/ml/model/model.onnx", 64 * MiB)).chunks())
    app = BlobRef(
        digest="sha256:" + hashlib.sha256(app_bytes).hexdigest(),
        size=len(app_bytes),
        media_type="application/vnd.docker.image.rootfs.diff.tar.gzip",
    )
    started = time.perf_counter()
    detection = detect_os([base.ref, app], lazy_opener(base, (app, app_bytes)))
    seconds = time.perf_counter() - started
    assert detection.os is not None, detection
    print(
        f"{'2.1 GiB: 2 GiB base layer, os-release symlinked 40 MiB in, 64 MiB layer above':<72} "
        f"{format_size(detection.bytes_read):>10} {seconds:>8.2f}  bounded: <= {format_size(READ_BUDGET)}"
    )

    # The example image, published twice: the second run finds the OS recorded for its digest.
    clock = VirtualClock()
    with tempfile.TemporaryDirectory() as tmp, mock_aws(), clock, EcrExtension(clock, emit_push_events=False):
        ecr = boto3.client("ecr", region_name=SOURCE_REGION)
        ecr.create_repository(repositoryName="bench/os")
        layout = open_layout(write_layout(Path(tmp) / "image", "docker-v2").path)
        digest = push_layout(layout, ecr, "bench/os", "1.0").digest
        s3 = boto3.client("s3", region_name=SOURCE_REGION)
        s3.create_bucket(Bucket="bench-pipeline", CreateBucketConfiguration={"LocationConstraint": SOURCE_REGION})
        records = OsRecords(s3, "bench-pipeline")
        image = PinnedImage.model_validate(
            {
                "container": "bench",
                "source": {"registry_id": "123456789012", "region": SOURCE_REGION, "repository": "bench/os"},
                "platform": "linux/amd64",
                "destination_repository": "bench/os",
            }
        )
        image = image.model_copy(update={"source": image.source.model_copy(update={"digest": digest})})
        downloaded = []
        for run in ("first run", "unchanged re-run"):
            registry = _CountingRegistry(SOURCE_REGION, ecr)
            started = time.perf_counter()
            check_publishable([image], DESTINATION_REGION, lambda region, registry=registry: registry, records)
            downloaded.append((run, registry.downloaded, time.perf_counter() - started))
    FIGURES["downloaded_unchanged"] = float(downloaded[-1][1])
    for run, count, seconds in downloaded:
        goal = "0" if run == "unchanged re-run" else ""
        print(f"{'example image (' + run + ')':<72} {format_size(count):>10} {seconds:>8.2f}  {goal}")


class _CountingRegistry:
    """The source registry (EcrRegistry), counting the blob bytes it downloads."""

    def __init__(self, region: str, client: Any) -> None:
        from mlpublish.images.registry import EcrRegistry

        self._registry, self.downloaded = EcrRegistry(region, client), 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)

    @contextmanager
    def open_blob(self, repository: str, digest: str, registry_id: str | None = None) -> Iterator[Iterator[bytes]]:
        with self._registry.open_blob(repository, digest, registry_id) as chunks:
            yield self._counted(chunks)

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.downloaded += len(chunk)
            yield chunk


COLD_IMPORT_GOAL = 1.2
COLD_IMPORT_ROUNDS = 3

# Run by the Lambda-like interpreter (-I -S: only the standard library on sys.path). Each step is an
# import or a statement; for each, the process's CPU seconds and wall seconds.
_TIME_STEPS = """
import importlib, os, sys, time
sys.path[:0] = sys.argv[1].split(os.pathsep)
for step in sys.argv[2:]:
    cpu, wall = time.process_time(), time.perf_counter()
    exec(step) if " " in step else importlib.import_module(step)
    print(time.process_time() - cpu, time.perf_counter() - wall)
"""

# What the handlers import besides boto3, timed one after the other after it, in one process.
_BESIDES_BOTO3 = {
    "pydantic, the state and release models": "mlpublish.state",
    "Powertools Logger, Tracer (X-Ray, botocore+httplib)": (
        "from aws_lambda_powertools import Logger, Tracer; from mlpublish.aws import TRACED_MODULES; "
        "Logger(); Tracer(patch_modules=TRACED_MODULES)"
    ),
    "Powertools BatchProcessor (the two SQS handlers)": "aws_lambda_powertools.utilities.batch",
    "building every state/release model (deferred)": (
        "import pydantic, mlpublish.release as r, mlpublish.state as s; "
        "[m.model_rebuild() for module in (r, s) for m in vars(module).values() "
        "if isinstance(m, type) and issubclass(m, pydantic.BaseModel) and m.__module__ == module.__name__]"
    ),
}

# The clients ResolveRelease makes on its first call, from the container's one Session (mlpublish.aws)
# and, as before it, from a Session each.
_FIRST_CLIENTS = "[('s3', 'us-east-1'), ('sts', 'us-east-1'), ('ecr', 'us-east-1'), ('ecr', 'us-east-2')]"
_CLIENTS_FROM = {
    "one Session": f"import mlpublish.aws as aws; [aws.client(s, r) for s, r in {_FIRST_CLIENTS}]",
    "a Session each": f"import boto3; [boto3.session.Session().client(s, region_name=r) for s, r in {_FIRST_CLIENTS}]",
}


def bench_cold_imports() -> None:
    """Each handler module imported cold, as Lambda's init does, ÷ a bare ``import boto3``."""
    from tools.check_lambda_package import ROOT, Function, functions, load_template, merge_globals

    from sandbox.lambda_env import LambdaEnvironmentError, ensure_environment

    print(
        "\n## Cold import of each handler in a fresh Lambda-like process "
        "(Python 3.13 -I -S; its code, the layer, the runtime's SDK; the template's environment)"
    )
    try:
        lambda_env = ensure_environment()
    except LambdaEnvironmentError as exc:
        print(f"did not run: {exc}")
        return
    template = load_template(ROOT / "template.yaml")
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    handlers = functions(template)

    def environment(function: Function) -> dict[str, str]:
        variables = dict(function.environment)
        properties = merge_globals(globals_, template["Resources"][function.logical_id].get("Properties") or {})
        if properties.get("Tracing") == "Active":
            # As on Lambda: Powertools' Tracer imports the X-Ray SDK and patches at import (the
            # package check turns tracing off; importing sends nothing, it only touches
            # /tmp/.aws-xray/initialized as on Lambda).
            variables.pop("POWERTOOLS_TRACE_DISABLED", None)
            variables["LAMBDA_TASK_ROOT"] = str(function.code_dir)
        return variables

    def timed(function: Function, *steps: str) -> list[tuple[float, float]]:
        """(CPU, wall) seconds of each step, in a new process."""
        paths = os.pathsep.join(lambda_env.sys_path(function.code_dir))
        command = [str(lambda_env.python), "-I", "-S", "-c", _TIME_STEPS, paths, *steps]
        done = subprocess.run(command, env=environment(function), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{function.logical_id}: {done.stderr.strip().splitlines()[-1]}")
        return [(float(cpu), float(wall)) for cpu, wall in (line.split() for line in done.stdout.splitlines())]

    # Rounds interleave the baseline with every handler; each figure is the best of the rounds
    # (what else runs on the machine only ever adds time), a ratio the best ÷ boto3's best.
    boto3_times: list[tuple[float, float]] = []
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in [f.logical_id for f in handlers]}
    besides: dict[str, list[tuple[float, float]]] = {name: [] for name in _BESIDES_BOTO3}
    clients: dict[str, list[tuple[float, float]]] = {name: [] for name in _CLIENTS_FROM}
    for _ in range(COLD_IMPORT_ROUNDS):
        boto3_times += timed(handlers[0], "boto3")
        for function in handlers:
            times[function.logical_id] += timed(function, function.module)
        steps = timed(handlers[0], "boto3", *_BESIDES_BOTO3.values())[1:]
        for name, step in zip(besides, steps, strict=True):
            besides[name].append(step)
        for name, step in _CLIENTS_FROM.items():
            clients[name] += timed(handlers[0], "boto3", step)[1:]

    def ratio(measured: list[tuple[float, float]], clock: int) -> float:
        return min(m[clock] for m in measured) / min(b[clock] for b in boto3_times)

    def cpu_ms(measured: list[tuple[float, float]]) -> float:
        return min(m[0] for m in measured) * 1000

    print(f"{'':<32} {'CPU ms':>7} {'÷ boto3':>8} {'goal':>7} {'':>8} {'wall ÷ boto3':>13}")
    print(f"{'import boto3 (bare)':<32} {cpu_ms(boto3_times):>7.1f} {1:>8.2f}")
    FIGURES["cold_import"] = max(ratio(times[function.logical_id], 0) for function in handlers)
    for function in handlers:
        measured = times[function.logical_id]
        verdict = "met" if ratio(measured, 0) <= COLD_IMPORT_GOAL else "not met"
        print(
            f"{function.logical_id:<32} {cpu_ms(measured):>7.1f} {ratio(measured, 0):>8.2f} "
            f"{'≤ ' + str(COLD_IMPORT_GOAL):>7} {verdict:>8} {ratio(measured, 1):>13.2f}"
        )
    print("what the handlers import besides boto3 (each after it and the lines above, in one process):")
    for name, measured in besides.items():
        print(f"  {name:<54} {cpu_ms(measured):>6.1f} ms {ratio(measured, 0):>6.2f} × boto3")
    print("the first call's four clients (s3, sts, ecr in two regions):")
    for name, measured in clients.items():
        print(f"  from {name:<49} {cpu_ms(measured):>6.1f} ms {ratio(measured, 0):>6.2f} × boto3")
    print(
        f"best of {COLD_IMPORT_ROUNDS} rounds; the import alone (not the interpreter's start), in CPU time "
        "(wall time beside it: other load on the machine skews it). Nothing is made at import but the "
        "Powertools objects and the settings: boto3's Session and clients come with the first call, the "
        "models' validators with their first use."
    )


def bench_blob_copy() -> None:
    from bench.blob_copy import bench_blob_copy as run

    ratios = run()
    FIGURES["copy_cpu"], FIGURES["copy_rss"] = ratios["cpu"], ratios["rss"]


def bench_artifact_copy() -> None:
    """Bytes through the copy Lambdas while a large artifact is published in parts."""
    from sandbox.oci import open_layout
    from sandbox.runner import RunOptions, Sandbox, load_release

    size_mib, bandwidth, timeout = 1024, 128, 3
    functions = ("PlanArtifacts", "CopyArtifacts", "CopyArtifactParts", "CompleteArtifact")
    object_operations = {"GetObject", "PutObject", "UploadPart"}
    print(
        f"\n## Artifact copy: a {size_mib} MiB model.tar.gz, S3 copies at {bandwidth} MiB/s, "
        f"CopyArtifactParts Timeout {timeout} s"
    )
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sys.path.insert(0, str(root / "tests"))
        from fixtures.images import write_layout
        from fixtures.models import large_model

        image = write_layout(tmp / "image", "oci").path
        model = large_model(tmp / "model.tar.gz", size_mib * MiB)
        release = root / "events" / "release.example.yaml"
        options = RunOptions(
            release=release,
            trigger="manual",
            validation="completed",
            model_data=model,
            bandwidth_mib_s=bandwidth,
            lambda_timeouts={"CopyArtifactParts": timeout},
            log_file=tmp / "lambda.log",
        )
        sandbox = Sandbox(load_release(release), options)
        size = model.stat().st_size
        started = time.perf_counter()
        # moto's notices of what its CloudFormation skips, and the errors its ASL interpreter logs for
        # a Choice's IsPresent on a path that is absent (handled: the choice is false)
        logging.disable(logging.ERROR)
        try:
            with (tmp / "out.log").open("w") as log, redirect_stdout(log), sandbox.running():
                _, delivery = sandbox.seed_and_trigger(open_layout(image))
                assert sandbox.stack is not None
                assert sandbox.lambdas is not None
                short, audit, stats = sandbox.stack.short_names, sandbox.audit, sandbox.lambdas.stats()
        finally:
            logging.disable(logging.NOTSET)
        real = time.perf_counter() - started
    ours = [(name, operation) for name, operation in audit.requests if short.get(name) in functions]
    through = sum(audit.bytes_in[key] + audit.bytes_out[key] for key in ours if key[1] in object_operations)
    answers = sum(audit.bytes_out[key] for key in ours)
    part_copies = sum(audit.requests[key] for key in ours if key[1] == "UploadPartCopy")
    parts = -(-size // (64 * MiB))
    print(f"{'status':<10} {'object MiB':>10} {'parts':>6} {'UploadPartCopy':>15} {'invocations':>12} {'real s':>7}")
    print(
        f"{delivery.status:<10} {size / MiB:>10.1f} {parts:>6} {part_copies:>15} "
        f"{stats['CopyArtifactParts']['invocations']:>12} {real:>7.1f}"
    )
    FIGURES["object_bytes_through_lambda"] = float(through)
    print(f"object bytes through the copy Lambdas: {through:,} (goal 0)")
    print(f"all S3 answer bytes to them (XML: listings, results): {answers:,}")


def bench_summary() -> None:
    """One table: each figure of this run beside its goal."""

    def shown(key: str, fmt: str) -> str:
        return format(FIGURES[key], fmt) if key in FIGURES else "not measured"

    rows = [
        ("bytes downloaded by an unchanged re-run (OS remembered)", shown("downloaded_unchanged", ",.0f"), "0"),
        ("peak RSS copying a 1 GiB blob ÷ a 16 MiB blob", shown("copy_rss", ".2f"), "≤ 1.10"),
        ("copy CPU ÷ sha256 of the same bytes (1 GiB, everything the copy does)", shown("copy_cpu", ".2f"), "≤ 2.0"),
        ("object bytes through Lambda for S3 copies", shown("object_bytes_through_lambda", ",.0f"), "0"),
        ("state transitions waiting out a 2-hour validation", shown("wait_2h_transitions", ".0f"), "≤ 12"),
        ("largest state, example release (bytes)", shown("max_state_example", ",.0f"), "< 8,192"),
        ("largest state, 15 containers × 100 layers (bytes)", shown("max_state_15x100", ",.0f"), "< 8,192"),
        ("history events, 15 containers × 100 layers", shown("history_15x100", ",.0f"), "(25,000 cap)"),
        ("bytes moved re-publishing an unchanged release", shown("moved_unchanged", ",.0f"), "0"),
        (
            "image bytes moved, next version on the same base layers",
            shown("moved_base_present", ",.0f"),
            f"{FIGURES['moved_base_present_goal']:,.0f} (the missing bytes)"
            if "moved_base_present_goal" in FIGURES
            else "the missing bytes",
        ),
        ("handler cold import ÷ bare import boto3 (the worst handler)", shown("cold_import", ".2f"), "≤ 1.2"),
        ("sandbox end-to-end wall time, example release (s)", shown("example_wall", ".1f"), "≤ 30"),
    ]
    print("\n## Summary: this run's figures and their goals")
    width = max(len(name) for name, *_ in rows)
    print(f"{'figure':<{width}}  {'measured':>14}  goal")
    for name, measured, goal in rows:
        print(f"{name:<{width}}  {measured:>14}  {goal}")


def main() -> int:
    _environment()
    warnings.simplefilter("ignore")
    print("# mlpublish benchmarks")
    bench_os_detection()
    bench_blob_copy()
    bench_waiting()
    bench_lambda_concurrency()
    bench_many_layers()
    bench_republish()
    bench_artifact_copy()
    bench_cold_imports()
    bench_summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Local validation under runc, on the real serving images (sandbox/images_real.py).

Each test runs the transform job SageMaker runs for a validation profile and asserts what
a seller would see: the output, the requests made, or the FailureReason. The images are
built once per machine and cached; the tests need root and runc (they fail under CI and
skip elsewhere without them).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures import serving_images
from tests.fixtures.serving_images import require_runc

from sandbox.images_real import TRAIN_FAILURE
from sandbox.oci import open_layout
from sandbox.runner import SAMPLE_VALIDATION_INPUT, sample_model_data
from sandbox.validation_local import (
    ID_PREFIX,
    PIPELINE_FIRST_PORT,
    RUNC_ROOT,
    Cancelled,
    ContainerUnderTest,
    Deadlines,
    JobResult,
    LayoutImage,
    TrainingJob,
    TransformJob,
    run_algorithm_profile,
    run_transform_job,
    sweep,
)

pytestmark = pytest.mark.integration
serving_image = serving_images.serving_image  # the session-scoped fixture

INPUT = "s3://validation/input/input.csv"
MODEL = "s3://artifacts/model.tar.gz"
FAST = Deadlines().scaled(0.02)  # 4.8 s to answer /ping, 12 s per invocation


class Storage:
    """S3 as a dict of URI -> bytes."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = dict(objects)

    def read(self, uri: str) -> bytes:
        return self.objects[uri]

    def list(self, uri_prefix: str) -> list[str]:
        return sorted(uri for uri in self.objects if uri.startswith(uri_prefix))

    def write(self, uri: str, body: bytes) -> None:
        self.objects[uri] = body


@pytest.fixture(scope="module")
def runc() -> str:
    return require_runc()


@pytest.fixture(scope="module")
def container(serving_image: Callable[[str], Path], runc: str) -> Iterator[Callable[..., ContainerUnderTest]]:
    layouts: list[Any] = []

    def make(kind: str, name: str = "inference", **environment: str) -> ContainerUnderTest:
        layout = open_layout(serving_image(kind)).__enter__()
        layouts.append(layout)
        manifest = json.loads(layout.read_blob(layout.select("latest").digest))
        return ContainerUnderTest(name, f"local/{kind}", LayoutImage(manifest, layout.open_blob), environment, MODEL)

    yield make
    for layout in layouts:
        layout.close()


def job(**changes: Any) -> TransformJob:
    definition: dict[str, Any] = {
        "MaxPayloadInMB": 6,
        "BatchStrategy": "SingleRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": INPUT}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": "s3://validation/output", "Accept": "text/csv"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    definition.update(changes)
    return TransformJob("profile", definition)


def run(containers: list[ContainerUnderTest], transform: TransformJob | None = None) -> tuple[JobResult, Storage]:
    storage = Storage({INPUT: SAMPLE_VALIDATION_INPUT, MODEL: sample_model_data()})
    return run_transform_job(transform or job(), containers, storage, FAST), storage


def listed(runc: str, root: Path = RUNC_ROOT) -> list[str]:
    done = subprocess.run([runc, "--root", str(root), "list", "-q"], capture_output=True, text=True, check=True)
    return done.stdout.split()


def ours(runc: str) -> list[str]:
    listed = subprocess.run(
        [runc, "--root", str(RUNC_ROOT), "list", "--format", "json"], capture_output=True, text=True, check=False
    )
    mine = f"{ID_PREFIX}-{os.getpid()}-"  # other processes may be validating at the same time
    return [item["id"] for item in json.loads(listed.stdout or "null") or [] if item["id"].startswith(mine)]


# ---- a container that serves ---------------------------------------------------------------------


def test_given_the_good_image_then_every_record_is_scored_with_the_model_and_written_as_sagemaker_names_it(
    container: Callable[..., ContainerUnderTest],
) -> None:
    result, storage = run([container("good")])

    assert result.failure_reason is None
    assert result.outputs == ["s3://validation/output/input.csv.out"]
    # sample model bias 0.1 + each line's sum (0.6, 1.5, 2.4), one line per record
    assert storage.objects["s3://validation/output/input.csv.out"] == b"3,0.7\n3,1.6\n3,2.5\n"
    assert [(r.request, r.outcome) for r in result.requests] == [
        ("GET /ping", "200 OK"),
        ("GET /execution-parameters", "200"),
        *[("POST /invocations (12 bytes)", "200")] * 3,
    ]


def test_given_multirecord_then_one_request_carries_every_record(
    container: Callable[..., ContainerUnderTest],
) -> None:
    result, storage = run([container("good")], job(BatchStrategy="MultiRecord"))

    assert [r.request for r in result.requests if r.request.startswith("POST")] == ["POST /invocations (36 bytes)"]
    assert storage.objects["s3://validation/output/input.csv.out"] == b"3,0.7\n3,1.6\n3,2.5\n"


def test_given_a_pipeline_then_containers_share_a_network_and_each_listens_on_its_bind_to_port(
    container: Callable[..., ContainerUnderTest],
) -> None:
    result, storage = run([container("good", "first"), container("good", "second")])

    assert result.failure_reason is None
    # the second container scores the first one's CSV answer ("3,0.7" -> 2 fields, 3.7 + 0.1)
    assert storage.objects["s3://validation/output/input.csv.out"] == b"2,3.8\n2,4.7\n2,5.6\n"
    assert [r.container for r in result.requests if r.request == "GET /ping"] == ["first", "second"]


def test_given_a_pipeline_container_that_ignores_bind_to_port_then_it_fails_naming_the_port(
    container: Callable[..., ContainerUnderTest],
) -> None:
    result, _ = run([container("good", "first"), container("wrong-port", "second")])

    assert result.failure_reason is not None
    assert f"must listen on port {PIPELINE_FIRST_PORT + 1} (SAGEMAKER_BIND_TO_PORT)" in result.failure_reason
    assert "container second (local/wrong-port)" in result.failure_reason


# ---- an algorithm's profile: train, then serve what was trained ----------------------------------

TRAIN = "s3://validation/training/train/train.csv"


def training_job(**changes: Any) -> TrainingJob:
    definition: dict[str, Any] = {
        "TrainingInputMode": "File",
        "HyperParameters": {"epochs": "2", "seasonality": "weekly"},
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": TRAIN}},
                "ContentType": "text/csv",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://validation/training-output/"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    definition.update(changes)
    return TrainingJob("profile", "algo-profile", definition)


def train_and_serve(
    container: Callable[..., ContainerUnderTest], kind: str, training: TrainingJob | None = None
) -> tuple[list[JobResult], Storage]:
    storage = Storage({INPUT: SAMPLE_VALIDATION_INPUT, TRAIN: SAMPLE_VALIDATION_INPUT})
    image = dataclasses.replace(container(kind), model_data_url=None)
    results = run_algorithm_profile(training or training_job(), image, job(), [image], storage, FAST)
    return results, storage


def test_given_an_algorithm_image_then_it_trains_on_the_channel_and_serves_the_model_it_trained(
    container: Callable[..., ContainerUnderTest], runc: str
) -> None:
    (trained, transformed), storage = train_and_serve(container, "good")
    model_uri = "s3://validation/training-output/algo-profile/output/model.tar.gz"

    assert (trained.job, trained.failure_reason, trained.outputs) == ("training", None, [model_uri])
    assert [(r.request, r.outcome) for r in trained.requests] == [("train", "exited with code 0")]
    with tarfile.open(fileobj=io.BytesIO(storage.objects[model_uri]), mode="r:gz") as archive:
        model = json.load(archive.extractfile("model.json"))  # type: ignore[arg-type]
    assert model["hyperparameters"] == {"epochs": "2", "seasonality": "weekly"}  # strings, as SageMaker writes
    assert model["channels"] == {
        "train": {
            "ContentType": "text/csv",
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
            "records": 3,
        }
    }
    assert model["host"] == "algo-1"
    # the transform job served the trained model: bias 1.5 (mean row sum) + each line's sum
    assert transformed.failure_reason is None
    assert storage.objects["s3://validation/output/input.csv.out"] == b"3,2.1\n3,3.0\n3,3.9\n"
    assert ours(runc) == []


def test_given_train_exits_1_with_a_failure_file_then_the_job_fails_with_sagemakers_algorithm_error(
    container: Callable[..., ContainerUnderTest],
) -> None:
    results, storage = train_and_serve(container, "train-fails")

    [trained] = results  # nothing to transform
    assert trained.failure_reason == f"AlgorithmError: {TRAIN_FAILURE}, exit code: 1"
    assert trained.requests[0].outcome.startswith(f"exited with code 1; last log lines: {TRAIN_FAILURE}")
    assert not any(uri.endswith("model.tar.gz") for uri in storage.objects)


def test_given_training_runs_over_max_runtime_then_it_is_stopped_and_the_job_fails(
    container: Callable[..., ContainerUnderTest], runc: str
) -> None:
    # 1 s scaled by 0.02: 20 ms, less than the Python in the image takes to start
    results, _ = train_and_serve(container, "good", training_job(StoppingCondition={"MaxRuntimeInSeconds": 1}))

    [trained] = results
    assert trained.failure_reason is not None
    assert "stopped at StoppingCondition.MaxRuntimeInSeconds=1 (scaled to 0.02 s)" in trained.failure_reason
    assert ours(runc) == []


# ---- containers that fail as they would on SageMaker ---------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cause"),
    [
        ("no-server", "the container exited with code 0 before"),
        ("wrong-port", "did not answer GET /ping with 200 within 4.8 s of start (last try: nothing listens on port"),
        ("needs-internet", "exited with code 1 before /ping answered 200. Last log lines: downloading https://pypi"),
        ("errors-500", "POST /invocations (12 bytes) failed: HTTP 500 (tried 4 times)"),
        ("slow-ping", "(last try: no answer within 2 s"),
        ("oversize-response", "answered 7.0 MB, over MaxPayloadInMB=6"),
        ("arm64", "its entrypoint is not an x86-64 program (image architecture arm64)"),
    ],
)
def test_given_a_broken_image_then_validation_fails_saying_which_request_and_how(
    container: Callable[..., ContainerUnderTest], runc: str, kind: str, cause: str
) -> None:
    result, storage = run([container(kind)])

    assert result.failure_reason is not None
    assert cause in result.failure_reason
    assert result.failure_reason.startswith("ClientError: transform job for validation profile profile, container")
    assert not any(uri.endswith(".out") for uri in storage.objects)
    assert ours(runc) == []  # killed and deleted however it ended


def test_given_errors_500_then_the_failure_carries_the_containers_traceback(
    container: Callable[..., ContainerUnderTest],
) -> None:
    result, _ = run([container("errors-500")])

    assert result.failure_reason is not None
    assert "ValueError: record" in result.failure_reason
    assert "its values sum over 1.0: '0.4,0.5,0.6'" in result.failure_reason


# ---- clean-up ------------------------------------------------------------------------------------


def test_given_a_job_cancelled_while_it_waits_for_ping_then_it_ends_at_once_and_leaves_nothing(
    container: Callable[..., ContainerUnderTest], runc: str
) -> None:
    cancel = threading.Event()
    storage = Storage({INPUT: SAMPLE_VALIDATION_INPUT, MODEL: sample_model_data()})
    outcome: dict[str, BaseException] = {}

    def run_it() -> None:
        try:
            run_transform_job(job(), [container("slow-ping")], storage, Deadlines(), cancel=cancel)  # 4 minutes
        except BaseException as exc:
            outcome["raised"] = exc

    thread = threading.Thread(target=run_it)
    thread.start()
    time.sleep(1.5)
    cancel.set()
    thread.join(timeout=30)

    assert not thread.is_alive()
    assert isinstance(outcome.get("raised"), Cancelled)
    assert ours(runc) == []


def test_given_a_container_left_by_a_dead_process_then_the_next_job_removes_it(
    container: Callable[..., ContainerUnderTest], runc: str, tmp_path: Path
) -> None:
    pid = 2**22 + 1  # above pid_max on every Linux default: never a live process
    bundle = tmp_path / f"{ID_PREFIX}-{pid}-left" / "c0"
    (bundle / "rootfs").mkdir(parents=True)
    subprocess.run([runc, "spec", "--bundle", str(bundle)], capture_output=True, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=["sleep", "600"])
    for directory in ("bin", "lib", "lib64", "usr"):  # the host's programs, read-only
        if Path(f"/{directory}").exists():
            config["mounts"].append(
                {"destination": f"/{directory}", "type": "bind", "source": f"/{directory}", "options": ["rbind", "ro"]}
            )
    (bundle / "config.json").write_text(json.dumps(config))
    left = f"{ID_PREFIX}-{pid}-left-0"
    # A state directory of its own: another worker's job sweeping the host's one would take it first.
    root = tmp_path / "runc-state"
    root.mkdir()
    subprocess.run([runc, "--root", str(root), "create", "--bundle", str(bundle), left], check=True, timeout=30)
    assert left in listed(runc, root)

    removed = sweep(runc, root)

    assert left in removed
    assert left not in listed(runc, root)
    assert not bundle.exists()


class _ExitsWhileNobodyLooks:
    """A training container that exits (code 0) while the sandbox's thread is kept from looking
    until after MaxRuntimeInSeconds, as on a busy machine."""

    name, container_id, pid = "algo-1", "c0", 0

    def __init__(self, unseen_seconds: float) -> None:
        self.exited = False
        self.process = self
        self.unseen_seconds = unseen_seconds

    def exit_code(self) -> int | None:
        return 0 if self.exited else None

    def wait(self, timeout: float) -> int:
        time.sleep(self.unseen_seconds)
        self.exited = True
        return 0


def test_given_training_that_exits_only_after_max_runtime_unseen_then_the_job_fails_as_stopped() -> None:
    from sandbox.validation_local import LocalValidationError, _Training

    job = training_job(StoppingCondition={"MaxRuntimeInSeconds": 1})
    deadlines = Deadlines().scaled(0.02)  # MaxRuntimeInSeconds 1 s: 20 ms
    result = JobResult(profile_name=job.profile_name, job="training")
    training = _Training(job, None, None, deadlines, None, result, time.monotonic(), threading.Event())  # type: ignore[arg-type]

    with pytest.raises(LocalValidationError, match="MaxRuntimeExceeded"):
        training._wait(_ExitsWhileNobodyLooks(unseen_seconds=0.1), time.monotonic())  # type: ignore[arg-type]

    assert [record.outcome for record in result.requests] == ["stopped after MaxRuntimeInSeconds (0.02 s)"]

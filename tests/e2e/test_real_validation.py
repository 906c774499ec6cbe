"""Validation for real: the sandbox's SageMaker runs the validation profile on the published image.

The images are the real serving images of sandbox/images_real.py (Debian bookworm + a
SageMaker-style server), built once per machine. A good one is ready for listing with the
report naming every request made; each broken one ends FAILED at validation (or at preflight,
where it can be known before anything is copied), its announcement naming the cause.

The broken images run in one sandbox, one release each, as a seller would publish product
after product into one stack: they share the Debian layers, which are copied once. An
algorithm product joins them: the same image also trains (`train`), so the sandbox's SageMaker
runs the algorithm's training job, writes the model it trained where SageMaker writes it, and
runs the transform job on that model; its ``train-fails`` variant fails training.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.conftest import EXAMPLE_RELEASE
from tests.fixtures import serving_images
from tests.fixtures.cli_runs import CliRun
from tests.fixtures.serving_images import require_runc

from sandbox.images_real import TRAIN_FAILURE
from sandbox.oci import open_layout
from sandbox.report import delivery_report
from sandbox.runner import RunOptions, Sandbox

pytestmark = pytest.mark.e2e
serving_image = serving_images.serving_image  # the session-scoped fixture

FAST = "0.02"  # SageMaker's 4 minutes for /ping become 4.8 s
ALGORITHM_RELEASE = EXAMPLE_RELEASE.with_name("release.algorithm.yaml")


@pytest.fixture(scope="module")
def good(
    publish: Callable[..., CliRun], serving_image: Callable[[str], Path], release_file: Callable[..., Path]
) -> CliRun:
    require_runc()
    return publish("--release", release_file(), "--image", serving_image("good"), "--validation", "real")


def test_given_a_serving_image_when_validated_for_real_then_it_is_ready_for_listing(good: CliRun) -> None:
    assert good.exit_code == 0, good.stderr
    assert good.reported["status"] == "SUCCEEDED"
    assert good.reported["validation"]["mode"] == "real"
    assert good.reported["notices"] == []
    [ready] = good.events("Release Ready For Listing")
    assert ready["detail"]["model_package_arn"] == good.reported["model_package_arn"]


def test_given_a_real_validation_then_the_report_names_each_request_and_its_outcome(good: CliRun) -> None:
    [job] = good.reported["validation"]["jobs"]

    assert job["profile"] == "sentiment-validation"
    assert job["status"] == "Completed"
    assert [(r["request"], r["outcome"]) for r in job["requests"]] == [
        ("GET /ping", "200 OK"),
        ("GET /execution-parameters", "200"),
        *[("POST /invocations (12 bytes)", "200")] * 3,  # SingleRecord, Line: one request per CSV line
    ]
    assert job["limits"]["instance_type"] == "ml.m5.large"


def test_given_a_real_validation_then_its_output_is_where_the_profile_says(good: CliRun) -> None:
    [job] = good.reported["validation"]["jobs"]
    package = good.reported["model_package"]
    [profile] = package["ValidationSpecification"]["ValidationProfiles"]
    output_path = profile["TransformJobDefinition"]["TransformOutput"]["S3OutputPath"]

    assert job["outputs"] == [f"{output_path.rstrip('/')}/input.csv.out"]


# ---- broken images, one sandbox ------------------------------------------------------------------

BROKEN = {
    # kind: (stage, error, what the announcement says)
    "no-server": ("AwaitValidation", "ValidationFailed", "the container exited with code 0 before"),
    "wrong-port": ("AwaitValidation", "ValidationFailed", "did not answer GET /ping with 200 within 4.8 s"),
    "needs-internet": ("AwaitValidation", "ValidationFailed", "cannot download https://pypi.org/simple/numpy/"),
    "errors-500": ("AwaitValidation", "ValidationFailed", "POST /invocations (12 bytes) failed: HTTP 500"),
    "slow-ping": ("AwaitValidation", "ValidationFailed", "(last try: no answer within 2 s"),
    "oversize-response": ("AwaitValidation", "ValidationFailed", "over MaxPayloadInMB=6"),
    "arm64": ("ResolveRelease", "PreflightFailed", "linux/arm64"),
}


def tagged(document: dict[str, Any], product: str, tag: str) -> dict[str, Any]:
    """A copy of a release for another product, its first container's image under ``tag``."""
    document = yaml.safe_load(yaml.safe_dump(document))
    document["product"]["name"] = product
    image = document["containers"][0]["image"]
    document["containers"][0]["image"] = f"{image.rpartition(':')[0]}:{tag}"
    return document


@pytest.fixture(scope="module")
def broken(serving_image: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every broken image released in turn into one sandbox, then a pipeline and an algorithm
    (one that trains, one whose training fails): the report of each."""
    require_runc()
    work = tmp_path_factory.mktemp("broken")
    example = yaml.safe_load(EXAMPLE_RELEASE.read_text())
    options = RunOptions(validation="real", deadline_scale=float(FAST), log_file=work / "lambda.log")
    sandbox = Sandbox(None, options)
    reports: dict[str, Any] = {}

    def publish_one(name: str, document: dict[str, Any], kind: str) -> dict[str, Any]:
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document))
        sandbox.use_release(path)
        with open_layout(serving_image(kind)) as layout:
            digest, delivery = sandbox.seed_and_trigger(layout)
        report: dict[str, Any] = delivery_report(sandbox, delivery, source_digest=digest)
        reports[name] = report
        return report

    with contextlib.redirect_stdout(io.StringIO()), sandbox.running():
        for kind in BROKEN:
            publish_one(kind, tagged(example, f"acme-{kind}", kind), kind)
        # An inference pipeline of two serving containers: each listens on SAGEMAKER_BIND_TO_PORT.
        document = yaml.safe_load(yaml.safe_dump(example))
        document["product"]["name"] = "acme-pipeline"
        first = document["containers"][0]
        first["image"] = f"{first['image'].rpartition(':')[0]}:pipeline"
        document["containers"].append({**first, "name": "postprocess", "model_data": None})
        release = work / "pipeline.yaml"
        release.write_text(
            yaml.safe_dump(
                {
                    **document,
                    "containers": [
                        {key: value for key, value in c.items() if value is not None} for c in document["containers"]
                    ],
                }
            )
        )
        sandbox.use_release(release)
        with open_layout(serving_image("good")) as layout:
            digest, delivery = sandbox.seed_and_trigger({"inference": layout, "postprocess": layout})
        reports["pipeline"] = delivery_report(sandbox, delivery, source_digest=digest)
        algorithm = yaml.safe_load(ALGORITHM_RELEASE.read_text())
        for kind in ("good", "train-fails"):
            report = publish_one(f"algorithm-{kind}", tagged(algorithm, f"acme-forecast-{kind}", kind), kind)
            s3 = sandbox.aws("s3", sandbox.publishing_region)
            reports[f"algorithm-{kind} outputs"] = {
                uri: s3.get_object(Bucket=uri[5:].split("/", 1)[0], Key=uri[5:].split("/", 1)[1])["Body"].read()
                for job in report["validation"]["jobs"]
                for uri in job["outputs"]
            }
    return reports


def test_given_a_pipeline_of_serving_containers_then_it_is_ready_each_on_its_own_port(broken: dict[str, Any]) -> None:
    report = broken["pipeline"]
    [job] = report["validation"]["jobs"]

    assert report["status"] == "SUCCEEDED", report["failure"]
    pings = [r for r in job["requests"] if r["request"] == "GET /ping"]
    assert [(r["container"], r["outcome"]) for r in pings] == [("sentiment", "200 OK"), ("sentiment-2", "200 OK")]
    invocations = [r["container"] for r in job["requests"] if r["request"].startswith("POST")]
    assert invocations == ["sentiment", "sentiment-2"] * 3  # each record through both, in order


@pytest.mark.parametrize("kind", list(BROKEN))
def test_given_a_broken_image_then_the_release_fails_where_it_can_be_known_and_says_why(
    broken: dict[str, Any], kind: str
) -> None:
    stage, error, cause = BROKEN[kind]
    report = broken[kind]
    [note] = report["notifications"]

    assert report["status"] == "FAILED"
    assert (report["failure"]["stage"], report["failure"]["error"]) == (stage, error)
    assert any(cause in reason for reason in report["failure"]["reasons"]), report["failure"]
    assert cause in note["message"]
    assert note["outcome"] == "failed"


@pytest.mark.parametrize("kind", [kind for kind, (stage, _, _) in BROKEN.items() if stage == "AwaitValidation"])
def test_given_a_validation_failure_then_the_report_shows_the_request_that_failed(
    broken: dict[str, Any], kind: str
) -> None:
    [job] = broken[kind]["validation"]["jobs"]

    assert job["status"] == "Failed"
    assert job["requests"], "at least the container's start or its /ping is recorded"
    assert job["failure_reason"].startswith("ClientError: transform job for validation profile sentiment-validation")


def test_given_an_image_refused_at_preflight_then_nothing_was_copied_or_validated(broken: dict[str, Any]) -> None:
    report = broken["arm64"]

    assert report["model_package_arn"] is None
    assert report["blobs_copied"] == 0
    assert report["validation"]["jobs"] == []


# ---- an algorithm: its training job, then its transform job on the model it trained --------------


def test_given_an_algorithm_whose_image_trains_and_serves_then_it_is_ready_for_listing_after_both_jobs_ran(
    broken: dict[str, Any],
) -> None:
    report = broken["algorithm-good"]
    [ready] = [event for event in report["events"] if event["detail-type"] == "Release Ready For Listing"]
    training, transform = report["validation"]["jobs"]

    assert report["status"] == "SUCCEEDED", report["failure"]
    assert ready["detail"]["algorithm_arn"] == report["model_package_arn"]
    assert report["notices"] == []  # nothing "not run"
    assert [(job["job"], job["status"]) for job in (training, transform)] == [
        ("training", "Completed"),
        ("transform", "Completed"),
    ]
    assert [(r["request"], r["outcome"]) for r in training["requests"]] == [("train", "exited with code 0")]


def test_given_an_algorithm_validated_for_real_then_the_model_it_trained_is_where_sagemaker_writes_it_and_served(
    broken: dict[str, Any],
) -> None:
    report = broken["algorithm-good"]
    training, transform = report["validation"]["jobs"]
    [profile] = report["model_package"]["ValidationSpecification"]["ValidationProfiles"]
    output_path = profile["TrainingJobDefinition"]["OutputDataConfig"]["S3OutputPath"]
    [model] = training["outputs"]
    [scored] = transform["outputs"]

    assert model.startswith(output_path)
    assert model.endswith("/output/model.tar.gz")
    # the sample rows sum to 0.6, 1.5 and 2.4: the model trained on them has bias 1.5
    assert broken["algorithm-good outputs"][scored] == b"3,2.1\n3,3.0\n3,3.9\n"


def test_given_an_algorithm_whose_training_fails_then_the_announcement_carries_sagemakers_algorithm_error(
    broken: dict[str, Any],
) -> None:
    report = broken["algorithm-train-fails"]
    [note] = report["notifications"]
    [training] = report["validation"]["jobs"]  # no transform job without a trained model
    reason = f"AlgorithmError: {TRAIN_FAILURE}, exit code: 1"

    assert report["status"] == "FAILED"
    assert (report["failure"]["stage"], report["failure"]["error"]) == ("AwaitValidation", "ValidationFailed")
    assert any(f"Training job validation failed: {reason}" in item for item in report["failure"]["reasons"])
    assert reason in note["message"]
    assert (training["job"], training["status"], training["failure_reason"]) == ("training", "Failed", reason)

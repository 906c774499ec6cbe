"""Algorithm products end to end: the training image and channel data are published, the
algorithm is created certified with its validation profile, validated, and announced; a
release that breaks an algorithm rule is refused before anything is copied."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.fixtures.cli_runs import VALIDATION_MINUTES, CliRun
from tests.fixtures.images import WrittenLayout

pytestmark = pytest.mark.e2e

ALGORITHM_RELEASE = Path(__file__).resolve().parents[2] / "events" / "release.algorithm.yaml"
READY = "Release Ready For Listing"
PUBLISHING_REGION = "us-east-2"
ACCOUNT = "123456789012"


@pytest.fixture(scope="session")
def algorithm_file(e2e_dir: Path) -> Callable[..., Path]:
    """``algorithm_file(name, change)``: events/release.algorithm.yaml, optionally edited."""

    def make(name: str = "algorithm", change: Callable[[dict[str, Any]], None] | None = None) -> Path:
        path = e2e_dir / "releases" / f"{name}.yaml"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            document = yaml.safe_load(ALGORITHM_RELEASE.read_text())
            if change is not None:
                change(document)
            path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    return make


PACKAGE_MODEL = "s3://acme-ml-artifacts/forecast/2.0.0/retail/model.tar.gz"


def with_package(document: dict[str, Any]) -> None:
    document["package"] = {"model_data": PACKAGE_MODEL}


@pytest.fixture(scope="module")
def algorithm(
    publish: Callable[..., CliRun], algorithm_file: Callable[..., Path], image: Callable[[str], WrittenLayout]
) -> CliRun:
    """The example algorithm, also publishing a model package built on it (its package section)."""
    return publish(
        "--release", algorithm_file("algorithm-with-package", with_package), "--image", image("docker-v2").path,
        "--validation-minutes", str(VALIDATION_MINUTES), "--repeat",
    )  # fmt: skip


def test_given_an_algorithm_release_when_pushed_then_it_is_ready_for_listing_with_one_certified_algorithm(
    algorithm: CliRun,
) -> None:
    report = algorithm.reported
    [event] = algorithm.events(READY)
    [note] = report["notifications"]
    described = report["model_package"]  # DescribeAlgorithm of what the release created

    assert algorithm.exit_code == 0, algorithm.stderr
    assert report["status"] == "SUCCEEDED"
    assert report["algorithms"] == [event["detail"]["algorithm_arn"]]  # the repeat made no second one
    assert report["model_packages"] == [event["detail"]["model_package_arn"]]  # nor a second package
    assert event["detail"]["kind"] == "algorithm"
    assert ":algorithm/acme-forecast-2-0-0-" in event["detail"]["algorithm_arn"]
    assert note["subject"] == "Ready for listing: acme-forecast 2.0.0"
    assert (described["AlgorithmStatus"], described["CertifyForMarketplace"]) == ("Completed", True)
    assert report["virtual_seconds"] >= VALIDATION_MINUTES * 60


def test_given_an_algorithm_release_with_a_package_then_the_package_is_built_on_it_once_it_is_validated(
    algorithm: CliRun,
) -> None:
    report = algorithm.reported
    [event] = algorithm.events(READY)
    [note] = report["notifications"]
    [model] = [item for item in event["detail"]["artifacts"] if item["role"] == "package_model_data"]

    assert ":model-package/acme-forecast-2-0-0-model-" in event["detail"]["model_package_arn"]
    assert f"Model package built on it: {event['detail']['model_package_arn']}" in note["message"]
    # Created after the algorithm's validation ended, then validated in its own wait: each took
    # the 45 virtual minutes, each ended by SageMaker's event.
    assert report["wait_transitions"]["validation"] == report["wait_transitions"]["package_validation"] == 5
    assert model["uri"].startswith(f"s3://mlpublish-{ACCOUNT}-{PUBLISHING_REGION}/")
    assert "/package/" in model["uri"]


def test_given_an_algorithm_release_then_it_trains_and_serves_with_the_published_image(algorithm: CliRun) -> None:
    described = algorithm.reported["model_package"]
    [image] = algorithm.reported["images"]
    training = described["TrainingSpecification"]
    [container] = described["InferenceSpecification"]["Containers"]

    assert training["TrainingImageDigest"] == container["ImageDigest"] == image["published_image_digest"]
    assert training["TrainingImage"].startswith(f"123456789012.dkr.ecr.{PUBLISHING_REGION}.amazonaws.com/")
    assert [channel["Name"] for channel in training["TrainingChannels"]] == ["train", "validation"]
    assert [metric["Name"] for metric in training["MetricDefinitions"]] == ["validation:rmse"]


def test_given_an_algorithm_release_then_its_training_data_is_copied_into_the_publishing_region(
    algorithm: CliRun,
) -> None:
    [profile] = algorithm.reported["model_package"]["ValidationSpecification"]["ValidationProfiles"]
    [channel] = profile["TrainingJobDefinition"]["InputDataConfig"]
    located = {item["uri"]: item["region"] for item in algorithm.reported["published_objects"]}
    training_data = channel["DataSource"]["S3DataSource"]["S3Uri"]

    assert located[training_data] == PUBLISHING_REGION
    assert set(located.values()) == {PUBLISHING_REGION}
    assert "/training/train/" in training_data
    assert any(key.endswith("/train.csv") for key in algorithm.published.artifacts)


@pytest.fixture(scope="module")
def separate_trainer(
    publish: Callable[..., CliRun], algorithm_file: Callable[..., Path], image: Callable[[str], WrittenLayout]
) -> CliRun:
    def trains_elsewhere(document: dict[str, Any]) -> None:
        document["training"]["image"] = "123456789012.dkr.ecr.us-west-2.amazonaws.com/acme/forecast-train:2.0.0"

    return publish(
        "--release", algorithm_file("separate-trainer", trains_elsewhere),
        "--image", f"inference={image('docker-v2').path}", "--image", f"training={image('oci').path}",
    )  # fmt: skip


def test_given_a_separate_training_image_then_both_images_are_published_and_the_algorithm_trains_with_its_copy(
    separate_trainer: CliRun,
) -> None:
    described = separate_trainer.reported["model_package"]
    published = {image["container"]: image for image in separate_trainer.reported["images"]}

    assert separate_trainer.reported["status"] == "SUCCEEDED", separate_trainer.stderr
    assert set(published) == {"inference", "training"}
    assert described["TrainingSpecification"]["TrainingImageDigest"] == published["training"]["published_image_digest"]
    assert "/acme/forecast-train@" in described["TrainingSpecification"]["TrainingImage"]
    [container] = described["InferenceSpecification"]["Containers"]
    assert container["ImageDigest"] == published["inference"]["published_image_digest"]


def breaks_two_rules(document: dict[str, Any]) -> None:
    document["validation"]["training"]["hyperparameters"].update(epochs=900)
    document["validation"]["training"]["channels"].update(test="s3://acme-ml-artifacts/t.csv")


def test_given_an_algorithm_that_breaks_rules_when_released_then_it_is_refused_before_any_copy_naming_each(
    publish: Callable[..., CliRun], algorithm_file: Callable[..., Path], image: Callable[[str], WrittenLayout]
) -> None:
    run = publish("--release", algorithm_file("broken", breaks_two_rules), "--image", image("docker-v2").path)
    failure = run.reported["failure"]

    assert run.exit_code == 1, run.stderr
    assert (failure["stage"], failure["error"]) == ("ResolveRelease", "PreflightFailed")
    for field in (
        "validation.training.hyperparameters.epochs: 900 is outside 1..500",
        "validation.training.channels.test: the algorithm declares no channel 'test'",
    ):
        assert any(reason.startswith(field) for reason in failure["reasons"]), failure["reasons"]
    assert run.reported["blobs_copied"] == run.reported["bytes_copied"] == 0
    assert run.published.images == ()
    assert run.published.artifacts == ()
    assert run.reported["algorithms"] == []


@pytest.fixture(scope="module")
def failed_training(
    publish: Callable[..., CliRun], algorithm_file: Callable[..., Path], image: Callable[[str], WrittenLayout]
) -> CliRun:
    return publish("--release", algorithm_file(), "--image", image("docker-v2").path, "--validation", "failed")


def test_given_an_algorithm_whose_validation_training_fails_then_sagemakers_reason_is_announced(
    failed_training: CliRun,
) -> None:
    failure = failed_training.reported["failure"]
    [note] = failed_training.reported["notifications"]
    [event] = failed_training.events("Release Failed")

    assert (failure["stage"], failure["error"]) == ("AwaitValidation", "ValidationFailed")
    assert any("Training job validation failed: AlgorithmError" in reason for reason in failure["reasons"])
    assert "Training job validation failed" in note["message"]
    assert event["detail"]["algorithm_arn"] == failed_training.reported["model_package_arn"]


FROM_ALGORITHM = ALGORITHM_RELEASE.with_name("release.from-algorithm.yaml")


@pytest.fixture(scope="module")
def algorithm_then_package(
    publish: Callable[..., CliRun], algorithm_file: Callable[..., Path], image: Callable[[str], WrittenLayout]
) -> CliRun:
    return publish(
        "--release", algorithm_file(), "--image", image("docker-v2").path, "--then-package", FROM_ALGORITHM,
    )  # fmt: skip


def test_given_an_algorithm_then_a_package_built_on_it_then_both_are_ready_for_listing_each_once(
    algorithm_then_package: CliRun,
) -> None:
    report = algorithm_then_package.reported
    package = report["package"]
    [ready] = [event for event in package["events"] if event["detail-type"] == READY]
    algorithm_arn = report["model_package_arn"]

    assert algorithm_then_package.exit_code == 0, algorithm_then_package.stderr
    assert (report["status"], package["status"]) == ("SUCCEEDED", "SUCCEEDED")
    assert package["algorithms"] == [algorithm_arn]  # one algorithm, not a second one for the package
    assert package["model_packages"] == [ready["detail"]["model_package_arn"]]  # one package
    assert ready["detail"]["source_algorithm_arn"] == algorithm_arn
    assert ":model-package/acme-forecast-retail-2-0-0-" in ready["detail"]["model_package_arn"]


def test_given_a_package_built_on_an_algorithm_then_sagemaker_builds_it_on_the_published_model(
    algorithm_then_package: CliRun,
) -> None:
    package = algorithm_then_package.reported["package"]
    described = package["model_package"]
    [source] = described["SourceAlgorithmSpecification"]["SourceAlgorithms"]
    located = {item["uri"]: item["region"] for item in package["published_objects"]}
    [note] = package["notifications"]

    assert source["AlgorithmName"] == algorithm_then_package.reported["model_package_arn"]
    assert located[source["ModelDataUrl"]] == PUBLISHING_REGION  # the model data was copied there
    assert set(located.values()) == {PUBLISHING_REGION}
    assert "/source-algorithm/" in source["ModelDataUrl"]
    assert described["CertifyForMarketplace"] is True
    assert package["images"] == []  # the algorithm serves it: no image of its own
    assert f"Built on algorithm: {source['AlgorithmName']}" in note["message"]

"""The parts of an algorithm's local training job that need no container: the config files
SageMaker writes, where channel objects land, the model archive and the FailureReason."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from sandbox.validation_local import (
    FAILURE_REASON_MAX,
    Deadlines,
    TrainingJob,
    Unsupported,
    algorithm_error,
    channel_objects,
    model_archive,
    training_config,
)

pytestmark = pytest.mark.unit


def definition(**changes: Any) -> dict[str, Any]:
    """A TrainingJobDefinition as the pipeline sends it (layers/publishing/mlpublish/sagemaker.py)."""
    job: dict[str, Any] = {
        "TrainingInputMode": "File",
        "HyperParameters": {"epochs": "2", "learning_rate": "0.01"},
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": "s3://b/training/train/train.csv",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/csv",
                "CompressionType": "None",
                "InputMode": "File",
            },
            {
                "ChannelName": "validation",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/training/validation/"}},
            },
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://b/output/training/"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    job.update(changes)
    return job


def config(**changes: Any) -> dict[str, Any]:
    return {name: json.loads(body) for name, body in training_config(definition(**changes)).items()}


def test_given_a_training_job_then_sagemakers_three_config_files_are_written() -> None:
    assert sorted(config()) == ["hyperparameters.json", "inputdataconfig.json", "resourceconfig.json"]


def test_given_hyperparameters_then_every_value_is_a_string_as_sagemaker_writes_them() -> None:
    written = config(HyperParameters={"epochs": 2, "learning_rate": 0.01, "seasonality": "weekly"})

    assert written["hyperparameters.json"] == {"epochs": "2", "learning_rate": "0.01", "seasonality": "weekly"}


def test_given_channels_then_inputdataconfig_has_one_entry_each_with_sagemakers_keys() -> None:
    channels = config()["inputdataconfig.json"]

    assert channels == {
        "train": {
            "ContentType": "text/csv",
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
            "CompressionType": "None",
        },
        # No ContentType or CompressionType given: none written; the job's input mode and the
        # API's defaults fill the rest.
        "validation": {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        },
    }


def test_given_one_instance_then_resourceconfig_names_the_one_host_algo_1() -> None:
    assert config()["resourceconfig.json"] == {
        "current_host": "algo-1",
        "hosts": ["algo-1"],
        "network_interface_name": "eth0",
    }


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"TrainingInputMode": "Pipe"}, "Pipe input mode"),
        ({"ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2}}, "distributed training"),
    ],
)
def test_given_what_the_sandbox_does_not_run_then_it_says_so_rather_than_pretending(
    change: dict[str, Any], said: str
) -> None:
    job = definition(**change)
    if "TrainingInputMode" in change:
        job["InputDataConfig"][0].pop("InputMode")

    with pytest.raises(Unsupported, match=said):
        training_config(job)


def test_given_a_failure_file_then_the_reason_is_sagemakers_algorithm_error_with_the_exit_code() -> None:
    assert algorithm_error("too few rows\n", 1) == "AlgorithmError: too few rows, exit code: 1"


def test_given_no_failure_file_then_the_reason_is_empty_before_the_exit_code_as_sagemaker_says() -> None:
    assert algorithm_error("", 1) == "AlgorithmError: , exit code: 1"


def test_given_a_long_failure_file_then_the_reason_is_cut_to_sagemakers_limit_keeping_the_exit_code() -> None:
    reason = algorithm_error("x" * 5000, 137)

    assert len(reason) == FAILURE_REASON_MAX
    assert reason.startswith("AlgorithmError: xxx")
    assert reason.endswith("x, exit code: 137")


class Listing:
    def __init__(self, uris: list[str]) -> None:
        self.uris = uris

    def list(self, uri_prefix: str) -> list[str]:
        return [uri for uri in self.uris if uri.startswith(uri_prefix)]

    def read(self, uri: str) -> bytes:
        raise AssertionError("not read")

    def write(self, uri: str, body: bytes) -> None:
        raise AssertionError("not written")


def test_given_a_prefix_then_each_object_lands_under_the_channel_by_its_key_after_the_prefixs_folder() -> None:
    storage = Listing(["s3://b/data/train.csv", "s3://b/data/train/part-1.csv", "s3://b/data/", "s3://b/other.csv"])

    assert channel_objects(storage, "s3://b/data/train") == [
        ("train.csv", "s3://b/data/train.csv"),
        ("train/part-1.csv", "s3://b/data/train/part-1.csv"),
    ]
    assert channel_objects(storage, "s3://b/data/train.csv") == [("train.csv", "s3://b/data/train.csv")]


def test_given_a_model_directory_then_the_archive_holds_its_files_by_relative_name(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    (tmp_path / "model.json").write_text('{"bias": 1.5}')
    (tmp_path / "weights" / "layer.bin").write_bytes(b"\0\1")

    with tarfile.open(fileobj=io.BytesIO(model_archive(tmp_path)), mode="r:gz") as archive:
        assert sorted(archive.getnames()) == ["model.json", "weights", "weights/layer.bin"]


def test_given_training_wrote_no_model_then_the_archive_is_an_empty_model(tmp_path: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(model_archive(tmp_path)), mode="r:gz") as archive:
        assert archive.getnames() == []


def test_given_a_job_then_the_model_goes_where_sagemaker_writes_it_and_its_runtime_scales() -> None:
    job = TrainingJob("profile", "acme-forecast-profile", definition())

    assert job.model_uri == "s3://b/output/training/acme-forecast-profile/output/model.tar.gz"
    assert job.max_runtime == 3600
    assert job.max_runtime * Deadlines().scaled(0.02).scale == pytest.approx(72)

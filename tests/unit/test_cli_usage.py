"""``python -m sandbox run`` refuses bad usage with exit 2 and a clear message, deploying nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fixtures.images import write_layout

from sandbox.cli import EXIT_USAGE, main

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "events" / "release.example.yaml"


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return write_layout(tmp_path / "image", "oci", tag="1.2.0").path


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main(["run", *map(str, args)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("--model-data", "--model-data /nonexistent/model.tar.gz: no such file"),
        ("--validation-input", "--validation-input /nonexistent/model.tar.gz: no such file"),
    ],
)
def test_given_a_missing_input_file_when_run_then_it_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], layout: Path, option: str, says: str
) -> None:
    code, err = run(capsys, "--release", EXAMPLE, "--image", layout, option, "/nonexistent/model.tar.gz")

    assert code == EXIT_USAGE
    assert says in err


def test_given_a_directory_as_release_when_run_then_it_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], layout: Path, tmp_path: Path
) -> None:
    code, err = run(capsys, "--release", tmp_path, "--image", layout)

    assert code == EXIT_USAGE
    assert f"--release {tmp_path}: no such file" in err


def test_given_a_log_file_in_a_missing_directory_when_run_then_it_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], layout: Path
) -> None:
    code, err = run(capsys, "--release", EXAMPLE, "--image", layout, "--log-file", "/nonexistent/x.log")

    assert code == EXIT_USAGE
    assert "directory /nonexistent does not exist" in err


def test_given_an_image_for_an_unknown_container_when_run_then_the_containers_are_named(
    capsys: pytest.CaptureFixture[str], layout: Path
) -> None:
    code, err = run(capsys, "--release", EXAMPLE, "--image", f"encoder={layout}")

    assert code == EXIT_USAGE
    assert "encoder is not an image of the release (inference)" in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--region", "us-east-3"], "--region us-east-3: not an AWS region; use one of"),
        (["--account-id", "12345"], "--account-id 12345: an AWS account id is 12 digits"),
        (["--lambda-concurrency", "0"], "--lambda-concurrency must be 1 or more"),
        (["--fault", "explode:CopyBlob"], "use crash:FUNCTION[:after=N] or timeout:FUNCTION"),
        (["--parameter-overrides", "NoEquals"], "write it as Key=Value"),
        (["--lambda-timeout", "CopyArtifactParts"], "--lambda-timeout CopyArtifactParts: use NAME=SECONDS"),
        (["--lambda-timeout", "CopyArtifactParts=0"], "with 1 to 900 seconds"),
        (["--lambda-timeout", "CopyArtifactParts=901"], "with 1 to 900 seconds"),
        (["--bandwidth-mib-s", "0"], "--bandwidth-mib-s must be more than 0"),
    ],
)
def test_given_bad_stack_or_lambda_options_when_run_then_it_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], layout: Path, args: list[str], says: str
) -> None:
    code, err = run(capsys, "--release", EXAMPLE, "--image", layout, *args)

    assert code == EXIT_USAGE
    assert says in err


def test_given_a_directory_as_log_file_when_run_then_it_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], layout: Path, tmp_path: Path
) -> None:
    code, err = run(capsys, "--release", EXAMPLE, "--image", layout, "--log-file", tmp_path)

    assert code == EXIT_USAGE
    assert "is a directory; name a file" in err

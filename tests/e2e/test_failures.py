"""Releases that fail: each says where and why, and nothing broken reaches the publishing region.

Input the CLI can reject by itself (an invalid release file, a corrupt image layout) exits 2
without a report. Everything else is the pipeline's to find and announce (exit 1): a
Marketplace rule broken before anything is copied, an image SageMaker cannot use or ECR
cannot scan, a corrupt
blob served by the source registry, a failed validation.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from tests.fixtures.cli_runs import CliRun, run_cli
from tests.fixtures.images import WrittenLayout

from mlpublish.errors import InvalidRelease
from mlpublish.release import parse_release
from sandbox import cli, runner
from sandbox.ext_ecr import UNSUPPORTED_IMAGE, EcrExtension, ScanOutcome
from sandbox.runner import IMAGE_SCAN_FAILURE, VALIDATION_FAILURE

pytestmark = pytest.mark.e2e

FAILED = "Release Failed"
EVENTS = Path(__file__).resolve().parents[2] / "events"
MiB = 1024 * 1024
BUILD_HINT = "docker buildx build --platform linux/amd64"


def assert_nothing_published(run: CliRun) -> None:
    assert run.reported["model_packages"] == []
    assert run.reported["model_package_arn"] is None
    assert run.reported["published_image_digest"] is None
    assert run.published.images == ()


def assert_announced(run: CliRun, stage: str, error: str) -> dict[str, Any]:
    """The failure is in the report, in one Release Failed event and in one SNS notification."""
    failure = run.reported["failure"]
    [event] = run.events(FAILED)
    [note] = run.reported["notifications"]

    assert run.exit_code == 1, run.stderr
    assert run.reported["status"] == "FAILED"
    assert (failure["stage"], failure["error"]) == (stage, error)
    assert event["detail"]["execution"] == run.reported["execution_arn"]
    assert note["outcome"] == "failed"
    assert stage in note["subject"]
    assert failure["reason"] in note["message"]
    return dict(failure)


# --- validation ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def failed_validation(publish_image: Callable[..., CliRun]) -> CliRun:
    return publish_image("docker-v2", "--validation", "failed")


def test_given_validation_that_fails_when_the_release_runs_then_it_fails_at_await_validation(
    failed_validation: CliRun,
) -> None:
    assert_announced(failed_validation, "AwaitValidation", "ValidationFailed")
    assert failed_validation.events("Release Ready For Listing") == []
    assert failed_validation.reported["notifications"][0]["attributes"] == {
        "outcome": "failed",
        "product": "acme-sentiment",
        "version": "1.2.0",
        "kind": "model_package",
        "region": "us-east-2",
    }


@pytest.mark.parametrize("failure_reason", [VALIDATION_FAILURE, IMAGE_SCAN_FAILURE], ids=["validation", "image-scan"])
def test_given_validation_that_fails_when_announced_then_every_failure_reason_is_reported_and_notified(
    failed_validation: CliRun, failure_reason: str
) -> None:
    [note] = failed_validation.reported["notifications"]

    assert any(failure_reason in reason for reason in failed_validation.reported["failure"]["reasons"])
    assert failure_reason in note["message"]


def test_given_validation_longer_than_its_timeout_when_the_release_waits_then_it_fails_as_timed_out(
    publish_image: Callable[..., CliRun],
) -> None:
    hours = 13  # release.example.yaml: validation.timeout_minutes is 720 (12 hours)

    # SageMaker's events lost too: the 30-minute fallback looks alone count the time.
    run = publish_image("docker-v2", "--validation-minutes", str(hours * 60), "--service-events", "lost")
    failure = assert_announced(run, "AwaitValidation", "ValidationTimedOut")
    [event] = run.events(FAILED)

    assert "validation.timeout_minutes is 720" in failure["reason"]
    assert 12 * 3600 <= run.reported["virtual_seconds"] < hours * 3600
    # Prepare, then 24 waits of 30 minutes each followed by its count, then the look that gives up.
    assert run.reported["wait_transitions"]["validation"] == 1 + 24 * 2 + 1
    assert event["detail"]["model_package_arn"] in run.reported["model_packages"]


# --- preflight -------------------------------------------------------------------------------


def sent_as_one_record(document: dict[str, Any]) -> None:
    document["validation"]["split_type"] = "None"
    document["validation"]["max_payload_mb"] = 6


def test_given_validation_input_larger_than_one_payload_when_the_release_runs_then_preflight_stops_it_first(
    publish: Callable[..., CliRun],
    release_file: Callable[..., Path],
    image: Callable[[str], WrittenLayout],
    e2e_dir: Path,
) -> None:
    big_input = e2e_dir / "input-7mib.csv"
    big_input.write_bytes(b"0.1,0.2,0.3\n" * (7 * MiB // 12 + 1))

    run = publish(
        "--release",
        release_file("one-record-input", sent_as_one_record),
        "--image",
        image("docker-v2").path,
        "--validation-input",
        big_input,
    )
    failure = assert_announced(run, "ResolveRelease", "PreflightFailed")

    assert [reason.split(":", 1)[0] for reason in failure["reasons"]] == ["validation.input"]
    assert "max_payload_mb is 6" in failure["reasons"][0]
    assert run.reported["blobs_copied"] == run.reported["bytes_copied"] == 0
    assert run.published.blobs == frozenset()
    assert run.published.artifacts == ()
    assert_nothing_published(run)


# --- images SageMaker cannot use -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("zstd", "is zstd-compressed"),
        ("arm64-only", "without a linux/amd64 image"),
        ("schema1", "Docker schema 1 manifest"),
    ],
)
def test_given_an_image_sagemaker_cannot_use_when_the_release_runs_then_it_fails_before_publishing_anything(
    publish_image: Callable[..., CliRun], image: Callable[[str], WrittenLayout], kind: str, says: str
) -> None:
    run = publish_image(kind)
    failure = assert_announced(run, "ResolveRelease", "UnsupportedImage")

    assert image(kind).top_digest in failure["reason"]
    assert says in failure["reason"]
    assert BUILD_HINT in failure["reason"]
    assert run.published.blobs == frozenset()
    assert run.published.artifacts == ()  # checked before the copies start, not beside them
    assert_nothing_published(run)


# --- an image ECR cannot scan ----------------------------------------------------------------


def test_given_an_image_built_from_scratch_when_the_release_runs_then_it_is_blocked_before_publishing_anything(
    publish_image: Callable[..., CliRun], image: Callable[[str], WrittenLayout]
) -> None:
    run = publish_image("scratch")
    failure = assert_announced(run, "ResolveRelease", "ImageScanBlocked")

    assert "(UnscannableImage)" in failure["reason"]
    assert "Base each image on Amazon Linux, Debian, Ubuntu, Alpine, RHEL, CentOS or Oracle Linux" in failure["reason"]
    [reason] = failure["reasons"]
    assert image("scratch").top_digest in reason
    assert "has no /etc/os-release or /usr/lib/os-release" in reason
    assert "FROM scratch" in reason
    assert run.reported["blobs_copied"] == run.reported["bytes_copied"] == 0
    assert run.published.blobs == frozenset()
    assert run.published.artifacts == ()
    assert_nothing_published(run)


def test_given_an_image_ecr_finds_unsupported_after_the_copy_then_the_release_fails_at_scan_images(
    image: Callable[[str], WrittenLayout], release_file: Callable[..., Path], tmp_path: Path
) -> None:
    # What decides when the OS could not be told for certain before the copy (the read budget ran
    # out): ECR's scan status UNSUPPORTED_IMAGE fails the release, as Marketplace would refuse it.
    def unsupported(clock: Any, *, scan_outcome: ScanOutcome, **options: Any) -> EcrExtension:
        return EcrExtension(clock, scan_outcome=UNSUPPORTED_IMAGE, **options)

    # Not through the session's shared runs (publish_image): this run, patched, must not be the one
    # another file's publish_image("docker-v2") is given.
    with patch.object(runner, "EcrExtension", unsupported):
        run = run_cli(
            ["--release", str(release_file()), "--image", str(image("docker-v2").path)], tmp_path / "lambda.log"
        )
    failure = assert_announced(run, "ScanImages", "ImageScanBlocked")

    [reason] = failure["reasons"]
    assert "UnsupportedImageError" in reason
    assert "Marketplace rejects unscannable images (UnscannableImage)" in reason
    assert run.reported["model_package_arn"] is None


# --- a corrupt blob --------------------------------------------------------------------------


def test_given_a_source_registry_serving_a_corrupt_blob_when_copied_then_the_blob_is_never_published(
    publish_image: Callable[..., CliRun], image: Callable[[str], WrittenLayout]
) -> None:
    corrupted = image("docker-v2").big_layer  # the fault flips a byte of the largest layer

    run = publish_image("docker-v2", "--fault", "corrupt-blob")
    failure = assert_announced(run, "CopyToPublishingRegion", "BlobDigestMismatch")

    assert corrupted in failure["reason"]
    assert "nothing was published" in failure["reason"]
    assert corrupted not in run.published.blobs
    assert_nothing_published(run)


def test_given_a_layout_with_a_corrupt_blob_when_run_then_it_exits_2_naming_the_blob(
    image: Callable[[str], WrittenLayout], release_file: Callable[..., Path], tmp_path: Path
) -> None:
    layout = tmp_path / "corrupt"
    shutil.copytree(image("docker-v2").path, layout)
    digest = image("docker-v2").big_layer
    blob = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))

    run = run_cli(["--release", str(release_file()), "--image", str(layout)], tmp_path / "lambda.log")

    assert run.exit_code == 2
    assert run.report is None
    assert run.regions == ()
    assert f"{blob}: content hashes to sha256:" in run.stderr
    assert f"not {digest}" in run.stderr
    assert "the blob is corrupt" in run.stderr
    assert "nothing was published" in run.stderr


# --- an invalid release file -----------------------------------------------------------------


def test_given_an_invalid_release_file_when_run_then_it_exits_2_naming_every_field_and_deploys_nothing(
    image: Callable[[str], WrittenLayout], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invalid = EVENTS / "release.invalid.yaml"
    with pytest.raises(InvalidRelease) as raised:
        parse_release(invalid.read_bytes())
    fields = [reason.split(": ", 1)[0] for reason in raised.value.reasons]
    deployed: list[object] = []
    monkeypatch.setattr(cli, "Sandbox", lambda *args: deployed.append(args))

    run = run_cli(["--release", str(invalid), "--image", str(image("docker-v2").path)], tmp_path / "lambda.log")

    assert run.exit_code == 2
    assert run.report is None
    assert deployed == []
    assert len(fields) >= 5
    for field in fields:
        assert f"- {field}: " in run.stderr


# --- running again after a failure ---------------------------------------------------------


def test_given_validation_failed_when_the_push_is_delivered_again_then_the_failed_package_is_not_reused(
    publish_image: Callable[..., CliRun],
) -> None:
    run = publish_image("docker-v2", "--validation", "failed", "--repeat")
    repeat = run.reported["repeat"]

    assert run.exit_code == 1, run.stderr
    assert repeat["execution_arn"].endswith("-r2")  # a new attempt, not a duplicate
    assert (repeat["failure"]["stage"], repeat["failure"]["error"]) == ("CreateModelPackage", "ValidationFailed")
    assert "failed validation" in repeat["failure"]["reason"]
    assert repeat["failure"]["reasons"]  # SageMaker's reasons again
    assert (repeat["blobs_copied"], repeat["blobs_skipped"]) == (0, run.reported["blobs_copied"])
    # The image's OS, read by the first attempt, is remembered: the second downloads no layer byte.
    [first_os], [again_os] = run.reported["os"], repeat["os"]
    assert (first_os["os_bytes_read"] > 0, first_os["os_remembered"]) == (True, False)
    assert (again_os["os"], again_os["os_bytes_read"], again_os["os_remembered"]) == (first_os["os"], 0, True)
    assert repeat["model_package_arn"] is None
    assert run.reported["model_packages"] == [run.reported["model_package_arn"]]


def test_given_a_corrupt_blob_fault_when_the_release_runs_again_then_it_publishes_and_exits_0(
    publish_image: Callable[..., CliRun],
) -> None:
    run = publish_image("docker-v2", "--fault", "corrupt-blob", "--repeat")
    repeat = run.reported["repeat"]

    assert run.reported["status"] == "FAILED"
    assert repeat["status"] == "SUCCEEDED"
    assert run.exit_code == 0, run.stderr  # the release's state is what the last delivery left
    assert run.reported["model_packages"] == [repeat["model_package_arn"]]

"""``python -m sandbox check``: the release, preflight and local validation, before any deploy.

Each run is the command a seller types, in a process of its own, on the real serving images
of sandbox/images_real.py (built once, cached in ~/.cache/mlpublish/images) and the example
release. A test that runs a container needs root and runc: it fails under CI and is skipped
elsewhere when they are missing (tests/fixtures/serving_images.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures import serving_images

from sandbox import cli, validation_local

pytestmark = pytest.mark.e2e

serving_image = serving_images.serving_image  # the session-scoped fixture
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_RELEASE = ROOT / "events" / "release.example.yaml"
SCALE = ["--deadline-scale", "0.02"]  # SageMaker's 4 minutes for /ping become 4.8 s


@dataclass(frozen=True)
class Checked:
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def report(self) -> dict[str, Any]:
        return dict(json.loads(self.stdout))

    def findings(self, stage: str) -> list[dict[str, Any]]:
        return [finding for finding in self.report["findings"] if finding["stage"] == stage]


def check(*args: str | Path) -> Checked:
    """``python -m sandbox check ARGS`` as a seller runs it."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "check", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Checked(done.returncode, done.stdout, done.stderr, time.perf_counter() - started)


def needs_runc() -> None:
    reason = validation_local.unavailable()
    if reason is not None:
        serving_images.unavailable(reason)


@pytest.fixture(scope="module")
def checked(serving_image: Callable[[str], Path]) -> Callable[..., Checked]:
    """``checked(kind, *args)``: the example release checked with a serving image of that kind, once."""
    runs: dict[tuple[str, ...], Checked] = {}

    def run(kind: str, *args: str | Path) -> Checked:
        key = (kind, *map(str, args))
        if key not in runs:
            image = serving_image(kind)  # built (or read from the cache) before the clock starts
            runs[key] = check("--release", EXAMPLE_RELEASE, "--image", image, *SCALE, *args)
        return runs[key]

    return run


# --- the good image ------------------------------------------------------------------------


def test_given_the_good_image_when_checked_then_it_passes_within_a_minute_and_names_each_request(
    checked: Callable[..., Checked],
) -> None:
    needs_runc()
    run = checked("good")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert run.seconds < 60
    assert "preflight (the pipeline's ResolveRelease): passed (inference: Debian GNU/Linux 12 (bookworm))" in run.stdout
    assert "inference: GET /ping -> 200 OK" in run.stdout
    assert run.stdout.count("inference: POST /invocations (12 bytes) -> 200") == 3  # SingleRecord, 3 lines
    assert "PASSED" in run.stdout


def test_given_the_good_image_when_checked_with_json_then_one_object_says_the_mode_and_every_request(
    checked: Callable[..., Checked],
) -> None:
    needs_runc()
    run = checked("good", "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    report = run.report
    assert report["passed"] is True
    assert report["findings"] == []
    assert report["preflight"]["status"] == "passed"
    assert report["validation"]["mode"] == "real"
    result = report["validation"]["result"]
    assert result["status"] == "Completed"
    assert result["failure_reason"] is None
    assert [(r["request"], r["status"]) for r in result["requests"]] == [
        ("GET /ping", 200),
        ("GET /execution-parameters", 200),
        *[("POST /invocations (12 bytes)", 200)] * 3,
    ]
    assert result["outputs"] == ["s3://sandbox-check/validation-output/input.csv.out"]


def test_given_the_good_image_when_validation_is_skipped_then_it_passes_and_says_the_container_was_not_run(
    checked: Callable[..., Checked],
) -> None:
    run = checked("good", "--skip-validation", "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert run.report["validation"] == {"mode": "skipped", "reason": "--skip-validation"}


def test_given_no_runc_when_checked_then_validation_is_not_run_and_the_check_does_not_pass(
    serving_image: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(validation_local, "unavailable", lambda: "runc is not installed (run `make deb`)")
    image = serving_image("good")
    exit_code = cli.main(["check", "--release", str(EXAMPLE_RELEASE), "--image", str(image), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert exit_code == 1
    assert report["findings"] == []
    assert report["passed"] is False
    assert report["validation"] == {"mode": "not run", "reason": "runc is not installed (run `make deb`)"}


# --- broken images --------------------------------------------------------------------------

BROKEN = {
    # It exits at once: before runc hands it over, or before /ping is answered.
    "no-server": ["the container exited with code 0 before", "Last log lines: serving"],
    "wrong-port": ["did not answer GET /ping with 200 within 4.8 s", "nothing listens on port 8080"],
    "needs-internet": ["the container exited with code 1 before", "cannot download https://pypi.org"],
    "errors-500": ["POST /invocations (12 bytes) failed: HTTP 500 (tried 4 times)"],
    "slow-ping": ["did not answer GET /ping with 200 within 4.8 s", "no answer within 2 s"],
    "oversize-response": ["over MaxPayloadInMB=6"],
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_given_a_broken_image_when_checked_then_validation_fails_naming_the_cause(
    checked: Callable[..., Checked], kind: str
) -> None:
    needs_runc()
    run = checked(kind)
    assert run.exit_code == 1, run.stdout + run.stderr
    assert "preflight (the pipeline's ResolveRelease): passed" in run.stdout
    assert "✗ validation (SageMaker's transform job): validation profile sentiment-validation failed" in run.stdout
    for cause in BROKEN[kind]:
        assert cause in run.stdout
    assert "FAILED" in run.stdout
    assert "PASSED" not in run.stdout


def test_given_a_broken_image_when_checked_with_json_then_the_failure_reason_is_the_finding(
    checked: Callable[..., Checked],
) -> None:
    needs_runc()
    run = checked("errors-500", "--json")
    assert run.exit_code == 1
    [finding] = run.findings("validation")
    result = run.report["validation"]["result"]
    assert finding["reasons"] == [result["failure_reason"]]
    assert result["requests"][-1]["outcome"] == "HTTP 500"
    assert result["requests"][-1]["tries"] == 4


def test_given_an_arm64_image_when_checked_then_preflight_refuses_its_platform_with_the_reason(
    checked: Callable[..., Checked],
) -> None:
    run = checked("arm64", "--skip-validation", "--json")
    assert run.exit_code == 1, run.stdout + run.stderr
    [finding] = run.findings("preflight")
    assert finding["error"] == "PreflightFailed"
    [reason] = finding["reasons"]
    assert reason.startswith("containers.0.image: ")
    assert "is built for linux/arm64" in reason
    assert "x86-64 only, so it must be linux/amd64" in reason
    assert "docker buildx build --platform linux/amd64" in reason  # the fix


def test_given_an_arm64_image_when_checked_then_the_container_also_fails_to_start(
    checked: Callable[..., Checked],
) -> None:
    needs_runc()
    run = checked("arm64")
    assert run.exit_code == 1
    assert "✗ preflight (the pipeline's ResolveRelease would stop the release here):" in run.stdout
    assert "is built for linux/arm64" in run.stdout
    assert "its entrypoint is not an x86-64 program (image architecture arm64)" in run.stdout


def test_given_a_stack_that_does_not_allow_the_region_when_checked_then_preflight_says_so(
    checked: Callable[..., Checked],
) -> None:
    run = checked("good", "--parameter-overrides", "AllowedPublishingRegions=us-east-1", "--skip-validation", "--json")
    assert run.exit_code == 1, run.stdout + run.stderr
    [finding] = run.findings("preflight")
    [reason] = finding["reasons"]
    assert reason.startswith("publishing_region: us-east-2 is not one of the stack's AllowedPublishingRegions")


def test_given_a_check_running_a_container_when_terminated_then_it_exits_130_and_leaves_no_container(
    serving_image: Callable[[str], Path],
) -> None:
    needs_runc()
    image = serving_image("slow-ping")  # /ping never answers within the unscaled 4 minutes
    command = [sys.executable, "-m", "sandbox", "check", "--release", str(EXAMPLE_RELEASE), "--image", str(image)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mine = f"{validation_local.ID_PREFIX}-{process.pid}-"
    try:
        end = time.monotonic() + 60
        while not _containers(mine) and time.monotonic() < end and process.poll() is None:
            time.sleep(0.2)
        assert _containers(mine), "the check never started its container"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert _containers(mine) == []
    assert list(Path(tempfile.gettempdir()).glob(f"{mine}*")) == []


def _containers(prefix: str) -> list[str]:
    """Containers (their state directories under runc's root) whose id starts with ``prefix``."""
    root = validation_local.RUNC_ROOT
    return sorted(path.name for path in root.glob(f"{prefix}*")) if root.exists() else []


# --- the model artifact ---------------------------------------------------------------------


def test_given_a_zip_as_model_tar_gz_when_checked_then_preflight_refuses_it(
    checked: Callable[..., Checked], tmp_path_factory: pytest.TempPathFactory
) -> None:
    model = tmp_path_factory.mktemp("zip") / "model.tar.gz"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("model.json", '{"bias": 0.1}')
    run = checked("good", "--model-data", model, "--skip-validation", "--json")
    assert run.exit_code == 1, run.stdout + run.stderr
    [finding] = run.findings("preflight")
    [reason] = finding["reasons"]
    assert reason.startswith("containers.0.model_data: s3://acme-ml-artifacts/sentiment/1.2.0/model.tar.gz is a ZIP")
    assert "tar czf model.tar.gz -C model ." in reason  # the fix


# --- the release file and bad usage ---------------------------------------------------------


def test_given_an_invalid_release_file_when_checked_then_every_field_problem_is_a_finding(
    serving_image: Callable[[str], Path],
) -> None:
    run = check("--release", ROOT / "events" / "release.invalid.yaml", "--image", serving_image("good"), "--json")
    assert run.exit_code == 1, run.stderr
    [finding] = run.findings("release")
    assert finding["error"] == "InvalidRelease"
    assert len(finding["reasons"]) > 3
    assert run.report["validation"]["mode"] == "not run"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--release", "missing.yaml", "--image", "{good}"], "--release missing.yaml: no such file"),
        (["--release", "{release}", "--image", "/nonexistent/layout"], "/nonexistent/layout: no such"),
        (["--release", "{release}", "--image", "{release_dir}"], "error: "),  # a directory that is no layout
        (["--release", "{release}", "--image", "{good}", "--deadline-scale", "0"], "--deadline-scale must be"),
        (["--release", "{release}", "--image", "{good}", "--model-data", "other=x.tar.gz"], "other is not a container"),
        (["--release", "{release}", "--image", "{good}", "--model-data", "missing.tar.gz"], "no such file"),
        (["--release", "{release}", "--image", "{good}", "--validation-input", "missing.csv"], "no such file"),
        (["--release", "{release}", "--image", "{good}", "--account-id", "12"], "12 digits"),
        (["--release", "{release}", "--image", "{good}", "--config-env", "nope"], "no such environment"),
        (["--release", "{release}", "--image", "{good}", "--bogus"], "unrecognized arguments: --bogus"),
        (["--release", "{release}"], "--image"),
    ],
)
def test_given_bad_usage_when_checked_then_it_exits_2_saying_what_is_wrong(
    serving_image: Callable[[str], Path], args: list[str], message: str
) -> None:
    places = {"good": str(serving_image("good")), "release": str(EXAMPLE_RELEASE), "release_dir": str(ROOT / "events")}
    run = check(*(arg.format(**places) for arg in args))
    assert run.exit_code == 2, run.stdout + run.stderr
    assert message in run.stderr
    assert run.stdout == ""


def test_given_check_when_asked_for_help_then_it_says_what_a_validation_that_cannot_run_means() -> None:
    run = check("--help")
    assert run.exit_code == 0
    assert "--skip-validation" in run.stdout
    assert "not run" in run.stdout

"""The e2e layer: ``python -m sandbox run`` in-process, on images and release files made once.

A sandbox run deploys template.yaml into moto and runs the real state machine with the real
handlers (a few seconds each), so every run is made once per session and shared: the tests
of one scenario assert different things about the same run (tests/fixtures/cli_runs.py).

Every event a run's bus carries is held to the JSON Schema of its detail-type (schemas/events/)
as the sandbox drains it: a test whose runs sent an event off its contract fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.fixtures.cli_runs import VALIDATION_MINUTES, CliRun, run_cli
from tests.fixtures.images import WrittenLayout, write_layout
from tools.schemas import event_problems

from sandbox.runner import Sandbox

EXAMPLE_RELEASE = Path(__file__).resolve().parents[2] / "events" / "release.example.yaml"


OFF_CONTRACT: list[str] = []  # problems of the events drained since the last test ended


@pytest.fixture(scope="session", autouse=True)
def _drained_events_checked() -> Iterator[None]:
    """Check every event ``Sandbox.drain`` returns (the CLI's report and the tests' own reads)."""
    drain = Sandbox.drain

    def checked(sandbox: Sandbox, which: str) -> list[dict[str, Any]]:
        messages = drain(sandbox, which)
        if which == "events":
            OFF_CONTRACT.extend(problem for event in messages for problem in event_problems(event))
        return messages

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Sandbox, "drain", checked)
        yield


@pytest.fixture(autouse=True)
def _events_keep_their_contract(_drained_events_checked: None) -> Iterator[None]:
    yield
    found, OFF_CONTRACT[:] = list(OFF_CONTRACT), []
    assert found == [], "events off their JSON Schema (fix the model or the state machine, then `make schemas`)"


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def image(e2e_dir: Path) -> Callable[[str], WrittenLayout]:
    """``image(kind)``: an image layout of a tests/fixtures/images.py kind, written once."""
    written: dict[str, WrittenLayout] = {}

    def make(kind: str) -> WrittenLayout:
        if kind not in written:
            written[kind] = write_layout(e2e_dir / "images" / kind, kind, tag="1.2.0")
        return written[kind]

    return make


@pytest.fixture(scope="session")
def umoci_image(e2e_dir: Path) -> Path:
    """An OCI layout written by a real tool (umoci), not by our own fixture code."""
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed (`make deb`)")
    from sandbox.imagebuild import build_sample_image

    return build_sample_image(e2e_dir / "images" / "umoci", tag="1.2.0")


@pytest.fixture(scope="session")
def release_file(e2e_dir: Path) -> Callable[..., Path]:
    """``release_file(name="example", change=None)``: events/release.example.yaml, optionally edited."""

    def make(name: str = "example", change: Callable[[dict[str, Any]], None] | None = None) -> Path:
        path = e2e_dir / "releases" / f"{name}.yaml"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            if change is None:
                shutil.copyfile(EXAMPLE_RELEASE, path)
            else:
                document = yaml.safe_load(EXAMPLE_RELEASE.read_text())
                change(document)
                path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    return make


@pytest.fixture(scope="session")
def publish(e2e_dir: Path) -> Callable[..., CliRun]:
    """``publish(*args)``: ``python -m sandbox run ARGS --json``, run once per session."""
    runs: dict[tuple[str, ...], CliRun] = {}

    def run(*args: str | Path) -> CliRun:
        key = tuple(str(arg) for arg in args)
        if key not in runs:
            runs[key] = run_cli(list(key), e2e_dir / f"lambda-{len(runs)}.log")
        return runs[key]

    return run


@pytest.fixture(scope="session")
def publish_image(
    publish: Callable[..., CliRun], image: Callable[[str], WrittenLayout], release_file: Callable[..., Path]
) -> Callable[..., CliRun]:
    """``publish_image(kind, *args)``: the example release with an image of that kind."""

    def run(kind: str, *args: str) -> CliRun:
        return publish("--release", release_file(), "--image", image(kind).path, *args)

    return run


@pytest.fixture(scope="session")
def publish_by(publish_image: Callable[..., CliRun]) -> Callable[[str], CliRun]:
    """``publish_by(trigger)``: a Docker v2 image released by that trigger, which then fires again."""

    def run(trigger: str) -> CliRun:
        # As a seller deploys it for upload triggers: the artifact bucket is watched.
        watched = ["--parameter-overrides", "WatchedBuckets=acme-ml-artifacts"] if trigger == "s3-upload" else []
        return publish_image(
            "docker-v2", "--trigger", trigger, "--validation-minutes", str(VALIDATION_MINUTES), "--repeat", *watched
        )

    return run

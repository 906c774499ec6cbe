"""Without --json, a seller reads progress: the notification received and the final verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fixtures.images import write_layout

from sandbox.cli import EXIT_OK, main

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "events" / "release.example.yaml"


def test_given_a_repeated_push_when_run_without_json_then_progress_ends_ready_for_listing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = write_layout(tmp_path / "image", "oci", tag="1.2.0").path

    # a fixture image that does not serve: the validation's outcome is told, not run
    told = ["--validation", "completed"]
    code = main(
        [
            "run",
            "--release",
            str(EXAMPLE),
            "--image",
            str(layout),
            "--repeat",
            *told,
            "--log-file",
            str(tmp_path / "l.log"),
        ]
    )
    out = capsys.readouterr().out
    lines = out.strip().splitlines()

    assert code == EXIT_OK
    assert "── SNS: Ready for listing: acme-sentiment 1.2.0" in out
    assert "repeat: no new execution" in out
    assert lines[-1].startswith("• ready for listing: arn:aws:sagemaker:us-east-2:123456789012:model-package/")

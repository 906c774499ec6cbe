"""A large model artifact is copied in parts over several invocations, verified and published.

The sandbox runs with S3 copies capped at 64 MiB/s and CopyArtifactParts' Timeout cut to 4 s
(``--bandwidth-mib-s``, ``--lambda-timeout``): a 130 MiB model.tar.gz (three parts of at most
64 MiB) cannot be copied in one invocation, so its one part range goes on over several.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from tests.fixtures import cli_runs
from tests.fixtures.cli_runs import CliRun, run_cli
from tests.fixtures.large import LARGE, write_large_image
from tests.fixtures.models import large_model

from sandbox.runner import Delivery, Sandbox

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
COPY_FUNCTIONS = ("PlanArtifacts", "CopyArtifacts", "CopyArtifactParts", "CompleteArtifact")


@pytest.fixture(scope="module")
def copied(
    tmp_path_factory: pytest.TempPathFactory,
    release_file: Callable[..., Path],
) -> tuple[CliRun, dict[str, Any]]:
    """The run, and what the sandbox saw of the copies: S3 calls and bytes per function, the
    published model's head, the large layer's digest."""
    directory = tmp_path_factory.mktemp("large-copies")
    model = large_model(directory / "model.tar.gz", 130 * MiB)
    seen: dict[str, Any] = {"layer": write_large_image(directory / "image")}
    report = cli_runs.delivery_report

    def report_and_look(sandbox: Sandbox, delivery: Delivery, *, source_digest: str) -> dict[str, Any]:
        reported: dict[str, Any] = report(sandbox, delivery, source_digest=source_digest)
        assert sandbox.stack is not None
        short, audit = sandbox.stack.short_names, sandbox.audit
        seen["requests"] = {(short.get(name), operation): n for (name, operation), n in audit.requests.items()}
        seen["object_bytes"] = {
            (short.get(name), operation): audit.bytes_in[name, operation] + audit.bytes_out[name, operation]
            for (name, operation) in {*audit.bytes_in, *audit.bytes_out}
            if operation.partition(" ")[0] in {"GetObject", "PutObject", "UploadPart"}
        }
        [uri] = [item["uri"] for item in reported["published_objects"] if item["uri"].endswith("model.tar.gz")]
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        seen["head"] = sandbox.aws("s3", sandbox.publishing_region).head_object(Bucket=bucket, Key=key)
        return reported

    with patch.object(cli_runs, "delivery_report", report_and_look):
        run = run_cli(
            [
                "--release",
                str(release_file()),
                "--image",
                str(directory / "image"),
                "--trigger",
                "manual",
                "--model-data",
                str(model),
                "--bandwidth-mib-s",
                "64",
                "--lambda-timeout",
                "CopyArtifactParts=4",
                "--lambda-timeout",
                "CopyBlob=3",
            ],
            directory / "lambda.log",
        )
    seen["model_size"] = model.stat().st_size
    return run, seen


def test_given_a_large_artifact_and_a_short_timeout_then_its_parts_span_several_invocations_each_copied_once(
    copied: tuple[CliRun, dict[str, Any]],
) -> None:
    run, seen = copied

    assert run.exit_code == 0, run.stderr
    assert run.reported["status"] == "SUCCEEDED"
    parts = run.reported["lambda"]["CopyArtifactParts"]
    assert parts["invocations"] >= 3  # one range of three parts, about a part an invocation
    # Each part is copied once; only a part still in flight when a (slowed) invocation timed out
    # may be sent again, since it was never acknowledged.
    assert 3 <= seen["requests"][("CopyArtifactParts", "UploadPartCopy")] <= 3 + parts["timeouts"]
    assert ("CopyArtifacts", "CopyObject") in seen["requests"]  # the small validation input, whole


def test_given_a_large_artifact_when_published_then_it_is_whole_verified_and_pinned(
    copied: tuple[CliRun, dict[str, Any]],
) -> None:
    run, seen = copied
    head = seen["head"]

    assert head["ContentLength"] == seen["model_size"]
    assert head["ETag"].strip('"').endswith("-3")
    assert set(head["Metadata"]) == {"mlpublish-source-etag", "mlpublish-source-uri"}
    assert run.reported["max_state_bytes"] < 8 * 1024


def test_given_a_large_artifact_then_no_object_byte_passes_through_a_lambda(
    copied: tuple[CliRun, dict[str, Any]],
) -> None:
    _, seen = copied

    through_lambdas = {
        (function, operation): size
        for (function, operation), size in seen["object_bytes"].items()
        if function in COPY_FUNCTIONS and operation in {"GetObject", "PutObject", "UploadPart"}
    }

    assert sum(through_lambdas.values()) == 0, through_lambdas
    assert seen["object_bytes"][("ResolveRelease", "GetObject")] > 0  # the meter counts: it read the release file
    # PlanArtifacts reads the resolved release, not an object: counted apart.
    assert seen["object_bytes"][("PlanArtifacts", "GetObject (pipeline record)")] > 0


def test_given_a_300_mb_layer_a_capped_bandwidth_and_a_3_s_copy_blob_when_published_then_several_invocations_copy_it(
    copied: tuple[CliRun, dict[str, Any]],
) -> None:
    run, seen = copied
    copy_blob = run.reported["lambda"]["CopyBlob"]

    assert run.exit_code == 0, run.stderr
    assert copy_blob["invocations"] >= 4, copy_blob  # 300 MB at 64 MiB/s: about 4.5 s of transfer, 3 s a call
    assert copy_blob["timeouts"] == 0, "each invocation returned its progress in time"
    assert seen["layer"] in run.published.blobs
    assert run.reported["bytes_copied"] >= LARGE
    layers = [layer["digest"] for layer in run.reported["published_manifest"]["layers"]]
    assert layers[0] == seen["layer"]

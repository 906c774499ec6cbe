"""A serial inference pipeline: two containers, each copied and pinned in release order; the
first image has 100 layers, copied in batches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.cli_runs import CliRun
from tests.fixtures.images import WrittenLayout

pytestmark = pytest.mark.e2e


def two_containers(document: dict[str, Any]) -> None:
    inference = document["containers"][0]
    preprocess = {
        "name": "preprocess",
        "image": inference["image"].replace("acme/sentiment:", "acme/tokenizer:"),
        "platform": "linux/amd64",
    }
    document["containers"] = [preprocess, inference]


@pytest.fixture(scope="module")
def pipeline(
    publish: Callable[..., CliRun], image: Callable[[str], WrittenLayout], release_file: Callable[..., Path]
) -> CliRun:
    return publish(
        "--release",
        release_file("two-containers", two_containers),
        "--image",
        f"preprocess={image('hundred-layers').path}",
        "--image",
        f"inference={image('docker-v2').path}",
    )


def test_given_two_containers_when_released_then_each_image_is_published_in_release_order(
    pipeline: CliRun, image: Callable[[str], WrittenLayout]
) -> None:
    images = pipeline.reported["images"]

    assert pipeline.exit_code == 0, pipeline.stderr
    assert [item["container"] for item in images] == ["preprocess", "inference"]
    assert images[0]["published_image_digest"] == image("hundred-layers").top_digest
    assert images[1]["published_image_digest"] == image("docker-v2").top_digest
    assert len(pipeline.reported["model_packages"]) == 1


def test_given_an_image_of_a_hundred_layers_then_its_blobs_are_copied_in_batches_and_the_state_stays_small(
    pipeline: CliRun,
) -> None:
    report = pipeline.reported

    # 101 blobs (config and 100 layers) make 2 batches of at most 64, the other image's 3 blobs one.
    assert (report["blobs_copied"], report["blobs_skipped"]) == (104, 0)
    assert report["lambda"]["CopyBlob"]["invocations"] == 3
    assert report["max_state_bytes"] < 8 * 1024


def test_given_two_containers_when_announced_then_the_notification_names_both_images(pipeline: CliRun) -> None:
    [note] = pipeline.reported["notifications"]

    assert "acme/tokenizer@" in note["message"]
    assert "acme/sentiment@" in note["message"]


def test_given_two_containers_and_one_image_when_run_then_it_is_a_usage_error(
    publish: Callable[..., CliRun], image: Callable[[str], WrittenLayout], release_file: Callable[..., Path]
) -> None:
    run = publish("--release", release_file("two-containers", two_containers), "--image", image("oci").path)

    assert run.exit_code == 2
    assert "--image CONTAINER=PATH per container (preprocess, inference)" in run.stderr

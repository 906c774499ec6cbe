"""A cross-region publish never moves a tag the seller already has in the publishing region."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fixtures.images import write_layout

from sandbox.oci import open_layout, push_layout
from sandbox.runner import ROOT, RunOptions, Sandbox, load_release

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "events" / "release.example.yaml"


def test_given_the_sellers_own_tag_in_the_publishing_region_when_released_then_it_still_names_their_image(
    tmp_path: Path,
) -> None:
    release = load_release(EXAMPLE)
    repository = release.containers[0].image_ref.repository
    ours = write_layout(tmp_path / "release", "docker-v2", tag="1.2.0").path
    theirs = write_layout(tmp_path / "theirs", "oci", tag="1.2.0").path
    sandbox = Sandbox(release, RunOptions(release=EXAMPLE, validation="completed", log_file=tmp_path / "lambda.log"))
    with sandbox.running():
        ecr = sandbox.aws("ecr", "us-east-2")
        ecr.create_repository(repositoryName=repository)  # the seller's, tags mutable
        sellers = push_layout(open_layout(theirs), ecr, repository, "1.2.0").digest

        _, delivery = sandbox.seed_and_trigger(open_layout(ours))
        tags = {
            detail["imageDigest"]: detail.get("imageTags", [])
            for detail in ecr.describe_images(repositoryName=repository)["imageDetails"]
        }

    assert delivery.status == "SUCCEEDED"
    assert tags[sellers] == ["1.2.0"]
    [published] = [digest for digest in tags if digest != sellers]
    assert tags[published] == [f"mlpublish-{published[7:19]}"]

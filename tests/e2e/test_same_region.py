"""Publishing from the region the images are pushed to: the seller's repository is the
destination, and the seller's tag must keep pointing at the seller's image."""

from __future__ import annotations

from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml
from tests.fixtures.images import write_layout

from sandbox.oci import open_layout
from sandbox.report import delivery_report
from sandbox.runner import ROOT, RunOptions, Sandbox, load_release

pytestmark = pytest.mark.e2e


def test_given_an_oci_image_published_in_its_own_region_then_the_sellers_tag_is_untouched(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "events" / "release.example.yaml").read_text())
    document["publishing_region"] = "us-west-2"  # the image's own region
    release = tmp_path / "release.yaml"
    release.write_text(yaml.safe_dump(document))
    written = write_layout(tmp_path / "image", "oci", tag="1.2.0")
    sandbox = Sandbox(load_release(release), RunOptions(release=release, validation="completed"))

    with (tmp_path / "lambda.log").open("w") as log, redirect_stdout(log), sandbox.running():
        digest, delivery = sandbox.seed_and_trigger(open_layout(written.path))
        report = delivery_report(sandbox, delivery, source_digest=digest)
        ecr = sandbox.aws("ecr", "us-west-2")
        tags = {
            detail["imageDigest"]: set(detail.get("imageTags", []))
            for detail in ecr.describe_images(repositoryName="acme/sentiment")["imageDetails"]
        }

    published = report["published_image_digest"]
    assert report["status"] == "SUCCEEDED", report["failure"]
    assert published != written.top_digest  # converted from OCI
    assert tags[written.top_digest] == {"1.2.0"}
    assert tags[published] == {"mlpublish-" + published.removeprefix("sha256:")[:12]}

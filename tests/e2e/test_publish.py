"""A release that succeeds: announced as ready for listing, its image published as Docker v2.

SageMaker wants one single-platform Docker v2 schema 2 manifest. A Docker v2 image is copied
byte for byte (same digest); an OCI image is converted over the very same config and layer
blobs (new manifest, new digest); from an index or manifest list only the linux/amd64 image
is published, without attestations.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.cli_runs import VALIDATION_MINUTES, CliRun, layout_blobs
from tests.fixtures.images import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, IN_TOTO, WrittenLayout, digest_of

pytestmark = pytest.mark.e2e

READY = "Release Ready For Listing"
AMD64 = "linux/amd64"
DEBIAN = "Debian GNU/Linux 12 (bookworm)"  # the os-release of tests/fixtures/images.py and the umoci image


@pytest.fixture(scope="module")
def release(publish_by: Callable[[str], CliRun]) -> CliRun:
    return publish_by("ecr-push")


def config_and_layers(manifest: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    return manifest["config"]["digest"], tuple(layer["digest"] for layer in manifest["layers"])


# --- the happy path: an ECR push of a Docker v2 image --------------------------------------


def test_given_a_pushed_image_when_the_release_runs_then_it_succeeds_with_exit_0(release: CliRun) -> None:
    assert release.exit_code == 0, release.stderr
    assert release.reported["status"] == "SUCCEEDED"
    assert release.reported["failure"] is None


def test_given_a_pushed_image_when_the_release_succeeds_then_subscribers_are_told_it_is_ready_for_listing(
    release: CliRun,
) -> None:
    arn = release.reported["model_package_arn"]

    [note] = release.reported["notifications"]

    assert note["subject"] == "Ready for listing: acme-sentiment 1.2.0"
    assert note["attributes"] == {
        "outcome": "ready",
        "product": "acme-sentiment",
        "version": "1.2.0",
        "kind": "model_package",
        "region": "us-east-2",
    }
    assert arn in note["message"]


def test_given_a_pushed_image_when_the_release_succeeds_then_the_announcement_names_the_os_read_from_the_image(
    release: CliRun,
) -> None:
    [note] = release.reported["notifications"]
    [event] = release.events(READY)

    assert f"; OS: {DEBIAN}, read from " in note["message"]
    [image] = event["detail"]["images"]
    assert (image["os"], image["os_uncertain"], image["os_remembered"]) == (DEBIAN, None, False)
    assert image["os_bytes_read"] > 0
    os_keys = ("os", "os_bytes_read", "os_uncertain", "os_remembered")
    assert release.reported["os"] == [{"container": "inference", **{key: image[key] for key in os_keys}}]


def test_given_a_pushed_image_when_the_release_succeeds_then_an_event_carries_the_model_package_arn(
    release: CliRun,
) -> None:
    [event] = release.events(READY)

    assert event["source"] == "mlpublish"
    assert event["detail"]["model_package_arn"] == release.reported["model_package_arn"]
    assert event["detail"]["publishing_region"] == "us-east-2"
    assert (event["detail"]["product"], event["detail"]["version"]) == ("acme-sentiment", "1.2.0")


def test_given_a_pushed_image_when_the_release_succeeds_then_exactly_its_model_package_exists(
    release: CliRun,
) -> None:
    arn = release.reported["model_package_arn"]

    assert arn.startswith("arn:aws:sagemaker:us-east-2:123456789012:model-package/acme-sentiment-1-2-0-")
    assert release.reported["model_packages"] == [arn]


def test_given_a_pushed_image_when_the_release_succeeds_then_the_image_is_published_as_docker_v2(
    release: CliRun,
) -> None:
    assert release.reported["published_media_type"] == DOCKER_MANIFEST
    assert release.published.images == (release.reported["published_image_digest"],)


def test_given_validation_that_takes_45_minutes_when_the_release_runs_then_it_waits_in_virtual_time(
    release: CliRun,
) -> None:
    assert release.reported["virtual_seconds"] >= VALIDATION_MINUTES * 60


def test_given_validation_that_takes_45_minutes_when_the_release_waits_then_sagemakers_event_ends_the_wait(
    release: CliRun,
) -> None:
    [ready] = release.events(READY)

    # PrepareValidation, AwaitValidation (no event in its first 30 minutes), ValidationWaitedOut,
    # AwaitValidation (ended by the state-change event at 45 minutes), ValidationComplete.
    assert release.reported["wait_transitions"]["validation"] == 5
    # Known within a minute of SageMaker finishing, not at the next look 15 minutes later.
    assert ready["detail"]["stage_seconds"]["AwaitValidation"] < VALIDATION_MINUTES * 60 + 60
    assert release.reported["validation_known_after"] == {ready["detail"]["model_package_arn"]: 0.0}


def test_given_a_release_when_it_runs_then_watchers_see_each_stage_it_enters_in_order(release: CliRun) -> None:
    changes = release.events("Release Stage Changed")
    [ready] = release.events(READY)

    assert [event["detail"]["stage"] for event in changes] == [
        "CopyToPublishingRegion",
        "ScanImages",
        "AwaitValidation",
    ]
    for event in changes:
        assert event["source"] == "mlpublish"
        assert event["detail"]["execution"] == ready["detail"]["execution"]
        assert (event["detail"]["product"], event["detail"]["version"]) == ("acme-sentiment", "1.2.0")
    entered = [event["detail"]["entered"] for event in changes]
    assert entered == sorted(entered)
    assert all(time.endswith("Z") for time in entered)


def test_given_validation_that_takes_45_minutes_when_the_release_is_ready_then_it_says_how_long_each_stage_took(
    release: CliRun,
) -> None:
    [ready] = release.events(READY)
    [note] = release.reported["notifications"]
    seconds = ready["detail"]["stage_seconds"]

    assert list(seconds) == ["ResolveRelease", "CopyToPublishingRegion", "ScanImages", "AwaitValidation"]
    assert VALIDATION_MINUTES * 60 <= seconds["AwaitValidation"] < release.reported["virtual_seconds"] + release.seconds
    assert all(value >= 0 for value in seconds.values())
    assert "Time taken: resolve " in note["message"]


def test_given_a_release_when_it_runs_then_every_state_payload_stays_small(release: CliRun) -> None:
    # References only, never manifests or blobs: far below Step Functions' 256 KiB.
    assert 0 < release.reported["max_state_bytes"] < 8 * 1024


# --- what is published for each kind of image ----------------------------------------------


def test_given_a_docker_v2_image_when_published_then_its_manifest_is_copied_byte_for_byte(
    release: CliRun, image: Callable[[str], WrittenLayout]
) -> None:
    source = image("docker-v2")
    report = release.reported

    assert report["source_image_digest"] == source.top_digest
    assert report["published_image_digest"] == source.top_digest == digest_of(source.top_bytes)
    assert json.dumps(report["published_manifest"], separators=(",", ":")).encode() == source.top_bytes
    assert release.published.blobs == set(source.blobs)


def test_given_an_oci_image_when_published_then_it_becomes_docker_v2_over_the_same_blobs(
    publish_image: Callable[..., CliRun], image: Callable[[str], WrittenLayout]
) -> None:
    source = image("oci").images[AMD64]

    run = publish_image("oci")
    manifest = run.reported["published_manifest"]

    assert run.exit_code == 0, run.stderr
    assert run.reported["source_image_digest"] == source.manifest_digest
    assert run.reported["published_image_digest"] != source.manifest_digest
    assert (manifest["mediaType"], run.reported["published_media_type"]) == (DOCKER_MANIFEST, DOCKER_MANIFEST)
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert {layer["mediaType"] for layer in manifest["layers"]} == {DOCKER_LAYER_GZIP}
    assert config_and_layers(manifest) == (source.config_digest, source.layer_digests)
    assert run.published.blobs == {source.config_digest, *source.layer_digests}


def test_given_an_oci_index_with_attestations_when_published_then_only_the_amd64_image_is_published(
    publish_image: Callable[..., CliRun], image: Callable[[str], WrittenLayout]
) -> None:
    written = image("index")
    amd64 = written.images[AMD64]

    run = publish_image("index")
    manifest = run.reported["published_manifest"]

    assert run.exit_code == 0, run.stderr
    assert run.reported["source_image_digest"] == written.top_digest
    assert run.reported["published_media_type"] == DOCKER_MANIFEST
    assert config_and_layers(manifest) == (amd64.config_digest, amd64.layer_digests)
    assert IN_TOTO not in {layer["mediaType"] for layer in manifest["layers"]}
    assert run.published.images == (run.reported["published_image_digest"],)
    assert run.published.blobs == {amd64.config_digest, *amd64.layer_digests}  # no attestation, no arm64


def test_given_a_docker_manifest_list_when_published_then_its_amd64_image_is_published_unchanged(
    publish_image: Callable[..., CliRun], image: Callable[[str], WrittenLayout]
) -> None:
    written = image("docker-list")
    amd64 = written.images[AMD64]

    run = publish_image("docker-list")
    manifest = run.reported["published_manifest"]

    assert run.exit_code == 0, run.stderr
    assert run.reported["source_image_digest"] == written.top_digest
    assert run.reported["published_image_digest"] == amd64.manifest_digest
    assert run.reported["published_media_type"] == DOCKER_MANIFEST
    assert config_and_layers(manifest) == (amd64.config_digest, amd64.layer_digests)
    assert run.published.blobs == {amd64.config_digest, *amd64.layer_digests}


def test_given_an_oci_layout_built_by_umoci_when_published_then_it_is_ready_for_listing_as_docker_v2(
    publish: Callable[..., CliRun], release_file: Callable[..., Path], umoci_image: Path
) -> None:
    index = json.loads((umoci_image / "index.json").read_text())
    [top] = index["manifests"]
    source = json.loads((umoci_image / "blobs" / "sha256" / top["digest"].removeprefix("sha256:")).read_text())

    run = publish("--release", release_file(), "--image", umoci_image)

    assert run.exit_code == 0, run.stderr
    assert run.reported["status"] == "SUCCEEDED"
    assert run.reported["source_image_digest"] == top["digest"]
    assert run.reported["published_media_type"] == DOCKER_MANIFEST
    assert config_and_layers(run.reported["published_manifest"]) == config_and_layers(source)
    assert run.published.blobs == set(layout_blobs(umoci_image)) - {top["digest"]}
    assert len(run.events(READY)) == 1
    assert f"; OS: {DEBIAN}, read from " in run.reported["notifications"][0]["message"]

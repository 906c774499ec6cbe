"""ECR image scans against moto: started once, waited for, and gated like Marketplace gates them.

moto answers describe_image_scan_findings with a static HIGH finding unless a custom result is
queued on its backend (see moto.ecr.models.ECRBackend.describe_image_scan_findings).
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.ecr.models import ecr_backends
from tests.fixtures.moto_world import DOCKER_MANIFEST, push_image
from tests.fixtures.releases import ACCOUNT, PUBLISHING_REGION

from mlpublish.errors import ImageScanBlocked
from mlpublish.scanning import SCAN_TIMEOUT_ATTEMPTS, SCAN_WAITS, scan_images
from mlpublish.state import PublishedImage

pytestmark = pytest.mark.integration

REPOSITORY = "acme/sentiment"


@pytest.fixture
def ecr(moto_aws: None) -> Any:
    return boto3.client("ecr", region_name=PUBLISHING_REGION)


def published(ecr: Any, *, repository: str = REPOSITORY, seed: str = "1") -> PublishedImage:
    digest = push_image(ecr, repository=repository, tag=None, seed=seed)
    uri = f"{ACCOUNT}.dkr.ecr.{PUBLISHING_REGION}.amazonaws.com/{repository}@{digest}"
    return PublishedImage(
        container=repository.rsplit("/", 1)[-1],
        repository=repository,
        image_uri=uri,
        digest=digest,
        media_type=DOCKER_MANIFEST,
        source_digest=digest,
        selected_digest=digest,
        conversion="none",
        blobs_copied=2,
        blobs_skipped=0,
        bytes_copied=300,
    )


def queue_scan_result(image: PublishedImage, status: str, description: str = "", **findings: Any) -> None:
    """Queue the answer moto gives to the next describe_image_scan_findings of this image."""
    ecr_backends[ACCOUNT][PUBLISHING_REGION].scan_finding_results.append(
        {
            "registryId": ACCOUNT,
            "repositoryName": image.repository,
            "imageId": {"imageDigest": image.digest},
            "imageScanStatus": {"status": status, "description": description},
            "imageScanFindings": findings,
        }
    )


def test_given_an_image_never_scanned_when_checked_then_a_scan_is_started(ecr: Any) -> None:
    image = published(ecr)
    queue_scan_result(image, "IN_PROGRESS")

    progress = scan_images(ecr, [image], attempt=0)

    assert (progress.complete, progress.images[0].status) == (False, "IN_PROGRESS")
    # Basic scanning allows one scan per image per day: a second start is refused.
    with pytest.raises(ecr.exceptions.LimitExceededException):
        ecr.start_image_scan(repositoryName=image.repository, imageId={"imageDigest": image.digest})


def limit_exceeded(**_: Any) -> None:
    error = {"Error": {"Code": "LimitExceededException", "Message": "The scan quota per image has been exceeded."}}
    raise ClientError(error, "StartImageScan")


def test_given_no_scan_and_ecrs_scan_limit_reached_when_checked_then_the_release_stops_at_once(
    ecr: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = published(ecr)
    monkeypatch.setattr(ecr, "start_image_scan", limit_exceeded)

    with pytest.raises(ImageScanBlocked) as caught:
        scan_images(ecr, [image], attempt=0)

    assert caught.value.message == (
        "ECR's scan limit (one basic scan per image per 24 h, or the account's daily limit) was reached, "
        f"and {image.image_uri} has no scan; start the release again later"
    )


def test_given_the_scan_limit_refuses_a_scan_started_meanwhile_when_checked_then_that_scan_is_used(
    ecr: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = published(ecr)
    start = ecr.start_image_scan

    def started_by_scan_on_push(**request: Any) -> None:
        start(**request)
        limit_exceeded()

    monkeypatch.setattr(ecr, "start_image_scan", started_by_scan_on_push)
    queue_scan_result(image, "IN_PROGRESS")

    progress = scan_images(ecr, [image], attempt=0)

    assert (progress.complete, progress.images[0].status) == (False, "IN_PROGRESS")


def test_given_a_high_finding_when_checked_then_the_release_is_blocked_naming_the_finding(ecr: Any) -> None:
    image = published(ecr)  # moto's default result: one HIGH finding, CVE-9999-9999

    with pytest.raises(ImageScanBlocked) as caught:
        scan_images(ecr, [image], attempt=0)

    assert caught.value.reasons == [
        f"{image.image_uri} has 1 HIGH vulnerabilities: CVE-9999-9999 (HIGH); update the affected packages"
    ]
    assert "fix the images and push again" in caught.value.message


def test_given_a_clean_completed_scan_when_checked_then_the_scans_are_complete(ecr: Any) -> None:
    image = published(ecr)
    ecr.start_image_scan(repositoryName=image.repository, imageId={"imageDigest": image.digest})
    queue_scan_result(image, "COMPLETE", "The scan was completed successfully.", findingSeverityCounts={"LOW": 2})

    progress = scan_images(ecr, [image], attempt=3)

    assert (progress.complete, progress.wait_seconds, progress.attempt) == (True, 0, 4)
    # The state keeps each image's status in the images' order; the image names it.
    assert [(result.status, result.severity_counts) for result in progress.images] == [("COMPLETE", {"LOW": 2})]


def test_given_an_image_ecr_cannot_scan_when_checked_then_a_scannable_os_is_advised(ecr: Any) -> None:
    image = published(ecr)
    ecr.start_image_scan(repositoryName=image.repository, imageId={"imageDigest": image.digest})
    queue_scan_result(image, "UNSUPPORTED_IMAGE", "UnsupportedImageError: The operating system is not supported")

    with pytest.raises(ImageScanBlocked) as caught:
        scan_images(ecr, [image], attempt=1)

    [reason] = caught.value.reasons
    assert reason.startswith(f"ECR cannot scan {image.image_uri} (UnsupportedImageError:")
    assert "Marketplace rejects unscannable images (UnscannableImage)" in reason
    assert "Base the image on a scannable OS" in reason


def test_given_a_scan_in_progress_when_checked_then_it_is_incomplete_and_says_how_long_to_wait(ecr: Any) -> None:
    image = published(ecr)
    ecr.start_image_scan(repositoryName=image.repository, imageId={"imageDigest": image.digest})
    queue_scan_result(image, "IN_PROGRESS")

    progress = scan_images(ecr, [image], attempt=2)

    assert (progress.complete, progress.attempt) == (False, 3)
    assert progress.wait_seconds == SCAN_WAITS[2] > 0
    assert progress.images[0].status == "IN_PROGRESS"


def test_given_a_scan_still_in_progress_after_the_last_check_then_the_release_stops(ecr: Any) -> None:
    image = published(ecr)
    ecr.start_image_scan(repositoryName=image.repository, imageId={"imageDigest": image.digest})
    queue_scan_result(image, "IN_PROGRESS")

    with pytest.raises(ImageScanBlocked, match=f"did not finish after {SCAN_TIMEOUT_ATTEMPTS} checks"):
        scan_images(ecr, [image], attempt=SCAN_TIMEOUT_ATTEMPTS)


def test_given_several_images_then_only_the_blocking_ones_are_listed(ecr: Any) -> None:
    clean = published(ecr, repository="acme/preprocess", seed="2")
    ecr.start_image_scan(repositoryName=clean.repository, imageId={"imageDigest": clean.digest})
    queue_scan_result(clean, "COMPLETE", findingSeverityCounts={"MEDIUM": 1})
    vulnerable = published(ecr, seed="3")
    ecr.start_image_scan(repositoryName=vulnerable.repository, imageId={"imageDigest": vulnerable.digest})
    queue_scan_result(
        vulnerable,
        "COMPLETE",
        findingSeverityCounts={"CRITICAL": 1, "HIGH": 2},
        findings=[
            {"name": "CVE-2024-0001", "severity": "CRITICAL"},
            {"name": "CVE-2024-0002", "severity": "HIGH"},
            {"name": "CVE-2024-0003", "severity": "HIGH"},
            {"name": "CVE-2024-0004", "severity": "LOW"},
        ],
    )

    with pytest.raises(ImageScanBlocked) as caught:
        scan_images(ecr, [clean, vulnerable], attempt=1)

    assert caught.value.reasons == [
        f"{vulnerable.image_uri} has 1 CRITICAL, 2 HIGH vulnerabilities: CVE-2024-0001 (CRITICAL), "
        "CVE-2024-0002 (HIGH), CVE-2024-0003 (HIGH); update the affected packages"
    ]

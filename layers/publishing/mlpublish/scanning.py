"""ECR image scans in the publishing region, gated the way Marketplace gates them.

Marketplace checks the ECR scan results of every image before publishing and rejects
Critical or High findings, and images whose OS cannot be scanned (``UnscannableImage``).
Basic scanning allows one scan per image per 24 hours, so an existing scan is reused.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from mlpublish.aws import error_code, transient_errors
from mlpublish.errors import ImageScanBlocked
from mlpublish.images.osinfo import SCANNABLE_NAMES
from mlpublish.state import ImageScanResult, PublishedImage, ScanProgress, ScanStatus

BLOCKING_SEVERITIES = ("CRITICAL", "HIGH")
SCAN_WAITS = (15, 30, 60, 120, 300)
SCAN_TIMEOUT_ATTEMPTS = 40
PENDING_STATUSES = frozenset({"IN_PROGRESS", "PENDING"})
# Basic scans end COMPLETE; with enhanced scanning (Amazon Inspector) a scanned image is ACTIVE.
FINISHED_STATUSES = frozenset({"COMPLETE", "ACTIVE"})


def _findings(ecr: Any, image: PublishedImage) -> dict[str, Any] | None:
    try:
        with transient_errors(f"reading scan findings of {image.image_uri}"):
            return dict(
                ecr.describe_image_scan_findings(
                    repositoryName=image.repository, imageId={"imageDigest": image.digest}, maxResults=100
                )
            )
    except ClientError as exc:
        if error_code(exc) == "ScanNotFoundException":
            return None
        raise


def _start(ecr: Any, image: PublishedImage) -> bool:
    """Start a scan; False when ECR's scan limit refuses it."""
    try:
        with transient_errors(f"starting a scan of {image.image_uri}"):
            ecr.start_image_scan(repositoryName=image.repository, imageId={"imageDigest": image.digest})
    except ClientError as exc:
        code = error_code(exc)
        if code == "LimitExceededException":
            return False
        if code == "UnsupportedImageTypeException":
            raise ImageScanBlocked(_unscannable(image, str(exc))) from exc
        raise
    return True


def _unscannable(image: PublishedImage, detail: str) -> str:
    return (
        f"ECR cannot scan {image.image_uri} ({detail}); Marketplace rejects unscannable images "
        f"(UnscannableImage). Base the image on a scannable OS: {SCANNABLE_NAMES} (not scratch "
        "or distroless without OS files)"
    )


def scan_image(ecr: Any, image: PublishedImage) -> tuple[ImageScanResult, dict[str, Any]]:
    """The scan result, starting the scan if the image has none yet, and the raw findings."""
    found = _findings(ecr, image)
    if found is None:
        started = _start(ecr, image)
        found = _findings(ecr, image)
        if found is None and not started:
            # Refused, and no scan started meanwhile (e.g. by scan on push): no scan will come,
            # so waiting for one would only use up the checks.
            raise ImageScanBlocked(
                f"ECR's scan limit (one basic scan per image per 24 h, or the account's daily limit) was "
                f"reached, and {image.image_uri} has no scan; start the release again later"
            )
        found = found or {}
    status = found.get("imageScanStatus", {}).get("status", "IN_PROGRESS")
    counts = found.get("imageScanFindings", {}).get("findingSeverityCounts", {}) or {}
    result = ImageScanResult(
        repository=image.repository,
        digest=image.digest,
        status=status,
        severity_counts={str(key): int(value) for key, value in counts.items()},
    )
    return result, found


def scan_images(ecr: Any, images: list[PublishedImage], *, attempt: int) -> ScanProgress:
    """Start or read each image's scan; raise ImageScanBlocked with every blocking finding."""
    results: list[ImageScanResult] = []
    problems: list[str] = []
    for image in images:
        result, found = scan_image(ecr, image)
        results.append(result)
        problems.extend(_problems(image, result, found))
    if problems:
        raise ImageScanBlocked(
            f"image scanning blocks the release ({len(problems)} problem(s)); fix the images and push again:",
            reasons=problems,
        )
    complete = all(result.status not in PENDING_STATUSES for result in results)
    if not complete and attempt >= SCAN_TIMEOUT_ATTEMPTS:
        raise ImageScanBlocked(
            f"image scans did not finish after {attempt} checks; see the ECR console, then start again"
        )
    return ScanProgress(
        complete=complete,
        attempt=attempt + 1,
        wait_seconds=0 if complete else SCAN_WAITS[min(attempt, len(SCAN_WAITS) - 1)],
        images=[ScanStatus(status=result.status, severity_counts=result.severity_counts) for result in results],
    )


def _problems(image: PublishedImage, result: ImageScanResult, found: dict[str, Any]) -> list[str]:
    if result.status in PENDING_STATUSES:
        return []
    description = found.get("imageScanStatus", {}).get("description", "")
    if result.status == "UNSUPPORTED_IMAGE":
        return [_unscannable(image, description or "UNSUPPORTED_IMAGE")]
    if result.status not in FINISHED_STATUSES:
        return [f"scan of {image.image_uri} ended {result.status}: {description or 'no description'}"]
    blocking = {sev: result.severity_counts.get(sev, 0) for sev in BLOCKING_SEVERITIES}
    if not any(blocking.values()):
        return []
    names = [
        f"{finding.get('name')} ({finding.get('severity')})"
        for finding in found.get("imageScanFindings", {}).get("findings", [])
        if finding.get("severity") in BLOCKING_SEVERITIES
    ]
    counts = ", ".join(f"{count} {sev}" for sev, count in blocking.items() if count)
    listed = f": {', '.join(names[:10])}" + (" …" if len(names) > 10 else "") if names else ""
    return [f"{image.image_uri} has {counts} vulnerabilities{listed}; update the affected packages"]

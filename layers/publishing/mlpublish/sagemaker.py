"""The SageMaker model package: created certified with one validation profile, then watched.

The package name carries the release fingerprint, so the same content always maps to the
same package: a repeated release reuses it instead of creating a second one, and new
content gets a new package (CertifyForMarketplace and the validation profile cannot be
changed on an existing package).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from mlpublish.aws import error_code, transient_errors
from mlpublish.errors import ResourceConflict, ResourceRejected, ValidationFailed, ValidationTimedOut
from mlpublish.state import PublishedImage, Release, ResourceResult, StatusItem, ValidationProgress

# Polling backoff: validation runs batch transform jobs, which take several minutes to
# start and tens of minutes to hours in all. The first look is after 5 minutes, then every
# 15 minutes for the first hour (most validations end there, known at most 15 minutes
# late), then every 30: two polls (six state transitions) an hour however long it takes.
VALIDATION_WAITS = (300, 300, 600, 900, 900, 900, 1800)


def model_package_request(release: Release, images: list[PublishedImage]) -> dict[str, Any]:
    """The CreateModelPackage request for a certified, unversioned Marketplace package."""
    spec = release.spec
    published = {image.container: image for image in images}
    containers = []
    for container in spec.containers:
        image = published[container.name]
        definition: dict[str, Any] = {"Image": image.image_uri, "ImageDigest": image.digest}
        model_data = release.object_for("model_data", container.name)
        if model_data is not None:
            definition["ModelDataUrl"] = model_data.destination_uri
        if container.environment:
            definition["Environment"] = dict(container.environment)
        containers.append(definition)
    validation = spec.validation
    validation_input = release.object_for("validation_input")
    assert validation_input is not None  # nosec B101  # narrows the type: every release has validation input (release.py)
    transform_input: dict[str, Any] = {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": validation_input.destination_uri}},
        "ContentType": validation.content_type,
        "CompressionType": validation.compression,
        "SplitType": validation.split_type,
    }
    transform_output: dict[str, Any] = {"S3OutputPath": release.validation_output_uri}
    if validation.accept:
        transform_output["Accept"] = validation.accept
    return {
        "ModelPackageName": release.resource_name,
        "ModelPackageDescription": (spec.product.description or f"{spec.product.name} {spec.product.version}")[:1024],
        "InferenceSpecification": {
            "Containers": containers,
            "SupportedContentTypes": list(spec.inference.content_types),
            "SupportedResponseMIMETypes": list(spec.inference.response_mime_types),
            "SupportedRealtimeInferenceInstanceTypes": list(spec.inference.realtime_instance_types),
            "SupportedTransformInstanceTypes": list(spec.inference.transform_instance_types),
        },
        "ValidationSpecification": {
            "ValidationRole": release.validation_role_arn,
            "ValidationProfiles": [
                {
                    "ProfileName": validation.profile_name,
                    "TransformJobDefinition": {
                        "MaxPayloadInMB": validation.max_payload_mb,
                        "BatchStrategy": validation.batch_strategy,
                        "TransformInput": transform_input,
                        "TransformOutput": transform_output,
                        "TransformResources": {
                            "InstanceType": validation.instance_type,
                            "InstanceCount": validation.instance_count,
                        },
                    },
                }
            ],
        },
        "CertifyForMarketplace": True,
        "ClientToken": release.fingerprint[:36],
        "Tags": [
            {"Key": "mlpublish:product", "Value": spec.product.name},
            {"Key": "mlpublish:version", "Value": spec.product.version},
            {"Key": "mlpublish:fingerprint", "Value": release.fingerprint[:32]},
        ],
    }


def describe(sm: Any, name: str) -> dict[str, Any] | None:
    try:
        with transient_errors(f"describing model package {name}"):
            return dict(sm.describe_model_package(ModelPackageName=name))
    except ClientError as exc:
        if error_code(exc) in {"ValidationException", "ResourceNotFound", "ResourceNotFoundException"}:
            return None
        raise


def status_items(details: dict[str, Any], key: str) -> list[StatusItem]:
    return [
        StatusItem(name=item["Name"], status=item["Status"], failure_reason=item.get("FailureReason"))
        for item in details.get(key, []) or []
    ]


def failure_reasons(description: dict[str, Any]) -> list[str]:
    """Every FailureReason SageMaker gave, prefixed by what it is about."""
    details = description.get("ModelPackageStatusDetails", {}) or {}
    reasons = []
    for key, label in (("ValidationStatuses", "validation"), ("ImageScanStatuses", "image scan")):
        for item in status_items(details, key):
            if item.status == "Failed" or item.failure_reason:
                reasons.append(f"{label} {item.name}: {item.status}: {item.failure_reason or 'no reason given'}")
    return reasons


def _digests(description: dict[str, Any]) -> list[str]:
    containers = description.get("InferenceSpecification", {}).get("Containers", [])
    return [str(container.get("ImageDigest", "")) for container in containers]


def create_model_package(sm: Any, release: Release, images: list[PublishedImage]) -> ResourceResult:
    """Create the package, or reuse the one this exact content already made."""
    request = model_package_request(release, images)
    name = release.resource_name
    existing = describe(sm, name)
    if existing is not None:
        return _reuse(existing, request, name)
    try:
        with transient_errors(f"creating model package {name}"):
            arn = sm.create_model_package(**request)["ModelPackageArn"]
    except ClientError as exc:
        # SageMaker answers a taken name with ValidationException "... already exists".
        if error_code(exc) == "ConflictException" or "already exists" in str(exc):
            existing = describe(sm, name)
            if existing is not None:
                return _reuse(existing, request, name)
        raise ResourceRejected(
            f"SageMaker refused model package {name} ({error_code(exc)}): {exc}; check the release's "
            "inference and validation settings (and the account's SageMaker quotas)"
        ) from exc
    return ResourceResult(arn=str(arn), name=name, action="created")


def _reuse(existing: dict[str, Any], request: dict[str, Any], name: str) -> ResourceResult:
    wanted = [container["ImageDigest"] for container in request["InferenceSpecification"]["Containers"]]
    if _digests(existing) != wanted or not existing.get("CertifyForMarketplace", False):
        raise ResourceConflict(
            f"model package {name} exists with other images or without Marketplace certification; "
            "delete it (aws sagemaker delete-model-package) or change the release version"
        )
    if existing.get("ModelPackageStatus") == "Failed":
        raise ValidationFailed(
            f"model package {name} was already made from this exact content and failed validation; "
            "fix the image or artifacts (a new digest makes a new package), or delete the package "
            "to validate the same content again",
            reasons=failure_reasons(existing),
        )
    return ResourceResult(arn=str(existing["ModelPackageArn"]), name=name, action="reused")


def check_validation(
    sm: Any, arn: str, *, attempt: int, elapsed_seconds: int, timeout_minutes: int
) -> ValidationProgress:
    """One poll. Completed returns; Failed raises with every reason; else says how long to wait."""
    description = describe(sm, arn)
    if description is None:
        raise ValidationFailed(f"model package {arn} disappeared while it was being validated")
    status = str(description.get("ModelPackageStatus"))
    details = description.get("ModelPackageStatusDetails", {}) or {}
    if status == "Failed":
        raise ValidationFailed(
            f"SageMaker validation of {description.get('ModelPackageName', arn)} failed",
            reasons=failure_reasons(description),
        )
    if status not in {"Completed", "Pending", "InProgress"}:
        raise ValidationFailed(f"model package {arn} is {status}; it cannot be listed")
    if status != "Completed" and elapsed_seconds >= timeout_minutes * 60:
        raise ValidationTimedOut(
            f"validation of {arn} is still {status} after {elapsed_seconds // 60} minutes "
            f"(validation.timeout_minutes is {timeout_minutes}); look at its transform jobs in the "
            "SageMaker console, then start the release again to keep waiting",
            reasons=failure_reasons(description),
        )
    wait = VALIDATION_WAITS[min(attempt, len(VALIDATION_WAITS) - 1)]
    return ValidationProgress(
        status=status,
        attempt=attempt + 1,
        wait_seconds=0 if status == "Completed" else wait,
        elapsed_seconds=elapsed_seconds + (0 if status == "Completed" else wait),
        validation_statuses=status_items(details, "ValidationStatuses"),
        image_scan_statuses=status_items(details, "ImageScanStatuses"),
    )

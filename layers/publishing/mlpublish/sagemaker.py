"""The SageMaker model package or algorithm: created certified with one validation profile, then watched.

The resource name carries the release fingerprint, so the same content always maps to the
same package (or algorithm): a repeated release reuses it instead of creating a second one,
and new content gets a new one (CertifyForMarketplace and the validation profile cannot be
changed on an existing resource). A model package is validated by a batch transform job; an
algorithm by a training job, then a batch transform job with the model it trained.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mlpublish.aws import error_code, transient_errors
from mlpublish.errors import ResourceConflict, ResourceRejected, ValidationFailed, ValidationTimedOut
from mlpublish.preflight import channel_compression
from mlpublish.release import TRAINING_IMAGE, SourceAlgorithm
from mlpublish.state import (
    WAIT_FALLBACK_SECONDS,
    PublishedImage,
    Release,
    ResourceResult,
    StatusItem,
    ValidationProgress,
)

# Polling backoff: validation runs batch transform jobs, which take several minutes to
# start and tens of minutes to hours in all. The first look is after 5 minutes, then every
# 15 minutes for the first hour (most validations end there, known at most 15 minutes
# late), then every 30: two polls (six state transitions) an hour however long it takes.


@dataclass(frozen=True)
class Kind:
    """How one kind of SageMaker resource is named, described and read."""

    label: str  # "model package" / "algorithm"
    arn_type: str  # the resource type in its ARN
    name_key: str  # CreateX's name field, DescribeX's name / ARN field
    arn_key: str
    status_key: str
    details_key: str
    describe: str  # the client method
    create: str


MODEL_PACKAGE = Kind(
    "model package", "model-package", "ModelPackageName", "ModelPackageArn", "ModelPackageStatus",
    "ModelPackageStatusDetails", "describe_model_package", "create_model_package",
)  # fmt: skip
ALGORITHM = Kind(
    "algorithm", "algorithm", "AlgorithmName", "AlgorithmArn", "AlgorithmStatus", "AlgorithmStatusDetails",
    "describe_algorithm", "create_algorithm",
)  # fmt: skip


def kind_of(release_or_arn: Release | str) -> Kind:
    """The resource kind a release publishes, or an ARN names."""
    if isinstance(release_or_arn, str):
        return ALGORITHM if f":{ALGORITHM.arn_type}/" in release_or_arn else MODEL_PACKAGE
    return ALGORITHM if release_or_arn.spec.is_algorithm else MODEL_PACKAGE


def _inference_specification(release: Release, images: list[PublishedImage]) -> dict[str, Any]:
    spec = release.spec
    inference = spec.inference
    assert inference is not None  # nosec B101  # every release with containers has it (release.py)
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
    return {
        "Containers": containers,
        "SupportedContentTypes": list(inference.content_types),
        "SupportedResponseMIMETypes": list(inference.response_mime_types),
        "SupportedRealtimeInferenceInstanceTypes": list(inference.realtime_instance_types),
        "SupportedTransformInstanceTypes": list(inference.transform_instance_types),
    }


def _transform_job(release: Release) -> dict[str, Any]:
    validation = release.spec.validation
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
        "MaxPayloadInMB": validation.max_payload_mb,
        "BatchStrategy": validation.batch_strategy,
        "TransformInput": transform_input,
        "TransformOutput": transform_output,
        "TransformResources": {"InstanceType": validation.instance_type, "InstanceCount": validation.instance_count},
    }


def _tags(release: Release) -> list[dict[str, str]]:
    spec = release.spec
    return [
        {"Key": "mlpublish:product", "Value": spec.product.name},
        {"Key": "mlpublish:version", "Value": spec.product.version},
        {"Key": "mlpublish:fingerprint", "Value": release.fingerprint[:32]},
    ]


def _description(release: Release) -> str:
    spec = release.spec
    return (spec.product.description or f"{spec.product.name} {spec.product.version}")[:1024]


def model_package_request(release: Release, images: list[PublishedImage]) -> dict[str, Any]:
    """The CreateModelPackage request for a certified, unversioned Marketplace package: of the
    release's containers, or of the seller's algorithm and the model it trained."""
    validation = release.spec.validation
    source = release.spec.source_algorithm
    if source is None:
        serving: dict[str, Any] = {"InferenceSpecification": _inference_specification(release, images)}
    else:
        model_data = release.object_for("model_data")
        assert model_data is not None  # nosec B101  # pinned with the release (resolve.py)
        serving = {
            "SourceAlgorithmSpecification": {
                "SourceAlgorithms": [{"AlgorithmName": source.algorithm, "ModelDataUrl": model_data.destination_uri}]
            }
        }
    return {
        "ModelPackageName": release.resource_name,
        "ModelPackageDescription": _description(release),
        **serving,
        "ValidationSpecification": {
            "ValidationRole": release.validation_role_arn,
            "ValidationProfiles": [
                {"ProfileName": validation.profile_name, "TransformJobDefinition": _transform_job(release)}
            ],
        },
        "CertifyForMarketplace": True,
        "ClientToken": release.fingerprint[:36],
        "Tags": _tags(release),
    }


def algorithm_request(release: Release, images: list[PublishedImage]) -> dict[str, Any]:
    """The CreateAlgorithm request for a certified Marketplace algorithm: its training
    specification, the inference containers that serve what it trains, and one validation
    profile that trains on the release's channels, then transforms validation.input."""
    spec = release.spec
    training, job = spec.training, spec.validation.training
    assert training is not None  # nosec B101  # an algorithm release has both (release.py)
    assert job is not None  # nosec B101
    published = {image.container: image for image in images}
    # The training image is published on its own, or is the image of one of the containers
    # (the first one's when training.image is left out).
    same = [c.name for c in spec.containers if training.image_ref is not None and c.image_ref == training.image_ref]
    trainer = published.get(TRAINING_IMAGE) or published[(same or [spec.containers[0].name])[0]]
    channels = {channel.name: channel for channel in training.channels}
    inputs = []
    for name in job.channels:
        data = release.object_for("training_input", name)
        assert data is not None  # nosec B101  # every channel's object is pinned (resolve.py)
        channel: dict[str, Any] = {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": data.destination_uri,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "ContentType": channels[name].content_types[0],
            "CompressionType": channel_compression(data.destination_key),
            "InputMode": job.input_mode,
        }
        inputs.append(channel)
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": job.max_runtime_seconds}
    hyperparameters = []
    for parameter in training.hyperparameters:
        item: dict[str, Any] = {
            "Name": parameter.name,
            "Type": parameter.type,
            "IsTunable": parameter.tunable,
            "IsRequired": parameter.required,
        }
        if parameter.description:
            item["Description"] = parameter.description
        if parameter.default is not None:
            item["DefaultValue"] = parameter.default
        if parameter.type in {"Integer", "Continuous"}:
            low, high = parameter.min, parameter.max
            if parameter.type == "Integer":  # 1.0 in YAML is the whole number 1, sent as "1"
                low, high = int(low or 0), int(high or 0)
            item["Range"] = {
                f"{parameter.type}ParameterRangeSpecification": {"MinValue": str(low), "MaxValue": str(high)}
            }
        elif parameter.type == "Categorical":
            item["Range"] = {"CategoricalParameterRangeSpecification": {"Values": list(parameter.values or [])}}
        hyperparameters.append(item)
    return {
        "AlgorithmName": release.resource_name,
        "AlgorithmDescription": _description(release),
        "TrainingSpecification": {
            "TrainingImage": trainer.image_uri,
            "TrainingImageDigest": trainer.digest,
            "SupportedHyperParameters": hyperparameters,
            "SupportedTrainingInstanceTypes": list(training.instance_types),
            "SupportsDistributedTraining": training.distributed,
            "MetricDefinitions": [{"Name": metric.name, "Regex": metric.regex} for metric in training.metrics],
            "TrainingChannels": [
                {
                    "Name": channel.name,
                    **({"Description": channel.description} if channel.description else {}),
                    "IsRequired": channel.required,
                    "SupportedContentTypes": list(channel.content_types),
                    "SupportedCompressionTypes": list(channel.compression),
                    "SupportedInputModes": list(channel.input_modes),
                }
                for channel in training.channels
            ],
            "SupportedTuningJobObjectiveMetrics": [
                {"Type": objective.type, "MetricName": objective.metric} for objective in training.objectives
            ],
        },
        "InferenceSpecification": _inference_specification(release, images),
        "ValidationSpecification": {
            "ValidationRole": release.validation_role_arn,
            "ValidationProfiles": [
                {
                    "ProfileName": spec.validation.profile_name,
                    "TrainingJobDefinition": {
                        "TrainingInputMode": job.input_mode,
                        "HyperParameters": dict(job.hyperparameters),
                        "InputDataConfig": inputs,
                        "OutputDataConfig": {"S3OutputPath": f"{release.validation_output_uri}training/"},
                        "ResourceConfig": {
                            "InstanceType": job.instance_type,
                            "InstanceCount": job.instance_count,
                            "VolumeSizeInGB": job.volume_gb,
                        },
                        "StoppingCondition": stopping,
                    },
                    "TransformJobDefinition": _transform_job(release),
                }
            ],
        },
        "CertifyForMarketplace": True,
        "Tags": _tags(release),
    }


def resource_request(release: Release, images: list[PublishedImage]) -> dict[str, Any]:
    """CreateModelPackage's or CreateAlgorithm's request, by the release's kind."""
    return (algorithm_request if release.spec.is_algorithm else model_package_request)(release, images)


def describe(sm: Any, name: str, kind: Kind = MODEL_PACKAGE) -> dict[str, Any] | None:
    try:
        with transient_errors(f"describing {kind.label} {name}"):
            return dict(getattr(sm, kind.describe)(**{kind.name_key: name}))
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
    kind = ALGORITHM if "AlgorithmArn" in description else MODEL_PACKAGE
    details = description.get(kind.details_key, {}) or {}
    reasons = []
    for key, label in (("ValidationStatuses", "validation"), ("ImageScanStatuses", "image scan")):
        for item in status_items(details, key):
            if item.status == "Failed" or item.failure_reason:
                reasons.append(f"{label} {item.name}: {item.status}: {item.failure_reason or 'no reason given'}")
    return reasons


def _digests(description: dict[str, Any]) -> list[str]:
    """What a package or algorithm is made of: its training image's digest, its containers'
    digests, or the algorithm and model data it is built from."""
    training = description.get("TrainingSpecification", {}) or {}
    containers = (description.get("InferenceSpecification", {}) or {}).get("Containers", [])
    sources = (description.get("SourceAlgorithmSpecification", {}) or {}).get("SourceAlgorithms", [])
    found = [str(training["TrainingImageDigest"])] if training.get("TrainingImageDigest") else []
    found += [f"{source.get('AlgorithmName')} {source.get('ModelDataUrl')}" for source in sources]
    return found + [str(container.get("ImageDigest", "")) for container in containers]


def create_model_package(sm: Any, release: Release, images: list[PublishedImage]) -> ResourceResult:
    """Create the package (or algorithm), or reuse the one this exact content already made."""
    kind = kind_of(release)
    request = resource_request(release, images)
    name = release.resource_name
    existing = describe(sm, name, kind)
    if existing is not None:
        return _reuse(existing, request, name, kind)
    try:
        with transient_errors(f"creating {kind.label} {name}"):
            arn = getattr(sm, kind.create)(**request)[kind.arn_key]
    except ClientError as exc:
        # SageMaker answers a taken name with a ValidationException saying it "already exists"
        # (or "Cannot create already existing ...").
        if error_code(exc) == "ConflictException" or "already exist" in str(exc):
            existing = describe(sm, name, kind)
            if existing is not None:
                return _reuse(existing, request, name, kind)
        raise ResourceRejected(
            f"SageMaker refused {kind.label} {name} ({error_code(exc)}): {exc}; check the release's "
            f"{'training, ' if kind is ALGORITHM else ''}inference and validation settings (and the account's "
            "SageMaker quotas)"
        ) from exc
    return ResourceResult(arn=str(arn), name=name, action="created")


def _reuse(existing: dict[str, Any], request: dict[str, Any], name: str, kind: Kind = MODEL_PACKAGE) -> ResourceResult:
    if _digests(existing) != _digests(request) or not existing.get("CertifyForMarketplace", False):
        command = f"aws sagemaker delete-{kind.arn_type}"
        raise ResourceConflict(
            f"{kind.label} {name} exists with other images or without Marketplace certification; "
            f"delete it ({command}) or change the release version"
        )
    if existing.get(kind.status_key) == "Failed":
        raise ValidationFailed(
            f"{kind.label} {name} was already made from this exact content and failed validation; "
            f"fix the image or artifacts (a new digest makes a new {kind.label}), or delete it "
            "to validate the same content again",
            reasons=failure_reasons(existing),
        )
    return ResourceResult(arn=str(existing[kind.arn_key]), name=name, action="reused")


def package_release(release: Release, algorithm_arn: str) -> Release:
    """The model package an algorithm release's ``package`` section asks for, as the release of
    a package built from that algorithm would give it: named after the algorithm, its model data
    the pinned copy of package.model_data, validated with the release's validation input."""
    spec = release.spec
    assert spec.package is not None  # nosec B101  # the state machine asks for releases with a package only
    source = SourceAlgorithm(algorithm=algorithm_arn, model_data=spec.package.model_data)
    prefix, fingerprint = release.resource_name.rsplit("-", 1)
    return release.model_copy(
        update={
            "spec": spec.model_copy(
                update={
                    "product": spec.product.model_copy(update={"kind": "model_package"}),
                    "source_algorithm": source,
                    "containers": [],
                    "training": None,
                    "inference": None,
                    "validation": spec.validation.model_copy(update={"training": None}),
                    "package": None,
                }
            ),
            "resource_name": f"{prefix[:48].rstrip('-')}-model-{fingerprint}",
            "fingerprint": hashlib.sha256(f"{release.fingerprint}\0package".encode()).hexdigest(),
            "images": [],
            "objects": [
                item.model_copy(update={"role": "model_data"}) if item.role == "package_model_data" else item
                for item in release.objects
                if item.role in ("package_model_data", "validation_input")
            ],
        }
    )


def check_validation(
    sm: Any, arn: str, *, attempt: int, elapsed_seconds: int, timeout_minutes: int
) -> ValidationProgress:
    """One poll. Completed returns; Failed raises with every reason; else says how long to wait."""
    kind = kind_of(arn)
    description = describe(sm, arn, kind)
    if description is None:
        raise ValidationFailed(f"{kind.label} {arn} disappeared while it was being validated")
    status = str(description.get(kind.status_key))
    details = description.get(kind.details_key, {}) or {}
    if status == "Failed":
        raise ValidationFailed(
            f"SageMaker validation of {description.get(kind.name_key, arn)} failed",
            reasons=failure_reasons(description),
        )
    if status not in {"Completed", "Pending", "InProgress"}:
        raise ValidationFailed(f"{kind.label} {arn} is {status}; it cannot be listed")
    if status != "Completed" and elapsed_seconds >= timeout_minutes * 60:
        raise ValidationTimedOut(
            f"validation of {arn} is still {status} after {elapsed_seconds // 60} minutes "
            f"(validation.timeout_minutes is {timeout_minutes}); look at its validation jobs in the "
            "SageMaker console, then start the release again to keep waiting",
            reasons=failure_reasons(description),
        )
    wait = WAIT_FALLBACK_SECONDS
    return ValidationProgress(
        status=status,
        attempt=attempt + 1,
        wait_seconds=0 if status == "Completed" else wait,
        elapsed_seconds=elapsed_seconds + (0 if status == "Completed" else wait),
        validation_statuses=status_items(details, "ValidationStatuses"),
        image_scan_statuses=status_items(details, "ImageScanStatuses"),
    )

"""Listing the version: the validated model package (or algorithm) is added to the seller's
AWS Marketplace product with the Catalog API, and the change set is followed until it ends.

One change, ``AddDeliveryOptions`` on ``MachineLearningProduct@1.0``, its DetailsDocument
from the release file's ``listing`` section (marketplace-facts.md §6, [API-ml-add]); Intent
APPLY. The Catalog API is called in us-east-1 whatever the publishing region. A change set
takes minutes to hours; the state machine waits for the Catalog's change-set event and looks
again every ``WAIT_FALLBACK_SECONDS`` if none comes (:mod:`mlpublish.waits`), and a failed
one raises ListingFailed with every ErrorDetailList entry. A product that already has a
version of this resource (a re-run) is not changed again. The ClientRequestToken is derived
from the execution, so a retried invocation never starts a second change set, and a new
execution (after a failure) may.
"""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import ClientError

from mlpublish.aws import error_code, transient_errors
from mlpublish.errors import ListingFailed
from mlpublish.release import Listing, ListingData, ListingSample
from mlpublish.state import WAIT_FALLBACK_SECONDS, ListingProgress, Release

CATALOG = "AWSMarketplace"
CATALOG_REGION = "us-east-1"
ENTITY_TYPE = "MachineLearningProduct@1.0"
ENDED = {"SUCCEEDED", "FAILED", "CANCELLED"}


def _sample(sample: ListingSample) -> dict[str, str]:
    keys = {
        "realtime_inference_text": "RealtimeInferenceText",
        "realtime_inference_url": "RealtimeInferenceUrl",
        "batch_transform_text": "BatchTransformText",
        "batch_transform_url": "BatchTransformUrl",
    }
    return {keys[name]: value for name, value in sample.model_dump().items() if value is not None}


def _properties(data: ListingData, *, output: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {"Description": data.description}
    if data.limitations and not output:
        properties["Limitations"] = data.limitations
    properties["SampleOutput" if output else "SampleInput"] = _sample(data.sample)
    if data.parameters:
        parameters = []
        for parameter in data.parameters:
            item: dict[str, Any] = {"Name": parameter.name, "Description": parameter.description}
            if parameter.constraints and not output:
                item["Constraints"] = parameter.constraints
            if output and parameter.always_returned is not None:
                item["AlwaysReturned"] = parameter.always_returned
            if not output and parameter.required is not None:
                item["Required"] = parameter.required
            parameters.append(item)
        properties["Parameters"] = parameters
    return properties


def version_title(release: Release) -> str:
    listing = release.spec.listing
    assert listing is not None  # nosec B101  # called for releases with a listing only
    return listing.version_title or release.spec.product.version


def change_set_request(release: Release, resource_arn: str, execution: str) -> dict[str, Any]:
    """StartChangeSet's request: AddDeliveryOptions of the version, Intent APPLY."""
    listing: Listing | None = release.spec.listing
    assert listing is not None  # nosec B101  # called for releases with a listing only
    algorithm = ":algorithm/" in resource_arn
    recommended = {
        "BatchTransform": listing.recommended_instance_types.batch_transform,
        "RealtimeInference": listing.recommended_instance_types.realtime_inference,
    }
    if algorithm and listing.recommended_instance_types.training:
        recommended["Training"] = listing.recommended_instance_types.training
    details = {
        "SageMakerAlgorithmArn" if algorithm else "SageMakerModelPackageArn": resource_arn,
        "AccessRoleArn": listing.access_role_arn,
        "UsageInstructions": listing.usage_instructions,
        "SampleNotebookUrl": listing.sample_notebook_url,
        "RepositoryUrl": listing.repository_url,
        "InputProperties": _properties(listing.input, output=False),
        "OutputProperties": _properties(listing.output, output=True),
        "RecommendedInstanceTypes": recommended,
    }
    kind = "SageMakerAlgorithmDeliveryOptionDetails" if algorithm else "SageMakerModelPackageDeliveryOptionDetails"
    spec = release.spec
    return {
        "Catalog": CATALOG,
        "ChangeSet": [
            {
                "ChangeType": "AddDeliveryOptions",
                "Entity": {"Type": ENTITY_TYPE, "Identifier": listing.product_id},
                "DetailsDocument": {
                    "Version": {"VersionTitle": version_title(release), "ReleaseNotes": listing.release_notes},
                    "DeliveryOptions": [{"Details": {kind: details}}],
                },
            }
        ],
        "ChangeSetName": f"mlpublish {spec.product.name} {spec.product.version}"[:100],
        "ClientRequestToken": hashlib.sha256(f"{execution}\0{resource_arn}".encode()).hexdigest()[:64],
        "Intent": "APPLY",
    }


def already_listed(catalog: Any, product_id: str, resource_arn: str) -> bool:
    """Whether the product has a version whose source is this resource already."""
    with transient_errors(f"describing Marketplace product {product_id}"):
        try:
            entity = catalog.describe_entity(Catalog=CATALOG, EntityId=product_id)
        except ClientError as exc:
            if error_code(exc) in {"ResourceNotFoundException", "AccessDeniedException"}:
                raise ListingFailed(
                    f"listing.product_id: AWS Marketplace product {product_id} cannot be read ({error_code(exc)}): "
                    "give the product id of your MachineLearningProduct (Marketplace Management Portal, or aws "
                    "marketplace-catalog list-entities --catalog AWSMarketplace --entity-type MachineLearningProduct)"
                ) from exc
            raise
    document = entity.get("DetailsDocument") or {}
    for version in document.get("Versions", []) or []:
        for source in version.get("Sources", []) or []:
            if resource_arn in (source.get("ModelPackageArn"), source.get("AlgorithmArn")):
                return True
    return False


def list_version(
    catalog: Any, release: Release, resource_arn: str, progress: ListingProgress, execution: str
) -> ListingProgress:
    """One step: start the change set (or see the version is there already), or look at it."""
    listing = release.spec.listing
    assert listing is not None  # nosec B101  # the state machine calls this for releases with a listing
    if progress.change_set_id is None:
        base = {"product_id": listing.product_id, "version_title": version_title(release)}
        if already_listed(catalog, listing.product_id, resource_arn):
            return ListingProgress(status="SUCCEEDED", already_listed=True, **base)
        request = change_set_request(release, resource_arn, execution)
        with transient_errors(f"starting the Marketplace change set for {listing.product_id}"):
            try:
                started = catalog.start_change_set(**request)
            except ClientError as exc:
                if error_code(exc) in {"ValidationException", "ResourceNotFoundException", "AccessDeniedException"}:
                    raise ListingFailed(
                        f"AWS Marketplace refused the change set adding {base['version_title']} to "
                        f"{listing.product_id} ({error_code(exc)}): {exc}; fix the release's listing section",
                    ) from exc
                if error_code(exc) == "ResourceInUseException":
                    raise ListingFailed(
                        f"AWS Marketplace product {listing.product_id} is locked by another change set; start the "
                        "release again when it ended (nothing was listed)"
                    ) from exc
                raise
        return ListingProgress(
            status="PREPARING",
            attempt=1,
            wait_seconds=WAIT_FALLBACK_SECONDS,
            change_set_id=started["ChangeSetId"],
            change_set_arn=started.get("ChangeSetArn"),
            **base,
        )
    return follow_change_set(catalog, progress)


def follow_change_set(catalog: Any, progress: ListingProgress) -> ListingProgress:
    """Look at the started change set: raises ListingFailed with every error when it failed."""
    with transient_errors(f"describing change set {progress.change_set_id}"):
        described = catalog.describe_change_set(Catalog=CATALOG, ChangeSetId=progress.change_set_id)
    status = str(described.get("Status"))
    if status in {"FAILED", "CANCELLED"}:
        reasons = [
            f"{detail.get('ErrorCode')}: {detail.get('ErrorMessage')}"
            for change in described.get("ChangeSet", []) or []
            for detail in change.get("ErrorDetailList", []) or []
        ]
        failure = described.get("FailureCode") or status
        hint = (
            "AWS had a fault: start the release again"
            if failure == "SERVER_FAULT"
            else "fix the cause (each error below) and start the release again: the validated resource is reused"
        )
        raise ListingFailed(
            f"AWS Marketplace change set {progress.change_set_id} adding {progress.version_title} to "
            f"{progress.product_id} ended {status} ({failure}); {hint}:",
            reasons=reasons or [str(described.get("FailureDescription") or "no reason given")],
        )
    wait = 0 if status == "SUCCEEDED" else WAIT_FALLBACK_SECONDS
    return progress.model_copy(update={"status": status, "attempt": progress.attempt + 1, "wait_seconds": wait})

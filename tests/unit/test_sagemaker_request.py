"""The CreateModelPackage request, checked offline against botocore's own model, and validation polling.

Polling runs against a tiny in-memory SageMaker: the subject is our decision logic (backoff,
timeout, failure reasons), not SageMaker.
"""

from __future__ import annotations

import re
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.model import Shape
from botocore.validate import validate_parameters
from tests.fixtures.releases import (
    INPUT_URI,
    VALIDATION_ROLE_ARN,
    published_images,
    release_document,
    release_spec,
    resolved_release,
)

from mlpublish.errors import (
    ResourceConflict,
    ResourceRejected,
    TransientAwsError,
    ValidationFailed,
    ValidationTimedOut,
)
from mlpublish.release import Product
from mlpublish.sagemaker import check_validation, create_model_package, model_package_request
from mlpublish.state import WAIT_FALLBACK_SECONDS, Release

pytestmark = pytest.mark.unit

ENTITY_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ARN = "arn:aws:sagemaker:us-east-2:123456789012:model-package/acme-sentiment-1-2-0-01234567"


def create_model_package_shape() -> Shape:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model("CreateModelPackage").input_shape


def violations(value: Any, shape: Shape, path: str = "") -> list[str]:
    """What botocore's validator leaves out: max lengths, enums and (Python-compatible) patterns."""
    found: list[str] = []
    meta = shape.metadata
    if shape.type_name == "structure":
        for name, item in value.items():
            found += violations(item, shape.members[name], f"{path}.{name}")
    elif shape.type_name == "list":
        if len(value) > meta.get("max", len(value)):
            found.append(f"{path}: more than {meta['max']} items")
        for index, item in enumerate(value):
            found += violations(item, shape.member, f"{path}[{index}]")
    elif shape.type_name == "map":
        if len(value) > meta.get("max", len(value)):
            found.append(f"{path}: more than {meta['max']} entries")
        for key, item in value.items():
            found += violations(key, shape.key, f"{path}.key") + violations(item, shape.value, f"{path}.{key}")
    elif shape.type_name == "string":
        if len(value) > meta.get("max", len(value)):
            found.append(f"{path}: longer than {meta['max']}")
        if shape.enum and value not in shape.enum:
            found.append(f"{path}: {value!r} not in {shape.name}")
        pattern = meta.get("pattern")
        if pattern and r"\p" not in pattern and not re.fullmatch(pattern, value):
            found.append(f"{path}: {value!r} does not match {pattern}")
    elif shape.type_name in {"integer", "long"} and value > meta.get("max", value):
        found.append(f"{path}: above {meta['max']}")
    return found


def request_for(release: Release | None = None) -> dict[str, Any]:
    release = release or resolved_release()
    return model_package_request(release, published_images(release, converted=True))


def serial_pipeline() -> Release:
    document = release_document()
    preprocess = {**document["containers"][0], "name": "preprocess"}
    del preprocess["model_data"]
    del preprocess["environment"]
    document["containers"] = [preprocess, document["containers"][0]]
    document["validation"]["accept"] = "application/json"
    document["product"]["description"] = ""
    return resolved_release(release_spec(document))


# --- the request ----------------------------------------------------------------------


@pytest.mark.parametrize("release", [resolved_release(), serial_pipeline()], ids=["example", "serial-pipeline"])
def test_given_a_resolved_release_then_the_request_is_valid_for_botocores_create_model_package(
    release: Release,
) -> None:
    request = request_for(release)
    shape = create_model_package_shape()

    validate_parameters(request, shape)  # raises ParamValidationError on a shape error
    assert violations(request, shape) == []


def test_given_a_request_with_a_shape_error_then_the_offline_checks_catch_it() -> None:
    request = request_for()
    request["InferenceSpecification"]["Containers"][0]["Image"] = 42
    request["ValidationSpecification"]["ValidationProfiles"][0]["TransformJobDefinition"]["BatchStrategy"] = "Batch"
    request["ModelPackageName"] = "acme_sentiment"

    with pytest.raises(botocore.exceptions.ParamValidationError):
        validate_parameters(request, create_model_package_shape())
    assert len(violations({**request, "InferenceSpecification": {}}, create_model_package_shape())) == 2


def test_given_a_release_then_the_package_is_certified_and_its_images_are_pinned_by_published_digest() -> None:
    release = resolved_release()
    images = published_images(release, converted=True)

    request = model_package_request(release, images)

    assert request["CertifyForMarketplace"] is True
    [container] = request["InferenceSpecification"]["Containers"]
    assert container["Image"] == images[0].image_uri
    assert container["Image"].endswith("@" + images[0].digest)
    assert container["ImageDigest"] == images[0].digest != images[0].source_digest
    model = release.object_for("model_data", "inference")
    assert model is not None
    assert container["ModelDataUrl"] == model.destination_uri
    assert container["Environment"] == {"SAGEMAKER_PROGRAM": "serve"}


def test_given_a_release_then_one_validation_profile_reads_the_copied_input_and_writes_to_the_output_prefix() -> None:
    release = resolved_release()
    copied_input = release.object_for("validation_input")
    assert copied_input is not None

    request = request_for(release)

    validation = request["ValidationSpecification"]
    assert validation["ValidationRole"] == VALIDATION_ROLE_ARN
    [profile] = validation["ValidationProfiles"]
    assert profile["ProfileName"] == "sentiment-validation"
    job = profile["TransformJobDefinition"]
    data_source = job["TransformInput"]["DataSource"]["S3DataSource"]
    assert data_source["S3Uri"] == copied_input.destination_uri
    assert data_source["S3Uri"] != INPUT_URI
    assert data_source["S3Uri"].startswith(f"s3://{release.publishing_bucket}/")
    assert (job["TransformInput"]["ContentType"], job["TransformInput"]["SplitType"]) == ("text/csv", "Line")
    assert job["TransformOutput"] == {"S3OutputPath": release.validation_output_uri}
    assert job["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1}
    assert (job["MaxPayloadInMB"], job["BatchStrategy"]) == (6, "SingleRecord")


def test_given_a_serial_pipeline_then_each_container_carries_only_what_it_has() -> None:
    request = request_for(serial_pipeline())

    preprocess, inference = request["InferenceSpecification"]["Containers"]
    assert set(preprocess) == {"Image", "ImageDigest"}
    assert set(inference) == {"Image", "ImageDigest", "ModelDataUrl", "Environment"}
    job = request["ValidationSpecification"]["ValidationProfiles"][0]["TransformJobDefinition"]
    assert job["TransformOutput"]["Accept"] == "application/json"
    assert request["ModelPackageDescription"] == "acme-sentiment 1.2.0"


def test_given_the_longest_product_name_then_the_package_name_and_token_fit_sagemaker() -> None:
    spec = release_spec().model_copy(update={"product": Product(name="z" * 40, version="9" * 32)})
    release = resolved_release(spec)

    request = request_for(release)

    assert request["ModelPackageName"] == release.resource_name
    assert len(request["ModelPackageName"]) <= 63
    assert ENTITY_NAME.match(request["ModelPackageName"])
    assert request["ClientToken"] == release.fingerprint[:36]


# --- an in-memory SageMaker -----------------------------------------------------------


def client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} (fake)"}}, operation)


class FakeSageMaker:
    """Model packages by name and ARN; describe answers with the status a test sets."""

    def __init__(self) -> None:
        self.packages: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.create_error: str | None = None
        self.describe_error: str | None = None

    def add(self, name: str, status: str, **fields: Any) -> dict[str, Any]:
        package = {
            "ModelPackageName": name,
            "ModelPackageArn": f"arn:aws:sagemaker:us-east-2:123456789012:model-package/{name}",
            "ModelPackageStatus": status,
            "CertifyForMarketplace": True,
            **fields,
        }
        self.packages[name] = self.packages[package["ModelPackageArn"]] = package
        return package

    def describe_model_package(self, *, ModelPackageName: str) -> dict[str, Any]:
        if self.describe_error:
            raise client_error(self.describe_error, "DescribeModelPackage")
        if ModelPackageName not in self.packages:
            raise client_error("ValidationException", "DescribeModelPackage")
        return self.packages[ModelPackageName]

    def create_model_package(self, **request: Any) -> dict[str, Any]:
        self.created.append(request)
        if self.create_error:
            raise client_error(self.create_error, "CreateModelPackage")
        package = self.add(
            request["ModelPackageName"],
            "Pending",
            InferenceSpecification=request["InferenceSpecification"],
            CertifyForMarketplace=request["CertifyForMarketplace"],
        )
        return {"ModelPackageArn": package["ModelPackageArn"]}


def statuses(validation: str, reason: str | None = None) -> dict[str, Any]:
    item = {"Name": "sentiment-validation", "Status": validation}
    if reason:
        item["FailureReason"] = reason
    return {
        "ModelPackageStatusDetails": {
            "ValidationStatuses": [item],
            "ImageScanStatuses": [{"Name": "inference", "Status": "Completed"}],
        }
    }


def poll(sm: FakeSageMaker, *, attempt: int = 0, elapsed: int = 0, timeout_minutes: int = 720):  # type: ignore[no-untyped-def]
    return check_validation(sm, ARN, attempt=attempt, elapsed_seconds=elapsed, timeout_minutes=timeout_minutes)


# --- check_validation -----------------------------------------------------------------


@pytest.mark.parametrize("status", ["Pending", "InProgress"])
def test_given_validation_still_running_then_the_next_wait_listens_for_the_fallback_period(status: str) -> None:
    sm = FakeSageMaker()
    sm.packages[ARN] = sm.add("p", status)
    attempt, elapsed = 0, 0

    for _ in range(3):
        progress = poll(sm, attempt=attempt, elapsed=elapsed)
        assert (progress.status, progress.attempt) == (status, attempt + 1)
        # The next wait ends with the state-change event, or polls again after 30 minutes:
        # a lost event delays the result by at most that.
        assert progress.wait_seconds == WAIT_FALLBACK_SECONDS == 1800
        assert progress.elapsed_seconds == elapsed + WAIT_FALLBACK_SECONDS
        attempt, elapsed = progress.attempt, progress.elapsed_seconds


def test_given_validation_completed_then_no_wait_and_the_statuses_are_reported() -> None:
    sm = FakeSageMaker()
    sm.packages[ARN] = sm.add("p", "Completed", **statuses("Completed"))

    progress = poll(sm, attempt=3, elapsed=1800)

    assert (progress.status, progress.wait_seconds, progress.elapsed_seconds, progress.attempt) == (
        "Completed",
        0,
        1800,
        4,
    )
    assert [item.name for item in progress.validation_statuses] == ["sentiment-validation"]
    assert [item.status for item in progress.image_scan_statuses] == ["Completed"]


def test_given_validation_running_past_its_time_limit_then_it_times_out_with_advice() -> None:
    sm = FakeSageMaker()
    sm.packages[ARN] = sm.add("p", "InProgress", **statuses("InProgress"))

    assert poll(sm, attempt=9, elapsed=10 * 60 - 1, timeout_minutes=10).status == "InProgress"
    with pytest.raises(ValidationTimedOut) as caught:
        poll(sm, attempt=10, elapsed=10 * 60, timeout_minutes=10)

    assert "still InProgress after 10 minutes (validation.timeout_minutes is 10)" in caught.value.message


def test_given_validation_completed_after_the_time_limit_then_it_still_counts() -> None:
    sm = FakeSageMaker()
    sm.packages[ARN] = sm.add("p", "Completed")

    assert poll(sm, elapsed=99_999, timeout_minutes=10).status == "Completed"


def test_given_validation_failed_then_every_failure_reason_is_reported() -> None:
    sm = FakeSageMaker()
    sm.packages[ARN] = sm.add(
        "acme",
        "Failed",
        ModelPackageStatusDetails={
            "ValidationStatuses": [
                {
                    "Name": "sentiment-validation",
                    "Status": "Failed",
                    "FailureReason": "ClientError: 500 from /invocations",
                },
                {"Name": "other-profile", "Status": "Completed"},
            ],
            "ImageScanStatuses": [
                {"Name": "inference", "Status": "Failed", "FailureReason": "image has CRITICAL findings"},
                {"Name": "preprocess", "Status": "Failed"},
            ],
        },
    )

    with pytest.raises(ValidationFailed) as caught:
        poll(sm)

    assert caught.value.message == "SageMaker validation of acme failed"
    assert caught.value.reasons == [
        "validation sentiment-validation: Failed: ClientError: 500 from /invocations",
        "image scan inference: Failed: image has CRITICAL findings",
        "image scan preprocess: Failed: no reason given",
    ]


@pytest.mark.parametrize("status", ["Deleting", "Unknown"])
def test_given_a_package_in_a_state_that_cannot_be_listed_then_validation_fails(status: str) -> None:
    sm = FakeSageMaker()
    sm.packages[ARN] = sm.add("p", status)

    with pytest.raises(ValidationFailed, match=f"is {status}; it cannot be listed"):
        poll(sm)


def test_given_the_package_was_deleted_while_validating_then_validation_fails() -> None:
    with pytest.raises(ValidationFailed, match="disappeared"):
        poll(FakeSageMaker())


def test_given_sagemaker_throttles_then_the_poll_fails_as_transient() -> None:
    sm = FakeSageMaker()
    sm.describe_error = "ThrottlingException"

    with pytest.raises(TransientAwsError):
        poll(sm)


# --- create_model_package decisions ---------------------------------------------------


def test_given_no_package_yet_then_it_is_created_with_the_request() -> None:
    sm = FakeSageMaker()
    release = resolved_release()

    result = create_model_package(sm, release, published_images(release))

    assert (result.action, result.name) == ("created", release.resource_name)
    assert sm.created == [model_package_request(release, published_images(release))]


def test_given_a_concurrent_create_of_the_same_content_then_the_package_is_reused() -> None:
    sm = FakeSageMaker()
    release = resolved_release()
    images = published_images(release)
    request = model_package_request(release, images)
    sm.create_error = "ConflictException"
    original_create = sm.create_model_package

    def create_racing(**kwargs: Any) -> dict[str, Any]:
        sm.add(kwargs["ModelPackageName"], "InProgress", InferenceSpecification=request["InferenceSpecification"])
        return original_create(**kwargs)

    sm.create_model_package = create_racing  # type: ignore[method-assign]

    assert create_model_package(sm, release, images).action == "reused"


def test_given_sagemaker_refuses_the_request_then_resource_rejected_says_what_to_check() -> None:
    sm = FakeSageMaker()
    sm.create_error = "ValidationException"
    release = resolved_release()

    with pytest.raises(ResourceRejected, match="check the release's inference and validation settings"):
        create_model_package(sm, release, published_images(release))


def test_given_this_content_already_failed_validation_then_it_is_not_reused_and_the_reasons_are_given() -> None:
    sm = FakeSageMaker()
    release = resolved_release()
    images = published_images(release)
    request = model_package_request(release, images)
    sm.add(
        release.resource_name,
        "Failed",
        InferenceSpecification=request["InferenceSpecification"],
        **statuses("Failed", reason="no output"),
    )

    with pytest.raises(ValidationFailed) as caught:
        create_model_package(sm, release, images)

    assert caught.value.reasons == ["validation sentiment-validation: Failed: no output"]
    assert sm.created == []


def test_given_an_uncertified_package_with_the_name_then_it_conflicts() -> None:
    sm = FakeSageMaker()
    release = resolved_release()
    images = published_images(release)
    sm.add(
        release.resource_name,
        "Completed",
        InferenceSpecification=model_package_request(release, images)["InferenceSpecification"],
        CertifyForMarketplace=False,
    )

    with pytest.raises(ResourceConflict, match="without Marketplace certification"):
        create_model_package(sm, release, images)

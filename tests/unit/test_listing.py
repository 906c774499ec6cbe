"""Listing the version: the Catalog API request built from the release's listing section."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator
from tests.fixtures.releases import ACCOUNT, release_document, resolved_release

from mlpublish.errors import InvalidRelease, ListingFailed
from mlpublish.listing import change_set_request, list_version
from mlpublish.release import parse_release
from mlpublish.state import ListingProgress

pytestmark = pytest.mark.unit

PACKAGE = f"arn:aws:sagemaker:us-east-2:{ACCOUNT}:model-package/acme-sentiment-1-2-0-0123abcd"
EXECUTION = f"arn:aws:states:us-west-2:{ACCOUNT}:execution:mlpublish:acme-sentiment-1-2-0-0123456789ab"
LISTING = {
    "product_id": "prod-acmesentiment01",
    "release_notes": "Faster batch inference.",
    "access_role_arn": f"arn:aws:iam::{ACCOUNT}:role/AwsMarketplaceSageMakerIngestion",
    "usage_instructions": "Send text/csv.",
    "sample_notebook_url": "https://github.com/acme/sentiment/blob/main/sample.ipynb",
    "repository_url": "https://github.com/acme/sentiment",
    "input": {
        "description": "Reviews.",
        "limitations": "English only.",
        "sample": {"batch_transform_text": "great"},
        "parameters": [{"name": "text", "description": "the review", "required": True}],
    },
    "output": {"description": "Scores.", "sample": {"realtime_inference_url": "https://acme.example/out.json"}},
    "recommended_instance_types": {"batch_transform": "ml.m5.large", "realtime_inference": "ml.m5.large"},
}


def listed_release(**changes: Any) -> Any:
    document = release_document()
    document["listing"] = {**LISTING, **changes}
    return resolved_release(parse_release(yaml.safe_dump(document)))


class Catalog:
    """The Catalog API answering DescribeEntity with ``versions`` and DescribeChangeSet with ``described``."""

    def __init__(self, versions: list[dict[str, Any]] | None = None, described: dict[str, Any] | None = None) -> None:
        self.versions, self.described = versions or [], described or {}
        self.started: list[dict[str, Any]] = []

    def describe_entity(self, **_: Any) -> dict[str, Any]:
        return {"DetailsDocument": {"Versions": self.versions}}

    def start_change_set(self, **request: Any) -> dict[str, Any]:
        self.started.append(request)
        arn = "arn:aws:aws-marketplace:us-east-1:123456789012:AWSMarketplace/ChangeSet/cs-1"
        return {"ChangeSetId": "cs-1", "ChangeSetArn": arn}

    def describe_change_set(self, **_: Any) -> dict[str, Any]:
        return self.described


def test_given_a_listing_then_the_change_set_adds_one_delivery_option_valid_for_the_catalog_api() -> None:
    release = listed_release()

    request = change_set_request(release, PACKAGE, EXECUTION)

    shape = botocore.session.get_session().get_service_model("marketplace-catalog").operation_model("StartChangeSet")
    assert ParamValidator().validate(request, shape.input_shape).generate_report() == ""
    assert (request["Catalog"], request["Intent"]) == ("AWSMarketplace", "APPLY")
    [change] = request["ChangeSet"]
    assert change["ChangeType"] == "AddDeliveryOptions"
    assert change["Entity"] == {"Type": "MachineLearningProduct@1.0", "Identifier": "prod-acmesentiment01"}
    document = change["DetailsDocument"]
    assert document["Version"] == {"VersionTitle": "1.2.0", "ReleaseNotes": "Faster batch inference."}
    [option] = document["DeliveryOptions"]
    details = option["Details"]["SageMakerModelPackageDeliveryOptionDetails"]
    assert details["SageMakerModelPackageArn"] == PACKAGE
    assert details["InputProperties"] == {
        "Description": "Reviews.",
        "Limitations": "English only.",
        "SampleInput": {"BatchTransformText": "great"},
        "Parameters": [{"Name": "text", "Description": "the review", "Required": True}],
    }
    assert details["OutputProperties"]["SampleOutput"] == {"RealtimeInferenceUrl": "https://acme.example/out.json"}
    assert details["RecommendedInstanceTypes"] == {"BatchTransform": "ml.m5.large", "RealtimeInference": "ml.m5.large"}


def test_given_the_same_execution_then_the_token_is_the_same_and_another_execution_gets_another() -> None:
    release = listed_release()

    first = change_set_request(release, PACKAGE, EXECUTION)["ClientRequestToken"]

    assert change_set_request(release, PACKAGE, EXECUTION)["ClientRequestToken"] == first  # a retried invocation
    assert change_set_request(release, PACKAGE, EXECUTION + "-r2")["ClientRequestToken"] != first


def test_given_a_product_with_a_version_of_this_package_then_nothing_is_changed_again() -> None:
    catalog = Catalog(versions=[{"Sources": [{"Type": "ModelPackage", "ModelPackageArn": PACKAGE}]}])

    progress = list_version(catalog, listed_release(), PACKAGE, ListingProgress(status="NONE"), EXECUTION)

    assert (progress.status, progress.already_listed, progress.change_set_id) == ("SUCCEEDED", True, None)
    assert catalog.started == []


def test_given_a_failed_change_set_then_every_error_is_a_reason() -> None:
    described = {
        "Status": "FAILED",
        "FailureCode": "CLIENT_ERROR",
        "ChangeSet": [
            {"ErrorDetailList": [
                {"ErrorCode": "UPDATE_PRICING_REQUIRED", "ErrorMessage": "ml.c5.xlarge has no price"},
                {"ErrorCode": "INVALID_ACCESS_ROLE", "ErrorMessage": "the role cannot be assumed"},
            ]}
        ],
    }  # fmt: skip
    started = ListingProgress(status="PREPARING", attempt=1, change_set_id="cs-1", product_id="p", version_title="1")

    with pytest.raises(ListingFailed) as caught:
        list_version(Catalog(described=described), listed_release(), PACKAGE, started, EXECUTION)

    assert "ended FAILED (CLIENT_ERROR)" in caught.value.message
    assert caught.value.reasons == [
        "UPDATE_PRICING_REQUIRED: ml.c5.xlarge has no price",
        "INVALID_ACCESS_ROLE: the role cannot be assumed",
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sample_notebook_url", "http://insecure.example/nb.ipynb"),
        ("access_role_arn", "arn:aws:iam::123:role/short-account"),
        ("release_notes", ""),
    ],
)
def test_given_a_listing_field_the_catalog_refuses_then_the_release_file_is_refused_at_its_path(
    field: str, value: str
) -> None:
    document = release_document()
    document["listing"] = {**LISTING, field: value}

    with pytest.raises(InvalidRelease) as caught:
        parse_release(yaml.safe_dump(document))

    assert any(reason.startswith(f"listing.{field}: ") for reason in caught.value.reasons)

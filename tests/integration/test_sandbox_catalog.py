"""The sandbox's Marketplace Catalog API behaves as the Catalog API does for ML products, against boto3.

moto has no marketplace-catalog service: the sandbox serves it (sandbox/ext_catalog.py) for
seeded MachineLearningProduct entities, checks requests server-side, and runs change sets on
its virtual clock, looking up the model packages and algorithms of its SageMaker.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from moto import mock_aws

from sandbox.audit import ApiCall
from sandbox.clock import VirtualClock
from sandbox.ext_catalog import CatalogExtension, ChangeSetOutcome, _service_model, parse_catalog_product
from sandbox.ext_sagemaker import SageMakerValidation, ValidationOutcome
from sandbox.sagemaker_requests import constraint_errors
from sandbox.server import EmulatorServer

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
SELLER = "111122223333"
PUBLISHING = "us-east-2"
PRODUCT = "prod-abcdefghij123"
SESSION = boto3.session.Session(region_name="us-east-1")
NO_RETRIES = Config(retries={"total_max_attempts": 1})
VALIDATION_SECONDS = 3660  # the sandbox's SageMaker validation below: 60 s Pending + 3600 s InProgress
CHANGE_SET_SECONDS = 600  # ChangeSetOutcome's default: 10 virtual minutes


@functools.cache
def catalog(region: str = "us-east-1") -> Any:
    return SESSION.client("marketplace-catalog", region_name=region, config=NO_RETRIES)


@functools.cache
def unchecked_catalog() -> Any:
    """A client that sends what it is given: the sandbox must refuse bad requests itself."""
    return SESSION.client("marketplace-catalog", region_name="us-east-1", config=Config(parameter_validation=False))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[VirtualClock]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("MOTO_ACCOUNT_ID", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws(), VirtualClock() as installed:
        yield installed


@pytest.fixture
def sagemaker(clock: VirtualClock) -> Iterator[SageMakerValidation]:
    with SageMakerValidation(clock, ValidationOutcome(pending_seconds=60, in_progress_seconds=3600)) as installed:
        yield installed


@pytest.fixture
def sandbox(clock: VirtualClock, sagemaker: SageMakerValidation) -> Iterator[CatalogExtension]:
    with CatalogExtension(clock, sagemaker=sagemaker) as installed:
        installed.seed_product(ACCOUNT, PRODUCT, "Churn predictor", instance_types=["ml.m5.large"])
        yield installed


def seller_session() -> boto3.session.Session:
    """Temporary credentials in the seller's account (not moto's default one)."""
    credentials = SESSION.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{SELLER}:role/publisher", RoleSessionName="seller"
    )["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name="us-east-1",
    )


def model_package(
    name: str,
    *,
    account: str = ACCOUNT,
    realtime: tuple[str, ...] = ("ml.m5.large",),
    sm: Any = None,
    validated: bool = True,
    clock: VirtualClock | None = None,
) -> str:
    """A certified model package in the publishing region; validated (Completed) unless told."""
    sm = sm or SESSION.client("sagemaker", region_name=PUBLISHING)
    image = f"{account}.dkr.ecr.{PUBLISHING}.amazonaws.com/churn@sha256:{'a' * 64}"
    arn: str = sm.create_model_package(
        ModelPackageName=name,
        InferenceSpecification={
            "Containers": [{"Image": image}],
            "SupportedTransformInstanceTypes": ["ml.m5.large"],
            "SupportedRealtimeInferenceInstanceTypes": list(realtime),
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ValidationSpecification={
            "ValidationRole": f"arn:aws:iam::{account}:role/validation",
            "ValidationProfiles": [
                {
                    "ProfileName": "validation",
                    "TransformJobDefinition": {
                        "TransformInput": {
                            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}}
                        },
                        "TransformOutput": {"S3OutputPath": "s3://b/out/"},
                        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                    },
                }
            ],
        },
        CertifyForMarketplace=True,
    )["ModelPackageArn"]
    if validated:
        assert clock is not None
        clock.advance(VALIDATION_SECONDS)
    return arn


def add_version(
    arn: str,
    title: str = "1.0.0",
    *,
    account: str = ACCOUNT,
    product: str = PRODUCT,
    realtime: str = "ml.m5.large",
) -> dict[str, Any]:
    """An AddDeliveryOptions change with every field the API reference requires."""
    return {
        "ChangeType": "AddDeliveryOptions",
        "Entity": {"Type": "MachineLearningProduct@1.0", "Identifier": product},
        "DetailsDocument": {
            "Version": {"VersionTitle": title, "ReleaseNotes": f"Release {title}"},
            "DeliveryOptions": [
                {
                    "Details": {
                        "SageMakerModelPackageDeliveryOptionDetails": {
                            "SageMakerModelPackageArn": arn,
                            "AccessRoleArn": f"arn:aws:iam::{account}:role/AwsMarketplaceSageMakerIngestion",
                            "UsageInstructions": "POST text/csv to /invocations.",
                            "SampleNotebookUrl": "https://github.com/example/churn/blob/main/sample.ipynb",
                            "RepositoryUrl": "https://github.com/example/churn",
                            "InputProperties": {
                                "Description": "One customer per CSV line.",
                                "SampleInput": {"BatchTransformText": "0.1,0.2,0.3"},
                            },
                            "OutputProperties": {
                                "Description": "One churn probability per line.",
                                "SampleOutput": {"BatchTransformText": "0.87"},
                            },
                            "RecommendedInstanceTypes": {
                                "BatchTransform": "ml.m5.large",
                                "RealtimeInference": realtime,
                            },
                        }
                    }
                }
            ],
        },
    }


def pricing(*keys: str, offer: str, **document: Any) -> dict[str, Any]:
    """UpdatePricingTerms pricing dimension ``keys`` (INSTANCE_TYPE.m.i.b, .m.i.r, .a.t; m.i.c) on ``offer``."""
    return {
        "ChangeType": "UpdatePricingTerms",
        "Entity": {"Type": "Offer@1.0", "Identifier": offer},
        "DetailsDocument": {
            "PricingModel": "Usage",
            "Terms": [
                {
                    "Type": "UsageBasedPricingTerm",
                    "CurrencyCode": "USD",
                    "RateCards": [{"RateCard": [{"DimensionKey": key, "Price": "0.25"} for key in keys]}],
                }
            ],
            **document,
        },
    }


def start(*changes: dict[str, Any], client: Any = None, **extra: Any) -> str:
    change_set_id: str = (client or catalog()).start_change_set(
        Catalog="AWSMarketplace", ChangeSet=list(changes), **extra
    )["ChangeSetId"]
    return change_set_id


def describe(change_set_id: str, client: Any = None) -> dict[str, Any]:
    described: dict[str, Any] = (client or catalog()).describe_change_set(
        Catalog="AWSMarketplace", ChangeSetId=change_set_id
    )
    return described


def entity(client: Any = None, entity_id: str = PRODUCT) -> dict[str, Any]:
    described: dict[str, Any] = (client or catalog()).describe_entity(Catalog="AWSMarketplace", EntityId=entity_id)
    return described


def errors_of(described: dict[str, Any]) -> list[str]:
    return [error["ErrorCode"] for change in described["ChangeSet"] for error in change["ErrorDetailList"]]


# ------------------------------------------------------------------- the lifecycle of a valid change set


def test_given_validated_package_when_version_added_then_preparing_applying_succeeded_and_entity_has_version(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-0-0", clock=clock)
    before = entity()

    change_set_id = start(add_version(arn), ChangeSetName="Add churn 1.0.0", ClientRequestToken="release-1")
    preparing = describe(change_set_id)
    clock.advance(60)
    applying = describe(change_set_id)
    while_applying = entity()
    clock.advance(CHANGE_SET_SECONDS - 61)
    still_applying = describe(change_set_id)
    clock.advance(1)
    succeeded = describe(change_set_id)
    after = entity()

    assert [preparing["Status"], applying["Status"], still_applying["Status"], succeeded["Status"]] == [
        "PREPARING",
        "APPLYING",
        "APPLYING",
        "SUCCEEDED",
    ]
    assert "EndTime" not in applying
    assert succeeded["EndTime"] > succeeded["StartTime"]
    assert "FailureCode" not in succeeded
    assert errors_of(succeeded) == []
    assert succeeded["Intent"] == "APPLY"
    assert succeeded["ChangeSetName"] == "Add churn 1.0.0"
    assert (
        succeeded["ChangeSetArn"]
        == f"arn:aws:aws-marketplace:us-east-1:{ACCOUNT}:AWSMarketplace/ChangeSet/{change_set_id}"
    )
    assert before["DetailsDocument"]["Versions"] == while_applying["DetailsDocument"]["Versions"] == []
    [version] = after["DetailsDocument"]["Versions"]
    assert (version["VersionTitle"], version["ReleaseNotes"]) == ("1.0.0", "Release 1.0.0")
    assert version["Sources"][0]["ModelPackageArn"] == arn
    [option] = version["DeliveryOptions"]
    assert option["Visibility"] == "Public"
    assert len(option["Id"]) == 36
    assert option["SourceId"] == version["Sources"][0]["Id"]
    assert option["RecommendedInstanceTypes"] == {"BatchTransform": "ml.m5.large", "RealtimeInference": "ml.m5.large"}
    assert option["Instructions"]["Usage"] == "POST text/csv to /invocations."
    assert (before["EntityIdentifier"], after["EntityIdentifier"]) == (f"{PRODUCT}@1", f"{PRODUCT}@2")
    assert after["EntityType"] == "MachineLearningProduct@1.0"


def test_given_the_same_client_request_token_when_started_again_then_the_same_change_set(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-0-0", clock=clock)

    first = start(add_version(arn), ClientRequestToken="release-1")
    again = start(add_version(arn), ClientRequestToken="release-1")

    assert again == first
    assert len(catalog().list_change_sets(Catalog="AWSMarketplace")["ChangeSetSummaryList"]) == 1


def test_given_a_running_change_set_when_another_targets_the_product_then_resource_in_use_423(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-0-0", clock=clock)
    start(add_version(arn))

    with pytest.raises(ClientError) as locked:
        start(add_version(arn, "1.0.1"))
    clock.advance(CHANGE_SET_SECONDS)
    after_end = start(add_version(arn, "1.0.1"))

    assert locked.value.response["Error"]["Code"] == "ResourceInUseException"
    assert locked.value.response["ResponseMetadata"]["HTTPStatusCode"] == 423
    assert after_end


def test_given_intent_validate_then_checked_and_succeeded_without_adding_a_version(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-0-0", clock=clock)

    change_set_id = start(add_version(arn), Intent="VALIDATE")
    clock.advance(CHANGE_SET_SECONDS)
    described = describe(change_set_id)

    assert (described["Intent"], described["Status"]) == ("VALIDATE", "SUCCEEDED")
    assert entity()["DetailsDocument"]["Versions"] == []


def test_given_intent_validate_with_an_error_then_failed_as_apply_would(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    missing = f"arn:aws:sagemaker:{PUBLISHING}:{ACCOUNT}:model-package/never-created"

    change_set_id = start(add_version(missing), Intent="VALIDATE")
    clock.advance(CHANGE_SET_SECONDS)

    assert errors_of(describe(change_set_id)) == ["ASSET_NOT_FOUND"]


def test_given_a_preparing_change_set_when_cancelled_then_cancelled_and_nothing_applied(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-0-0", clock=clock)
    change_set_id = start(add_version(arn))

    catalog().cancel_change_set(Catalog="AWSMarketplace", ChangeSetId=change_set_id)
    clock.advance(CHANGE_SET_SECONDS)

    assert describe(change_set_id)["Status"] == "CANCELLED"
    assert entity()["DetailsDocument"]["Versions"] == []


# ------------------------------------------------------------------- refused at once (ValidationException)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        (("Version", "VersionTitle"), "Version.VersionTitle is required"),
        (
            ("DeliveryOptions", 0, "Details", "SageMakerModelPackageDeliveryOptionDetails", "UsageInstructions"),
            "UsageInstructions is required",
        ),
        (
            (
                "DeliveryOptions",
                0,
                "Details",
                "SageMakerModelPackageDeliveryOptionDetails",
                "RecommendedInstanceTypes",
                "RealtimeInference",
            ),
            "RealtimeInference is required",
        ),
        (
            (
                "DeliveryOptions",
                0,
                "Details",
                "SageMakerModelPackageDeliveryOptionDetails",
                "InputProperties",
                "SampleInput",
            ),
            "SampleInput is required",
        ),
    ],
)
def test_given_a_required_details_field_missing_when_started_then_validation_exception_and_no_change_set(
    sandbox: CatalogExtension, clock: VirtualClock, path: tuple[Any, ...], fragment: str
) -> None:
    change = add_version(f"arn:aws:sagemaker:{PUBLISHING}:{ACCOUNT}:model-package/churn")
    parent = change["DetailsDocument"]
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]

    with pytest.raises(ClientError) as refused:
        start(change)

    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 422
    assert fragment in refused.value.response["Error"]["Message"]
    assert catalog().list_change_sets(Catalog="AWSMarketplace")["ChangeSetSummaryList"] == []


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d["Version"].update(VersionTitle="v" * 65), "VersionTitle must have length at most 64"),
        (lambda d: _details(d).update(SampleNotebookUrl="http://example.com/nb"), "SampleNotebookUrl must match"),
        (lambda d: _details(d)["RecommendedInstanceTypes"].update(BatchTransform="ml m5 large"), "must match"),
        (lambda d: _details(d).update(Training="ml.m5.large"), "Training is not a known field"),
        (
            lambda d: d["DeliveryOptions"][0]["Details"].update(
                SagemakerModelPackageDeliveryOptionDetails=d["DeliveryOptions"][0]["Details"].pop(
                    "SageMakerModelPackageDeliveryOptionDetails"
                )
            ),
            "SagemakerModelPackageDeliveryOptionDetails is not a known",
        ),
        (lambda d: d.update(DeliveryOptions=[]), "DeliveryOptions must have at least 1"),
    ],
)
def test_given_a_details_document_breaking_the_ml_shapes_when_started_then_validation_exception(
    sandbox: CatalogExtension, edit: Any, fragment: str
) -> None:
    change = add_version(f"arn:aws:sagemaker:{PUBLISHING}:{ACCOUNT}:model-package/churn")
    edit(change["DetailsDocument"])

    with pytest.raises(ClientError) as refused:
        start(change)

    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert fragment in refused.value.response["Error"]["Message"]


def _details(document: dict[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = document["DeliveryOptions"][0]["Details"]["SageMakerModelPackageDeliveryOptionDetails"]
    return details


def test_given_requests_breaking_the_service_model_when_sent_unchecked_then_refused_server_side(
    sandbox: CatalogExtension,
) -> None:
    change = add_version(f"arn:aws:sagemaker:{PUBLISHING}:{ACCOUNT}:model-package/churn")
    cases = {
        "no changes": {"Catalog": "AWSMarketplace", "ChangeSet": []},
        "21 changes": {"Catalog": "AWSMarketplace", "ChangeSet": [change] * 21},
        "bad intent": {"Catalog": "AWSMarketplace", "ChangeSet": [change], "Intent": "MAYBE"},
        "other catalog": {"Catalog": "Other", "ChangeSet": [change]},
        "details and document": {"Catalog": "AWSMarketplace", "ChangeSet": [{**change, "Details": "{}"}]},
        "twice on one entity": {"Catalog": "AWSMarketplace", "ChangeSet": [change, copy.deepcopy(change)]},
        "unknown product": {
            "Catalog": "AWSMarketplace",
            "ChangeSet": [
                add_version(
                    change["DetailsDocument"]["DeliveryOptions"][0]["Details"][
                        "SageMakerModelPackageDeliveryOptionDetails"
                    ]["SageMakerModelPackageArn"],
                    product="prod-unknown",
                )
            ],
        },
    }
    codes = {}
    for label, request in cases.items():
        with pytest.raises(ClientError) as refused:
            unchecked_catalog().start_change_set(**request)
        codes[label] = refused.value.response["Error"]["Code"]

    assert codes == {
        "no changes": "ValidationException",
        "21 changes": "ValidationException",
        "bad intent": "ValidationException",
        "other catalog": "ValidationException",
        "details and document": "ValidationException",
        "twice on one entity": "ValidationException",
        "unknown product": "ResourceNotFoundException",
    }


def test_given_details_as_a_json_string_then_accepted_like_details_document(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-0-0", clock=clock)
    change = add_version(arn)
    change["Details"] = json.dumps(change.pop("DetailsDocument"))

    change_set_id = start(change)
    clock.advance(CHANGE_SET_SECONDS)
    described = describe(change_set_id)

    assert described["Status"] == "SUCCEEDED"
    assert json.loads(described["ChangeSet"][0]["Details"])["Version"]["VersionTitle"] == "1.0.0"


# ------------------------------------------------------------------- failed when the change set ends (CLIENT_ERROR)


def test_given_bad_or_missing_sagemaker_resources_then_failed_client_error_with_the_documented_codes(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    pending = model_package("churn-pending", validated=False)
    cases = {
        "not an ARN": "arn:aws:s3:::bucket/model-package",
        "another account": f"arn:aws:sagemaker:{PUBLISHING}:{SELLER}:model-package/churn",
        "never created": f"arn:aws:sagemaker:{PUBLISHING}:{ACCOUNT}:model-package/never-created",
        "another region": pending.replace(PUBLISHING, "eu-west-1"),
        "validation not over": pending,
    }
    results = {}
    for label, arn in cases.items():
        change_set_id = start(add_version(arn, label))
        clock.advance(CHANGE_SET_SECONDS)
        results[label] = describe(change_set_id)

    assert {label: errors_of(d) for label, d in results.items()} == {
        "not an ARN": ["INVALID_ASSET_ARN"],
        "another account": ["INVALID_ASSET_ARN"],
        "never created": ["ASSET_NOT_FOUND"],
        "another region": ["ASSET_NOT_FOUND"],
        "validation not over": ["ASSET_VALIDATION_EXCEPTION"],
    }
    assert {(d["Status"], d["FailureCode"]) for d in results.values()} == {("FAILED", "CLIENT_ERROR")}
    assert entity()["DetailsDocument"]["Versions"] == []


def test_given_an_instance_type_without_a_price_when_added_alone_then_failed_update_pricing_required(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-1-0", realtime=("ml.m5.large", "ml.c5.xlarge"), clock=clock)

    change_set_id = start(add_version(arn, "1.1.0"))
    clock.advance(CHANGE_SET_SECONDS)
    described = describe(change_set_id)

    assert (described["Status"], described["FailureCode"]) == ("FAILED", "CLIENT_ERROR")
    [error] = described["ChangeSet"][0]["ErrorDetailList"]
    assert error["ErrorCode"] == "UPDATE_PRICING_REQUIRED"
    assert "ml.c5.xlarge" in error["ErrorMessage"]
    assert entity()["DetailsDocument"]["Versions"] == []


def test_given_an_instance_type_without_a_price_when_added_with_update_pricing_terms_then_succeeded_and_priced(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-1-0", realtime=("ml.m5.large", "ml.c5.xlarge"), clock=clock)
    offer = sandbox.product(ACCOUNT, PRODUCT).offer_id

    [offer_summary] = catalog().list_entities(
        Catalog="AWSMarketplace",
        EntityType="Offer",
        EntityTypeFilters={
            "OfferFilters": {"ProductId": {"ValueList": [PRODUCT]}, "Targeting": {"ValueList": ["None"]}}
        },
    )["EntitySummaryList"]
    keys = ("ml.m5.large.m.i.b", "ml.m5.large.m.i.r", "ml.c5.xlarge.m.i.r")

    change_set_id = start(add_version(arn, "1.1.0"), pricing(*keys, offer=offer))
    clock.advance(CHANGE_SET_SECONDS)
    described = describe(change_set_id)
    product = entity()["DetailsDocument"]

    assert offer_summary["EntityId"] == offer
    assert offer_summary["OfferSummary"]["ProductId"] == PRODUCT
    assert described["Status"] == "SUCCEEDED"
    assert [change["ChangeType"] for change in described["ChangeSet"]] == ["AddDeliveryOptions", "UpdatePricingTerms"]
    assert [d["Key"] for d in product["Dimensions"]] == list(keys)
    assert product["Versions"][0]["DeliveryOptions"][0]["SupportedInstanceTypes"]["RealtimeInference"] == [
        "ml.m5.large",
        "ml.c5.xlarge",
    ]
    offer_entity = entity(entity_id=offer)
    assert offer_entity["EntityType"] == "Offer@1.0"
    assert offer_entity["DetailsDocument"]["ProductId"] == PRODUCT
    [term] = offer_entity["DetailsDocument"]["Terms"]
    assert [rate["DimensionKey"] for rate in term["RateCards"][0]["RateCard"]] == list(keys)


def test_given_a_per_inference_price_then_real_time_types_are_priced_by_it(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    sandbox.seed_product(ACCOUNT, PRODUCT, instance_types=["ml.m5.large.m.i.b", "m.i.c"])
    arn = model_package("churn-1-1-0", realtime=("ml.m5.large", "ml.c5.xlarge"), clock=clock)

    change_set_id = start(add_version(arn, "1.1.0"))
    clock.advance(CHANGE_SET_SECONDS)

    assert describe(change_set_id)["Status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"PricingModel": "Hourly"}, "PricingModel must be one of Usage, Free, Contract"),
        ({"Terms": []}, "Terms is required"),
        ({"Terms": [{"Type": "UsageBasedPricingTerm", "CurrencyCode": "EUR", "RateCards": [{"RateCard": []}]}]}, "USD"),
        ({"Terms": [{"Type": "UsageBasedPricingTerm", "CurrencyCode": "USD", "RateCards": []}]}, "exactly one"),
        (
            {"Terms": [{"Type": "UsageBasedPricingTerm", "CurrencyCode": "USD",
                        "RateCards": [{"RateCard": [{"DimensionKey": "ml.m5.large", "Price": "1"}]}]}]},
            "is not INSTANCE_TYPE.m.i.b",
        ),
        (
            {"Terms": [{"Type": "UsageBasedPricingTerm", "CurrencyCode": "USD",
                        "RateCards": [{"RateCard": [{"DimensionKey": "m.i.c", "Price": "-1"}]}]}]},
            "a price >= 0",
        ),
        ({"Terms": [{"Type": "FreeTrialPricingTerm", "Grants": [{"DimensionKey": "m.i.c"}]}]}, "Duration is required"),
    ],
)  # fmt: skip
def test_given_update_pricing_terms_breaking_the_ml_pricing_layout_then_validation_exception(
    sandbox: CatalogExtension, document: dict[str, Any], problem: str
) -> None:
    change = pricing("ml.m5.large.m.i.b", offer=sandbox.product(ACCOUNT, PRODUCT).offer_id, **document)

    with pytest.raises(ClientError) as refused:
        start(change)

    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert problem in refused.value.response["Error"]["Message"]


def test_given_a_rate_card_dropping_a_rate_or_pricing_a_foreign_dimension_then_failed_with_its_code(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    offer = sandbox.product(ACCOUNT, PRODUCT).offer_id

    dropped = start(pricing("ml.m5.large.m.i.b", offer=offer))
    clock.advance(CHANGE_SET_SECONDS)
    foreign = start(pricing("ml.m5.large.m.i.b", "ml.m5.large.m.i.r", "ml.p3.2xlarge.m.i.b", offer=offer))
    clock.advance(CHANGE_SET_SECONDS)
    with pytest.raises(ClientError) as unknown:
        start(pricing("ml.m5.large.m.i.b", offer="offer-doesnotexist1"))

    assert errors_of(describe(dropped)) == ["INVALID_RATE_CARD"]
    assert errors_of(describe(foreign)) == ["INCOMPATIBLE_PRODUCT"]
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"
    [term] = entity(entity_id=offer)["DetailsDocument"]["Terms"]
    assert len(term["RateCards"][0]["RateCard"]) == 2  # the seeded rates, unchanged


def test_given_an_existing_version_when_its_title_or_package_is_added_again_then_failed_duplicate(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    first = model_package("churn-1-0-0", clock=clock)
    second = model_package("churn-1-0-1", clock=clock)
    start(add_version(first, "1.0.0"))
    clock.advance(CHANGE_SET_SECONDS)

    same_title = start(add_version(second, "1.0.0"))
    clock.advance(CHANGE_SET_SECONDS)
    same_package = start(add_version(first, "1.0.1"))
    clock.advance(CHANGE_SET_SECONDS)

    assert errors_of(describe(same_title)) == ["DUPLICATE_VERSION_TITLE"]
    assert errors_of(describe(same_package)) == ["DUPLICATE_ASSET"]


def test_given_two_delivery_options_or_a_recommended_type_not_supported_then_failed_with_their_codes(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-0-0", clock=clock)
    two_options = add_version(arn, "two")
    options = two_options["DetailsDocument"]["DeliveryOptions"]
    options.append(copy.deepcopy(options[0]))

    two = start(two_options)
    clock.advance(CHANGE_SET_SECONDS)
    unsupported = start(add_version(arn, "unsupported", realtime="ml.p3.2xlarge"))
    clock.advance(CHANGE_SET_SECONDS)

    assert errors_of(describe(two)) == ["INCOMPATIBLE_DELIVERY_OPTIONS"]
    assert errors_of(describe(unsupported)) == ["INVALID_RECOMMENDED_INSTANCE_TYPE"]


def test_given_a_forced_outcome_then_client_error_details_or_server_fault(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-0-0", clock=clock)
    sandbox.set_outcome(
        PRODUCT,
        ChangeSetOutcome(failure_code="CLIENT_ERROR", errors=(("ASSET_VALIDATION_EXCEPTION", "Unable to ingest"),)),
    )
    client_error = start(add_version(arn))
    clock.advance(CHANGE_SET_SECONDS)
    sandbox.set_outcome(PRODUCT, ChangeSetOutcome(minutes=30, failure_code="SERVER_FAULT"))
    server_fault = start(add_version(arn))
    clock.advance(CHANGE_SET_SECONDS)
    still_running = describe(server_fault)
    clock.advance(1200)

    failed = describe(client_error)
    assert (failed["Status"], failed["FailureCode"]) == ("FAILED", "CLIENT_ERROR")
    assert failed["ChangeSet"][0]["ErrorDetailList"] == [
        {"ErrorCode": "ASSET_VALIDATION_EXCEPTION", "ErrorMessage": "Unable to ingest"}
    ]
    assert still_running["Status"] == "APPLYING"
    faulted = describe(server_fault)
    assert (faulted["Status"], faulted["FailureCode"]) == ("FAILED", "SERVER_FAULT")
    assert errors_of(faulted) == []
    assert entity()["DetailsDocument"]["Versions"] == []


def test_given_two_versions_when_the_first_is_restricted_then_restricted_and_the_last_cannot_be(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    first = model_package("churn-1-0-0", clock=clock)
    second = model_package("churn-1-0-1", clock=clock)
    start(add_version(first, "1.0.0"))
    clock.advance(CHANGE_SET_SECONDS)
    [old] = entity()["DetailsDocument"]["Versions"]
    old_option = old["DeliveryOptions"][0]["Id"]
    restrict_only = start(
        {
            "ChangeType": "RestrictDeliveryOptions",
            "Entity": {"Type": "MachineLearningProduct@1.0", "Identifier": PRODUCT},
            "DetailsDocument": {"DeliveryOptionIds": [old_option]},
        }
    )
    clock.advance(CHANGE_SET_SECONDS)

    both = start(
        add_version(second, "1.0.1"),
        {
            "ChangeType": "RestrictDeliveryOptions",
            "Entity": {"Type": "MachineLearningProduct@1.0", "Identifier": PRODUCT},
            "DetailsDocument": {"DeliveryOptionIds": [old_option]},
        },
    )
    clock.advance(CHANGE_SET_SECONDS)

    unknown = start(
        {
            "ChangeType": "RestrictDeliveryOptions",
            "Entity": {"Type": "MachineLearningProduct@1.0", "Identifier": PRODUCT},
            "DetailsDocument": {"DeliveryOptionIds": ["00000000-0000-0000-0000-000000000000"]},
        }
    )
    clock.advance(CHANGE_SET_SECONDS)

    assert errors_of(describe(restrict_only)) == ["INCOMPATIBLE_DELIVERY_OPTIONS"]
    assert errors_of(describe(unknown)) == ["INCOMPATIBLE_DELIVERY_OPTIONS"]
    assert describe(both)["Status"] == "SUCCEEDED"
    versions = entity()["DetailsDocument"]["Versions"]
    assert [(v["VersionTitle"], v["DeliveryOptions"][0]["Visibility"]) for v in versions] == [
        ("1.0.0", "Restricted"),
        ("1.0.1", "Public"),
    ]


def algorithm(sm: Any, *, certified: bool) -> str:
    """An algorithm (training on ml.m5.xlarge, inference on ml.m5.large); certified: with a validation profile."""
    image = f"{ACCOUNT}.dkr.ecr.{PUBLISHING}.amazonaws.com/algo@sha256:{'b' * 64}"
    request: dict[str, Any] = {
        "AlgorithmName": "churn-algo",
        "TrainingSpecification": {
            "TrainingImage": image,
            "SupportedTrainingInstanceTypes": ["ml.m5.xlarge"],
            "TrainingChannels": [
                {"Name": "train", "SupportedContentTypes": ["text/csv"], "SupportedInputModes": ["File"]}
            ],
        },
        "InferenceSpecification": {
            "Containers": [{"Image": image}],
            "SupportedTransformInstanceTypes": ["ml.m5.large"],
            "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        "CertifyForMarketplace": certified,
    }
    if certified:
        request["ValidationSpecification"] = {
            "ValidationRole": f"arn:aws:iam::{ACCOUNT}:role/validation",
            "ValidationProfiles": [
                {
                    "ProfileName": "train",
                    "TrainingJobDefinition": {
                        "TrainingInputMode": "File",
                        "InputDataConfig": [
                            {
                                "ChannelName": "train",
                                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/train/"}},
                            }
                        ],
                        "OutputDataConfig": {"S3OutputPath": "s3://b/model/"},
                        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
                        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
                    },
                }
            ],
        }
    arn: str = sm.create_algorithm(**request)["AlgorithmArn"]
    return arn


def as_algorithm_version(change: dict[str, Any], arn: str) -> dict[str, Any]:
    """The AddDeliveryOptions change with SageMakerAlgorithmDeliveryOptionDetails for ``arn``."""
    details = change["DetailsDocument"]["DeliveryOptions"][0]["Details"]
    option = details.pop("SageMakerModelPackageDeliveryOptionDetails")
    del option["SageMakerModelPackageArn"]
    option["SageMakerAlgorithmArn"] = arn
    option["RecommendedInstanceTypes"]["Training"] = "ml.m5.xlarge"
    details["SageMakerAlgorithmDeliveryOptionDetails"] = option
    return change


def test_given_an_algorithm_then_uncertified_fails_and_validated_becomes_a_version_sourcing_the_algorithm(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    sm = SESSION.client("sagemaker", region_name=PUBLISHING)
    # The seeded rates stay; the algorithm's training type is added.
    priced = pricing(
        "ml.m5.large.m.i.b", "ml.m5.large.m.i.r", "ml.m5.xlarge.a.t", offer=sandbox.product(ACCOUNT, PRODUCT).offer_id
    )
    uncertified_arn = algorithm(sm, certified=False)
    uncertified = start(as_algorithm_version(add_version(""), uncertified_arn), priced)
    clock.advance(CHANGE_SET_SECONDS)
    sm.delete_algorithm(AlgorithmName="churn-algo")
    arn = algorithm(sm, certified=True)
    still_validating = start(as_algorithm_version(add_version(""), arn), priced)
    clock.advance(VALIDATION_SECONDS)

    added = start(as_algorithm_version(add_version(""), arn), priced)
    clock.advance(CHANGE_SET_SECONDS)

    assert errors_of(describe(uncertified)) == ["ASSET_VALIDATION_EXCEPTION"]
    assert errors_of(describe(still_validating)) == ["ASSET_VALIDATION_EXCEPTION"]
    assert describe(added)["Status"] == "SUCCEEDED"
    [version] = entity()["DetailsDocument"]["Versions"]
    assert version["Sources"][0] == {"Type": "Algorithm", "Id": version["Sources"][0]["Id"], "AlgorithmArn": arn}
    option = version["DeliveryOptions"][0]
    assert option["RecommendedInstanceTypes"]["Training"] == "ml.m5.xlarge"
    assert option["SupportedInstanceTypes"]["Training"] == ["ml.m5.xlarge"]


def test_given_an_algorithm_with_training_types_unpriced_then_failed_update_pricing_required(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = algorithm(SESSION.client("sagemaker", region_name=PUBLISHING), certified=True)
    clock.advance(VALIDATION_SECONDS)

    change_set_id = start(as_algorithm_version(add_version(""), arn))
    clock.advance(CHANGE_SET_SECONDS)

    assert errors_of(describe(change_set_id)) == ["UPDATE_PRICING_REQUIRED"]


# ------------------------------------------------------------------- regions and accounts


def test_given_a_client_outside_us_east_1_then_no_endpoint_answers(sandbox: CatalogExtension) -> None:
    with pytest.raises(EndpointConnectionError) as refused:
        catalog("us-east-2").describe_entity(Catalog="AWSMarketplace", EntityId=PRODUCT)

    assert "catalog.marketplace.us-east-2.amazonaws.com" in str(refused.value)


def test_given_a_seller_account_then_its_products_change_sets_and_packages_are_its_own(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    seller = seller_session()
    seller_catalog = seller.client("marketplace-catalog", config=NO_RETRIES)
    sandbox.seed_product(SELLER, "prod-seller0000001", instance_types=["ml.m5.large"])
    arn = model_package(
        "seller-churn", account=SELLER, sm=seller.client("sagemaker", region_name=PUBLISHING), clock=clock
    )

    change_set_id = start(add_version(arn, account=SELLER, product="prod-seller0000001"), client=seller_catalog)
    clock.advance(CHANGE_SET_SECONDS)
    described = describe(change_set_id, client=seller_catalog)

    assert described["Status"] == "SUCCEEDED"
    assert described["ChangeSetArn"].startswith(f"arn:aws:aws-marketplace:us-east-1:{SELLER}:")
    assert (
        entity(seller_catalog, "prod-seller0000001")["DetailsDocument"]["Versions"][0]["Sources"][0]["ModelPackageArn"]
        == arn
    )
    for call in (
        lambda: describe(change_set_id),
        lambda: entity(entity_id="prod-seller0000001"),
        lambda: entity(seller_catalog, PRODUCT),
    ):
        with pytest.raises(ClientError) as other_account:
            call()
        assert other_account.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert catalog().list_change_sets(Catalog="AWSMarketplace")["ChangeSetSummaryList"] == []
    not_mine = start(add_version(arn, "theirs"))
    clock.advance(CHANGE_SET_SECONDS)
    assert errors_of(describe(not_mine)) == ["INVALID_ASSET_ARN"]


def test_given_the_emulator_endpoint_when_called_over_http_then_served_audited_and_other_regions_dropped(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-0-0", clock=clock)
    server = EmulatorServer()
    received: list[ApiCall] = []
    server.observers.append(received.append)
    server.start()
    try:
        over_http = SESSION.client("marketplace-catalog", endpoint_url=server.endpoint, config=NO_RETRIES)
        change_set_id = start(add_version(arn), client=over_http)
        clock.advance(CHANGE_SET_SECONDS)
        described = describe(change_set_id, client=over_http)
        listed = over_http.list_change_sets(Catalog="AWSMarketplace")["ChangeSetSummaryList"]
        versions = entity(over_http)["DetailsDocument"]["Versions"]
        elsewhere = SESSION.client(
            "marketplace-catalog", region_name="eu-west-1", endpoint_url=server.endpoint, config=NO_RETRIES
        )
        with pytest.raises(ConnectionClosedError):
            elsewhere.list_change_sets(Catalog="AWSMarketplace")
    finally:
        server.stop()

    assert described["Status"] == "SUCCEEDED"
    assert [c["ChangeSetId"] for c in listed] == [change_set_id]
    assert len(versions) == 1
    assert {"StartChangeSet", "DescribeChangeSet", "ListChangeSets", "DescribeEntity"} <= {
        call.operation for call in received
    }
    assert {action for call in received for action in call.actions} >= {"aws-marketplace:StartChangeSet"}


# ------------------------------------------------------------------- responses as botocore's output shapes


def test_given_every_operation_then_responses_are_exactly_botocores_output_shapes(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-0-0", clock=clock)
    failed_id = start(add_version(f"arn:aws:sagemaker:{PUBLISHING}:{ACCOUNT}:model-package/missing", "missing"))
    clock.advance(CHANGE_SET_SECONDS)
    started = catalog().start_change_set(Catalog="AWSMarketplace", ChangeSet=[add_version(arn)], ChangeSetName="ok")
    clock.advance(CHANGE_SET_SECONDS)
    responses = {
        "StartChangeSet": started,
        "DescribeChangeSet": describe(started["ChangeSetId"]),
        "DescribeChangeSet ": describe(failed_id),
        "ListChangeSets": catalog().list_change_sets(Catalog="AWSMarketplace", MaxResults=1),
        "DescribeEntity": entity(),
        "ListEntities": catalog().list_entities(Catalog="AWSMarketplace", EntityType="Offer"),
        "ListEntities ": catalog().list_entities(Catalog="AWSMarketplace", EntityType="MachineLearningProduct"),
    }
    model = _service_model()
    for name, answered in responses.items():
        response = {k: v for k, v in answered.items() if k != "ResponseMetadata"}
        shape = model.operation_model(name.strip()).output_shape
        assert set(response) <= set(shape.members), name
        # EntityType's modeled pattern ^[a-zA-Z]+$ refuses the service's own "MachineLearningProduct@1.0";
        # EntitySummary.Name's is escaped twice (^\\S+[\\S\\s]*: a backslash, then S), so no name matches it.
        errors = [
            e
            for e in constraint_errors(response, shape)
            if "@1.0' at" not in e and not (e.endswith(r"^\\S+[\\S\\s]*") and ".name'" in e)
        ]
        assert errors == [], name
    assert responses["ListChangeSets"]["NextToken"]
    assert len(responses["ListChangeSets"]["ChangeSetSummaryList"]) == 1


# The entitytype classes of awslabs/aws-marketplace-catalog-api-shapes-for-python@e2fef22
# (machinelearningproduct_1_0): each class's fields, and the class of each nested field.
ENTITY_SHAPES: dict[str, dict[str, str | None]] = {
    "MachineLearningProductEntityDetail": {
        "Versions": "Version",
        "Description": "Description",
        "PromotionalResources": None,
        "SupportInformation": None,
        "Dimensions": "Dimension",
        "Targeting": "Targeting",
        "RegionAvailability": None,
    },
    "Version": {
        "Id": None,
        "ReleaseNotes": None,
        "VersionTitle": None,
        "CreationDate": None,
        "Sources": "Source",
        "DeliveryOptions": "DeliveryOption",
    },
    "Source": {"Type": None, "Id": None, "ModelPackageArn": None, "AlgorithmArn": None},
    "DeliveryOption": {
        "Id": None,
        "Type": None,
        "SourceId": None,
        "Title": None,
        "ShortDescription": None,
        "Instructions": "Instructions",
        "Visibility": None,
        "RecommendedInstanceTypes": "InstanceTypes",
        "SupportedInstanceTypes": "InstanceTypes",
    },
    "Instructions": {
        "Usage": None,
        "SampleNotebookUrl": None,
        "RepositoryUrl": None,
        "InputProperties": "InputProperties",
        "OutputProperties": "OutputProperties",
    },
    "InputProperties": {
        "Description": None,
        "Limitations": None,
        "SampleInput": "Sample",
        "Parameters": "Parameter",
        "SageMakerCustomAttributes": "Parameter",
    },
    "OutputProperties": {"Description": None, "SampleOutput": "Sample", "Parameters": "Parameter"},
    "Sample": {
        "RealtimeInferenceText": None,
        "RealtimeInferenceUrl": None,
        "BatchTransformUrl": None,
        "BatchTransformText": None,
    },
    "Parameter": {"Name": None, "Description": None, "Constraints": None, "Required": None, "AlwaysReturned": None},
    "InstanceTypes": {"BatchTransform": None, "RealtimeInference": None, "Training": None},
    "Description": {
        "ProductTitle": None,
        "ProductCode": None,
        "ShortDescription": None,
        "LongDescription": None,
        "Sku": None,
        "Highlights": None,
        "AssociatedProducts": None,
        "SearchKeywords": None,
        "Visibility": None,
        "ProductState": None,
        "ReplacementProductId": None,
        "Categories": None,
    },
    "Dimension": {"Name": None, "Description": None, "Key": None, "Unit": None, "Types": None},
    "Targeting": {"PositiveTargeting": "PositiveTargeting"},
    "PositiveTargeting": {"BuyerAccounts": None},
}


def unknown_fields(value: Any, shape: str, path: str = "DetailsDocument") -> list[str]:
    """Keys of ``value`` that the entitytype class ``shape`` does not have, recursively."""
    if isinstance(value, list):
        return [
            problem for index, item in enumerate(value) for problem in unknown_fields(item, shape, f"{path}[{index}]")
        ]
    fields = ENTITY_SHAPES[shape]
    problems = [f"{path}.{key}" for key in value if key not in fields]
    for key, nested in fields.items():
        if nested is not None and key in value:
            problems += unknown_fields(value[key], nested, f"{path}.{key}")
    return problems


def test_given_a_product_with_a_version_then_describe_entity_is_laid_out_as_the_ml_entity_shapes(
    sandbox: CatalogExtension, clock: VirtualClock
) -> None:
    arn = model_package("churn-1-0-0", clock=clock)
    start(add_version(arn))
    clock.advance(CHANGE_SET_SECONDS)

    described = entity()
    document = described["DetailsDocument"]

    assert unknown_fields(document, "MachineLearningProductEntityDetail") == []
    assert document["Versions"][0]["DeliveryOptions"][0]["Instructions"]["InputProperties"]["SampleInput"] == {
        "BatchTransformText": "0.1,0.2,0.3"
    }
    assert json.loads(described["Details"]) == document


# ------------------------------------------------------------------- sandbox run / serve options


def test_given_catalog_product_options_then_parsed_for_the_runner_and_bad_ones_refused() -> None:
    from sandbox import cli

    args = cli.build_parser().parse_args(
        [
            "run",
            "--release",
            "r.yaml",
            "--image",
            "img",
            "--catalog-product",
            "prod-abc123=ml.m5.large,ml.c5.xlarge",
            "--catalog-product",
            "prod-def456",
            "--catalog-minutes",
            "90",
        ]
    )

    assert cli.catalog_options(args) == {
        "catalog_products": {"prod-abc123": ("ml.m5.large", "ml.c5.xlarge"), "prod-def456": ()},
        "catalog_minutes": 90.0,
        "service_events": "delivered",
    }
    for bad in ("prod abc", "prod-abc=ml m5", ""):
        with pytest.raises(ValueError, match="--catalog-product"):
            parse_catalog_product(bad)

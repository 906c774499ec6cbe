"""Listing the version: the Catalog API request built from the release's listing section."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator
from tests.fixtures.releases import ACCOUNT, EXAMPLE, release_document, resolved_release

from mlpublish.errors import InvalidRelease, ListingFailed
from mlpublish.listing import change_set_request, list_version
from mlpublish.release import parse_release
from mlpublish.state import ListingProgress

pytestmark = pytest.mark.unit

PACKAGE = f"arn:aws:sagemaker:us-east-2:{ACCOUNT}:model-package/acme-sentiment-1-2-0-0123abcd"
EXECUTION = f"arn:aws:states:us-west-2:{ACCOUNT}:execution:mlpublish:acme-sentiment-1-2-0-0123456789ab"
# The listing section of the documented example, without its pricing and restriction unless a test adds them.
LISTING = {
    key: value
    for key, value in yaml.safe_load(EXAMPLE.with_name("release.listing.yaml").read_text())["listing"].items()
    if key not in ("pricing", "restrict_previous_version")
}
PRODUCT = LISTING["product_id"]
OFFER = "offer-acmesentiment1"
# The example version supports ml.m5.large and ml.c5.xlarge for batch transform and real-time.
M5 = ["ml.m5.large.m.i.b", "ml.m5.large.m.i.r"]
C5 = ["ml.c5.xlarge.m.i.b", "ml.c5.xlarge.m.i.r"]


def listed_release(**changes: Any) -> Any:
    document = release_document()
    document["listing"] = {**LISTING, **changes}
    return resolved_release(parse_release(yaml.safe_dump(document)))


def usage_term(prices: dict[str, str]) -> dict[str, Any]:
    """A UsageBasedPricingTerm as DescribeEntity shows an offer's (with its Id)."""
    rates = [{"DimensionKey": key, "Price": price} for key, price in prices.items()]
    return {"Id": "term-1", "Type": "UsageBasedPricingTerm", "CurrencyCode": "USD", "RateCards": [{"RateCard": rates}]}


class Catalog:
    """The Catalog API: DescribeEntity answers the product with ``versions`` and its public offer
    with ``terms``; ListEntities finds that offer; DescribeChangeSet answers ``described``."""

    def __init__(
        self,
        versions: list[dict[str, Any]] | None = None,
        described: dict[str, Any] | None = None,
        terms: list[dict[str, Any]] | None = None,
    ) -> None:
        self.versions, self.described = versions or [], described or {}
        self.terms = terms if terms is not None else [usage_term(dict.fromkeys(M5 + C5, "0.25"))]
        self.started: list[dict[str, Any]] = []
        self.listed: list[dict[str, Any]] = []

    def describe_entity(self, EntityId: str, **_: Any) -> dict[str, Any]:  # boto3's name
        if EntityId == OFFER:
            return {"DetailsDocument": {"ProductId": PRODUCT, "Terms": self.terms}}
        return {"DetailsDocument": {"Versions": self.versions}}

    def list_entities(self, **request: Any) -> dict[str, Any]:
        self.listed.append(request)
        return {"EntitySummaryList": [{"EntityId": OFFER, "EntityType": "Offer"}]}

    def start_change_set(self, **request: Any) -> dict[str, Any]:
        self.started.append(request)
        arn = "arn:aws:aws-marketplace:us-east-1:123456789012:AWSMarketplace/ChangeSet/cs-1"
        return {"ChangeSetId": "cs-1", "ChangeSetArn": arn}

    def describe_change_set(self, **_: Any) -> dict[str, Any]:
        return self.described


def started(catalog: Catalog, release: Any) -> dict[str, Any]:
    """The StartChangeSet request list_version sends for ``release`` to ``catalog``."""
    list_version(catalog, release, PACKAGE, ListingProgress(status="NONE"), EXECUTION)
    [request] = catalog.started
    return request


def valid_for_the_catalog_api(request: dict[str, Any]) -> bool:
    shape = botocore.session.get_session().get_service_model("marketplace-catalog").operation_model("StartChangeSet")
    return ParamValidator().validate(request, shape.input_shape).generate_report() == ""


def test_given_a_listing_then_the_change_set_adds_one_delivery_option_valid_for_the_catalog_api() -> None:
    release = listed_release()

    request = change_set_request(release, PACKAGE, EXECUTION)

    assert valid_for_the_catalog_api(request)
    assert (request["Catalog"], request["Intent"]) == ("AWSMarketplace", "APPLY")
    [change] = request["ChangeSet"]
    assert change["ChangeType"] == "AddDeliveryOptions"
    assert change["Entity"] == {"Type": "MachineLearningProduct@1.0", "Identifier": PRODUCT}
    document = change["DetailsDocument"]
    assert document["Version"] == {"VersionTitle": "1.2.0", "ReleaseNotes": LISTING["release_notes"]}
    [option] = document["DeliveryOptions"]
    details = option["Details"]["SageMakerModelPackageDeliveryOptionDetails"]
    assert details["SageMakerModelPackageArn"] == PACKAGE
    assert details["InputProperties"] == {
        "Description": "One review per line.",
        "Limitations": "English only.",
        "SampleInput": {"BatchTransformText": "great product"},
        "Parameters": [{"Name": "text", "Description": "The review", "Required": True}],
    }
    assert details["OutputProperties"]["SampleOutput"] == {"BatchTransformText": '{"score": 0.9}'}
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


# ------------------------------------------------------------------- pricing and restricting


def test_given_an_offer_pricing_every_instance_type_then_the_version_is_added_alone() -> None:
    catalog = Catalog()

    request = started(catalog, listed_release())

    assert [change["ChangeType"] for change in request["ChangeSet"]] == ["AddDeliveryOptions"]
    assert catalog.listed[0]["EntityTypeFilters"] == {
        "OfferFilters": {"ProductId": {"ValueList": [PRODUCT]}, "Targeting": {"ValueList": ["None"]}}
    }


def test_given_new_instance_types_and_prices_then_update_pricing_terms_keeps_every_rate_and_adds_theirs() -> None:
    trial = {"Type": "FreeTrialPricingTerm", "Duration": "P30D", "Grants": [{"DimensionKey": key} for key in M5]}
    catalog = Catalog(terms=[usage_term({M5[0]: "0.20", M5[1]: "0.25"}), trial])
    pricing = {"hourly_price": "0.40", "hourly_prices": {"ml.c5.xlarge.m.i.b": 0.3}}

    request = started(catalog, listed_release(pricing=pricing))

    assert valid_for_the_catalog_api(request)
    add, update = request["ChangeSet"]
    assert add["ChangeType"] == "AddDeliveryOptions"
    assert update["ChangeType"] == "UpdatePricingTerms"
    assert update["Entity"] == {"Type": "Offer@1.0", "Identifier": OFFER}
    assert update["DetailsDocument"] == {
        "PricingModel": "Usage",
        "Terms": [
            {
                "Type": "UsageBasedPricingTerm",
                "CurrencyCode": "USD",
                "RateCards": [
                    {
                        "RateCard": [
                            {"DimensionKey": "ml.m5.large.m.i.b", "Price": "0.20"},
                            {"DimensionKey": "ml.m5.large.m.i.r", "Price": "0.25"},
                            {"DimensionKey": "ml.c5.xlarge.m.i.b", "Price": "0.3"},
                            {"DimensionKey": "ml.c5.xlarge.m.i.r", "Price": "0.40"},
                        ]
                    }
                ],
            },
            {"Type": "FreeTrialPricingTerm", "Duration": "P30D", "Grants": [{"DimensionKey": k} for k in M5 + C5]},
        ],
    }


def test_given_new_instance_types_and_no_price_then_refused_before_any_change_set_naming_types_and_field() -> None:
    catalog = Catalog(terms=[usage_term(dict.fromkeys(M5, "0.25"))])

    with pytest.raises(ListingFailed) as refused:
        list_version(catalog, listed_release(), PACKAGE, ListingProgress(status="NONE"), EXECUTION)

    message = refused.value.message
    assert message.startswith(f"listing.pricing: the product's public offer {OFFER} has no price")
    assert "ml.c5.xlarge (batch transform, ml.c5.xlarge.m.i.b), ml.c5.xlarge (real-time inference" in message
    assert "listing.pricing.hourly_price" in message
    assert catalog.started == []


def test_given_a_price_for_some_new_dimensions_only_then_the_others_are_named() -> None:
    catalog = Catalog(terms=[usage_term(dict.fromkeys(M5, "0.25"))])
    release = listed_release(pricing={"hourly_prices": {"ml.c5.xlarge.m.i.b": "0.3"}})

    with pytest.raises(ListingFailed) as refused:
        list_version(catalog, release, PACKAGE, ListingProgress(status="NONE"), EXECUTION)

    assert "ml.c5.xlarge.m.i.r" in refused.value.message
    assert "ml.c5.xlarge.m.i.b" not in refused.value.message


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        ([], None),  # no usage-based term: a free offer, nothing to price
        ([usage_term(dict.fromkeys(M5, "0.00"))], [*M5, *C5]),  # free by its rates: new dimensions at 0
        ([usage_term({M5[0]: "0.25", C5[0]: "0.30", "m.i.c": "0.01"})], None),  # real-time priced per inference
    ],
)
def test_given_a_free_offer_or_per_inference_pricing_then_no_price_is_needed(
    terms: list[dict[str, Any]], expected: list[str] | None
) -> None:
    request = started(Catalog(terms=terms), listed_release())

    updates = [c for c in request["ChangeSet"] if c["ChangeType"] == "UpdatePricingTerms"]
    if expected is None:
        assert updates == []
    else:
        [update] = updates
        rates = update["DetailsDocument"]["Terms"][0]["RateCards"][0]["RateCard"]
        assert [rate["DimensionKey"] for rate in rates] == expected


def test_given_restrict_previous_version_then_the_latest_unrestricted_earlier_option_is_restricted() -> None:
    versions = [
        {"CreationDate": "2026-03-01T00:00:00Z", "DeliveryOptions": [{"Id": "option-1-1", "Visibility": "Public"}]},
        {"CreationDate": "2026-01-01T00:00:00Z", "DeliveryOptions": [{"Id": "option-1-0", "Visibility": "Restricted"}]},
    ]

    request = started(Catalog(versions=versions), listed_release(restrict_previous_version=True))
    first_version = started(Catalog(), listed_release(restrict_previous_version=True))

    assert valid_for_the_catalog_api(request)
    assert request["ChangeSet"][-1] == {
        "ChangeType": "RestrictDeliveryOptions",
        "Entity": {"Type": "MachineLearningProduct@1.0", "Identifier": PRODUCT},
        "DetailsDocument": {"DeliveryOptionIds": ["option-1-1"]},
    }
    assert [change["ChangeType"] for change in first_version["ChangeSet"]] == ["AddDeliveryOptions"]


def test_given_a_price_that_is_not_an_amount_then_the_release_file_is_refused_at_its_path() -> None:
    document = release_document()
    document["listing"] = {**LISTING, "pricing": {"hourly_prices": {"ml.c5.xlarge": "$0.40"}}}

    with pytest.raises(InvalidRelease) as caught:
        parse_release(yaml.safe_dump(document))

    assert any(reason.startswith("listing.pricing.hourly_prices.ml.c5.xlarge: ") for reason in caught.value.reasons)

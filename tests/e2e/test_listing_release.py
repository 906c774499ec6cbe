"""Listing the version: a release with a listing section adds its validated model package to
the seller's Marketplace product (Catalog API, us-east-1) and ends "listed" with the change
set; a change set that fails is announced with every error code and message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.cli_runs import CliRun
from tests.fixtures.images import WrittenLayout

pytestmark = pytest.mark.e2e

PRODUCT = "prod-acmesentiment01"
READY = "Release Ready For Listing"


def with_listing(document: dict[str, Any]) -> None:
    document["listing"] = {
        "product_id": PRODUCT,
        "release_notes": "Scores English reviews; faster batch inference.",
        "access_role_arn": "arn:aws:iam::123456789012:role/AwsMarketplaceSageMakerIngestion",
        "usage_instructions": "Send text/csv, one review per line; each answer is a JSON score.",
        "sample_notebook_url": "https://github.com/acme/sentiment/blob/main/sample.ipynb",
        "repository_url": "https://github.com/acme/sentiment",
        "input": {"description": "One review per line.", "sample": {"batch_transform_text": "great product"}},
        "output": {"description": "A score in [-1, 1].", "sample": {"batch_transform_text": '{"score": 0.9}'}},
        "recommended_instance_types": {"batch_transform": "ml.m5.large", "realtime_inference": "ml.m5.large"},
    }


@pytest.fixture(scope="module")
def listed(
    publish: Callable[..., CliRun], release_file: Callable[..., Path], image: Callable[[str], WrittenLayout]
) -> CliRun:
    return publish(
        "--release", release_file("listed", with_listing), "--image", image("docker-v2").path,
        "--catalog-product", f"{PRODUCT}=ml.m5.large,ml.c5.xlarge",
    )  # fmt: skip


def test_given_a_listing_when_the_release_is_validated_then_it_ends_listed_with_the_change_set(listed: CliRun) -> None:
    [event] = listed.events(READY)
    [note] = listed.reported["notifications"]
    listing = event["detail"]["listing"]

    assert listed.exit_code == 0, listed.stderr
    assert event["detail"]["listed"] is True
    assert listing["product_id"] == PRODUCT
    assert listing["version_title"] == "1.2.0"
    assert listing["change_set_id"]
    assert listing["already_listed"] is False
    assert note["subject"] == "Listed: acme-sentiment 1.2.0"
    assert f"Change set: {listing['change_set_id']}" in note["message"]
    stages = [e["detail"]["stage"] for e in listed.events("Release Stage Changed")]
    assert stages[-1] == "ListVersion"
    assert "ListVersion" in event["detail"]["stage_seconds"]


@pytest.fixture(scope="module")
def unpriced(
    publish: Callable[..., CliRun], release_file: Callable[..., Path], image: Callable[[str], WrittenLayout]
) -> CliRun:
    # The product has a price for ml.m5.large only; the version adds ml.c5.xlarge.
    return publish(
        "--release", release_file("listed", with_listing), "--image", image("docker-v2").path,
        "--catalog-product", f"{PRODUCT}=ml.m5.large",
    )  # fmt: skip


def test_given_a_version_adding_unpriced_instance_types_then_the_failed_change_set_is_announced_with_each_error(
    unpriced: CliRun,
) -> None:
    failure = unpriced.reported["failure"]
    [note] = unpriced.reported["notifications"]
    [event] = unpriced.events("Release Failed")

    assert unpriced.exit_code == 1, unpriced.stderr
    assert (failure["stage"], failure["error"]) == ("ListVersion", "ListingFailed")
    assert "ended FAILED (CLIENT_ERROR)" in failure["reason"]
    assert any(reason.startswith("UPDATE_PRICING_REQUIRED: ") for reason in failure["reasons"]), failure["reasons"]
    assert "UPDATE_PRICING_REQUIRED" in note["message"]
    assert event["detail"]["model_package_arn"]  # the validated package stays, for the next try

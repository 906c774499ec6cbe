"""Listing the version: a release with a listing section adds its validated model package to
the seller's Marketplace product (Catalog API, us-east-1) and ends "listed" with the change
set; a change set that fails is announced with every error code and message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.fixtures.cli_runs import CliRun
from tests.fixtures.images import WrittenLayout

pytestmark = pytest.mark.e2e

LISTING_EXAMPLE = Path(__file__).resolve().parents[2] / "events" / "release.listing.yaml"
READY = "Release Ready For Listing"
PRODUCT = yaml.safe_load(LISTING_EXAMPLE.read_text())["listing"]["product_id"]
SEEDED = f"{PRODUCT}=ml.m5.large"  # the product prices ml.m5.large only; the version also supports ml.c5.xlarge


def with_listing(document: dict[str, Any]) -> None:
    """The documented listing example's section, with prices for the instance types it adds."""
    document["listing"] = yaml.safe_load(LISTING_EXAMPLE.read_text())["listing"]


def without_pricing(document: dict[str, Any]) -> None:
    with_listing(document)
    del document["listing"]["pricing"]


@pytest.fixture(scope="module")
def listed(
    publish: Callable[..., CliRun], release_file: Callable[..., Path], image: Callable[[str], WrittenLayout]
) -> CliRun:
    return publish(
        "--release", release_file("listed", with_listing), "--image", image("docker-v2").path,
        "--catalog-product", SEEDED,
    )  # fmt: skip


def test_given_a_version_adding_an_instance_type_with_its_price_then_it_ends_listed_with_the_change_set(
    listed: CliRun,
) -> None:
    # The sandbox fails a version with an unpriced instance type (UPDATE_PRICING_REQUIRED): ending
    # listed means the change set priced ml.c5.xlarge on the product's offer, keeping ml.m5.large's price.
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
    return publish(
        "--release", release_file("listed-unpriced", without_pricing), "--image", image("docker-v2").path,
        "--catalog-product", SEEDED,
    )  # fmt: skip


def test_given_a_version_adding_unpriced_instance_types_then_refused_before_any_change_set_naming_the_fix(
    unpriced: CliRun,
) -> None:
    failure = unpriced.reported["failure"]
    [note] = unpriced.reported["notifications"]
    [event] = unpriced.events("Release Failed")

    assert unpriced.exit_code == 1, unpriced.stderr
    assert (failure["stage"], failure["error"]) == ("ListVersion", "ListingFailed")
    assert failure["reason"].startswith("listing.pricing: "), failure["reason"]
    assert "ml.c5.xlarge (batch transform, ml.c5.xlarge.m.i.b)" in failure["reason"]
    assert "listing.pricing.hourly_price" in note["message"]
    assert event["detail"]["model_package_arn"]  # the validated package stays, for the next try

"""The certified model package against moto's SageMaker: created once, reused, never mixed up."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from tests.fixtures.releases import PUBLISHING_REGION, published_images, resolved_release

from mlpublish.errors import ResourceConflict
from mlpublish.sagemaker import check_validation, create_model_package

pytestmark = pytest.mark.integration


@pytest.fixture
def sm(moto_aws: None) -> Any:
    return boto3.client("sagemaker", region_name=PUBLISHING_REGION)


def package_names(sm: Any) -> list[str]:
    return [item["ModelPackageName"] for item in sm.list_model_packages()["ModelPackageSummaryList"]]


def test_given_a_new_release_then_one_certified_package_is_created_with_its_validation_profile(sm: Any) -> None:
    release = resolved_release()
    images = published_images(release, converted=True)

    result = create_model_package(sm, release, images)

    assert (result.action, result.name) == ("created", release.resource_name)
    assert package_names(sm) == [release.resource_name]
    described = sm.describe_model_package(ModelPackageName=release.resource_name)
    assert described["ModelPackageArn"] == result.arn
    assert described["CertifyForMarketplace"] is True
    [container] = described["InferenceSpecification"]["Containers"]
    assert (container["Image"], container["ImageDigest"]) == (images[0].image_uri, images[0].digest)
    [profile] = described["ValidationSpecification"]["ValidationProfiles"]
    copied_input = release.object_for("validation_input")
    assert copied_input is not None
    data_source = profile["TransformJobDefinition"]["TransformInput"]["DataSource"]["S3DataSource"]
    assert data_source["S3Uri"] == copied_input.destination_uri


def test_given_the_same_release_again_then_the_package_is_reused_not_created_twice(sm: Any) -> None:
    release = resolved_release()
    images = published_images(release)
    first = create_model_package(sm, release, images)

    second = create_model_package(sm, release, images)

    assert (second.action, second.arn) == ("reused", first.arn)
    assert package_names(sm) == [release.resource_name]


def test_given_a_package_with_the_name_but_other_images_then_it_is_a_conflict_not_a_reuse(sm: Any) -> None:
    release = resolved_release()
    create_model_package(sm, release, published_images(release))
    other_images = published_images(release, digest="sha256:" + "e" * 64)

    with pytest.raises(ResourceConflict) as caught:
        create_model_package(sm, release, other_images)

    assert release.resource_name in caught.value.message
    assert "delete it (aws sagemaker delete-model-package) or change the release version" in caught.value.message
    assert package_names(sm) == [release.resource_name]


def test_given_a_created_package_when_its_validation_is_checked_then_moto_reports_it_completed(sm: Any) -> None:
    release = resolved_release()
    arn = create_model_package(sm, release, published_images(release)).arn

    progress = check_validation(sm, arn, attempt=0, elapsed_seconds=0, timeout_minutes=60)

    assert (progress.status, progress.wait_seconds, progress.attempt) == ("Completed", 0, 1)
    assert [item.status for item in progress.validation_statuses] == ["Completed"]
    assert [item.status for item in progress.image_scan_statuses] == ["Completed"]

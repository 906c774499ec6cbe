"""template.yaml and the settings agree on where a stack publishes, and IAM covers exactly that.

A release publishes in its own region (the stack's PublishingRegion only when it names none),
so nothing the functions or the validation role may touch in a publishing region can be
pinned to PublishingRegion; it is the AllowedPublishingRegions that bound them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlpublish.errors import PipelineError
from mlpublish.preflight import PUBLISHING_REGIONS
from mlpublish.settings import AllowedSources, PublishingConfig, Settings, TriggerSettings, settings

pytestmark = pytest.mark.unit

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
ALLOWED_REGIONS = {"Fn::Split": [",", {"Ref": "AllowedPublishingRegions"}]}


class _IntrinsicLoader(yaml.SafeLoader):
    """Reads template.yaml with each short-form intrinsic (!Ref, !Sub, ...) as its long form."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_IntrinsicLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return dict(yaml.load(TEMPLATE.read_text(), Loader=_IntrinsicLoader))


def statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(logical id, statement) of every function policy and of the validation role."""
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            for policy in resource["Properties"].get("Policies", []):
                found.extend((logical_id, statement) for statement in policy.get("Statement", []))
        elif resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                found.extend((logical_id, statement) for statement in policy["PolicyDocument"]["Statement"])
    return found


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def in_publishing_regions(statement: dict[str, Any]) -> bool:
    """The statement holds in the allowed regions only (further conditions only narrow it)."""
    return bool(statement.get("Condition", {}).get("StringEquals", {}).get("aws:RequestedRegion") == ALLOWED_REGIONS)


def test_given_the_template_then_no_policy_is_pinned_to_the_stacks_default_publishing_region(
    template: dict[str, Any],
) -> None:
    pinned = [
        logical_id
        for logical_id, statement in statements(template)
        if "${PublishingRegion}" in json.dumps(statement.get("Resource"))
    ]

    assert pinned == []


def test_given_the_derived_publishing_buckets_then_every_grant_on_them_is_bounded_by_the_allowed_regions(
    template: dict[str, Any],
) -> None:
    grants = [
        (logical_id, statement)
        for logical_id, statement in statements(template)
        if "mlpublish-${AWS::AccountId}-*" in json.dumps(statement.get("Resource"))
    ]

    assert {logical_id for logical_id, _ in grants} == {
        "PlanArtifactsFunction",
        "CopyArtifactsFunction",
        "CopyArtifactPartsFunction",
        "CompleteArtifactFunction",
        "ValidationRole",
    }
    assert [logical_id for logical_id, statement in grants if not in_publishing_regions(statement)] == []


@pytest.mark.parametrize(
    ("logical_id", "action"),
    [
        ("ValidationRole", "ecr:BatchGetImage"),
        ("ValidationRole", "ecr:GetDownloadUrlForLayer"),
        ("ValidationRole", "s3:GetObject"),
        ("ValidationRole", "s3:PutObject"),
        ("PlanArtifactsFunction", "s3:CreateBucket"),
        ("CopyArtifactsFunction", "s3:PutObject"),
        ("PlanArtifactsFunction", "s3:ListBucketMultipartUploads"),
        ("CopyArtifactPartsFunction", "s3:PutObject"),
        ("CompleteArtifactFunction", "s3:ListMultipartUploadParts"),
        ("PlanImageFunction", "ecr:CreateRepository"),
        ("CopyBlobFunction", "ecr:CompleteLayerUpload"),
        ("PutManifestFunction", "ecr:PutImage"),
        ("ScanImagesFunction", "ecr:StartImageScan"),
        ("CreateModelPackageFunction", "sagemaker:CreateModelPackage"),
        ("WatchFunction", "sagemaker:DescribeModelPackage"),
        ("EndWaitFunction", "sagemaker:DescribeAlgorithm"),
    ],
)
def test_given_what_is_done_in_a_publishing_region_then_it_is_allowed_in_each_allowed_region_only(
    template: dict[str, Any], logical_id: str, action: str
) -> None:
    grants = [
        statement for owner, statement in statements(template) if owner == logical_id and action in actions(statement)
    ]

    assert grants != []
    assert all(in_publishing_regions(statement) for statement in grants)
    assert all("arn:aws:ecr:*:" in json.dumps(s["Resource"]) for s in grants if action.startswith("ecr:"))


def test_given_the_model_package_function_then_it_may_pass_only_the_validation_role(
    template: dict[str, Any],
) -> None:
    [pass_role] = [
        statement
        for owner, statement in statements(template)
        if owner == "CreateModelPackageFunction" and "iam:PassRole" in actions(statement)
    ]

    assert pass_role["Resource"] == {
        "Fn::If": ["CreateValidationRole", {"Fn::GetAtt": "ValidationRole.Arn"}, {"Ref": "ValidationRoleArn"}]
    }
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_given_the_functions_environment_then_it_is_what_the_settings_read(template: dict[str, Any]) -> None:
    environment = template["Globals"]["Function"]["Environment"]["Variables"]
    read = {field.alias for field in Settings.model_fields.values()} - {"AWS_REGION"}

    assert read - set(environment) == set()
    assert environment["PUBLISHING_REGION"] == {"Ref": "PublishingRegion"}
    assert environment["ALLOWED_PUBLISHING_REGIONS"] == {"Ref": "AllowedPublishingRegions"}
    assert environment["PUBLISHING_BUCKET_NAME"] == {"Ref": "PublishingBucketName"}
    assert environment["SOURCE_BUCKETS"] == {"Ref": "SourceBuckets"}
    assert environment["WATCHED_BUCKETS"] == {"Ref": "WatchedBuckets"}
    assert environment["SOURCE_REPOSITORIES"] == {"Ref": "SourceRepositories"}
    assert "STATE_MACHINE_ARN" in {field.alias for field in TriggerSettings.model_fields.values()}


# --- settings ---------------------------------------------------------------------------


@pytest.fixture
def stack_environment(monkeypatch: pytest.MonkeyPatch, template: dict[str, Any]) -> pytest.MonkeyPatch:
    """The functions' environment with the template's default parameters."""
    parameters = template["Parameters"]
    for name, value in {
        "AWS_REGION": "us-west-2",
        "PUBLISHING_REGION": parameters["PublishingRegion"]["Default"],
        "ALLOWED_PUBLISHING_REGIONS": parameters["AllowedPublishingRegions"]["Default"],
        "PUBLISHING_BUCKET_NAME": parameters["PublishingBucketName"]["Default"],
        "SOURCE_BUCKETS": parameters["SourceBuckets"]["Default"],
        "WATCHED_BUCKETS": parameters["WatchedBuckets"]["Default"],
        "SOURCE_REPOSITORIES": parameters["SourceRepositories"]["Default"],
        "PIPELINE_BUCKET": "mlpublish-pipelinebucket-1a2b3c",
        "VALIDATION_ROLE_ARN": "arn:aws:iam::123456789012:role/mlpublish-ValidationRole-1A2B3C",
    }.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_given_the_default_stack_then_releases_may_publish_anywhere_each_region_to_its_own_bucket(
    stack_environment: pytest.MonkeyPatch,
) -> None:
    publishing = settings().publishing

    assert publishing == PublishingConfig(
        default_region="us-east-1",
        allowed_regions=publishing.allowed_regions,
        bucket_name="",
        # Default Source* parameters: the pipeline bucket only, any repository of the stack's account.
        sources=AllowedSources(pipeline_bucket="mlpublish-pipelinebucket-1a2b3c"),
    )
    assert set(publishing.allowed_regions) == PUBLISHING_REGIONS


def test_given_allowed_regions_with_spaces_then_each_region_is_read_on_its_own(
    stack_environment: pytest.MonkeyPatch,
) -> None:
    stack_environment.setenv("ALLOWED_PUBLISHING_REGIONS", " us-east-1, eu-west-1 ,")

    assert settings().publishing.allowed_regions == ("us-east-1", "eu-west-1")


@pytest.mark.parametrize("value", [None, "", " , "], ids=["unset", "empty", "blank"])
def test_given_no_allowed_regions_then_the_cold_start_fails_naming_the_variable(
    stack_environment: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        stack_environment.delenv("ALLOWED_PUBLISHING_REGIONS")
    else:
        stack_environment.setenv("ALLOWED_PUBLISHING_REGIONS", value)

    with pytest.raises(PipelineError, match=r"Lambda environment is incomplete \(ALLOWED_PUBLISHING_REGIONS\)"):
        settings()

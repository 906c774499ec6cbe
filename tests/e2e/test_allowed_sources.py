"""The pipeline publishes only what the seller allowed: SourceBuckets, WatchedBuckets, SourceRepositories.

A release file naming another team's object (``s3://hr-private/payroll/2026.csv`` as validation
input, which Marketplace may expose) is refused before anything is read or copied, with the
parameter to change named, and the deployed roles could not have read it either.
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from tests.fixtures.cli_runs import CliRun
from tests.fixtures.images import WrittenLayout

from sandbox.runner import RunOptions, Sandbox, load_release

pytestmark = pytest.mark.e2e

PRIVATE = "s3://hr-private/payroll/2026.csv"
EXAMPLE = Path(__file__).resolve().parents[2] / "events" / "release.example.yaml"


@pytest.fixture(scope="module")
def private_input(
    publish: Callable[..., CliRun], image: Callable[[str], WrittenLayout], release_file: Callable[..., Path]
) -> CliRun:
    def name_private_data(document: dict[str, Any]) -> None:
        document["validation"]["input"] = PRIVATE

    release = release_file("private-input", name_private_data)
    return publish("--release", release, "--image", image("docker-v2").path)


def test_given_validation_input_outside_the_allowed_buckets_then_the_release_is_refused_naming_the_parameter(
    private_input: CliRun,
) -> None:
    failure = private_input.reported["failure"]
    [note] = private_input.reported["notifications"]

    assert private_input.exit_code == 1, private_input.stderr
    assert (failure["stage"], failure["error"]) == ("ResolveRelease", "PreflightFailed")
    [reason] = failure["reasons"]
    assert reason.startswith(f"validation.input: {PRIVATE} is in bucket hr-private")
    assert "SourceBuckets" in reason
    assert reason in note["message"]


def test_given_validation_input_outside_the_allowed_buckets_then_nothing_was_copied_or_created(
    private_input: CliRun,
) -> None:
    assert private_input.reported["model_packages"] == []
    assert private_input.reported["blobs_copied"] == 0
    assert private_input.published.artifacts == ()
    assert private_input.published.images == ()


def role_statements(sandbox: Sandbox) -> dict[str, list[dict[str, Any]]]:
    """Every inline policy statement of the deployed stack's roles, by role name."""
    iam = sandbox.aws("iam")
    found: dict[str, list[dict[str, Any]]] = {}
    for role in iam.list_roles()["Roles"]:
        for policy_name in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=policy_name)["PolicyDocument"]
            if isinstance(document, str):  # moto's CloudFormation stores the policy's Python repr
                document = ast.literal_eval(document) if document.startswith("{'") else json.loads(unquote(document))
            statements = document["Statement"]
            found.setdefault(role["RoleName"], []).extend(statements if isinstance(statements, list) else [statements])
    return found


def may_read(statements: list[dict[str, Any]], action: str, arn: str) -> bool:
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if (
            statement["Effect"] == "Allow"
            and any(fnmatch.fnmatchcase(action, a) for a in actions)
            and any(fnmatch.fnmatchcase(arn, resource) for resource in resources)
        ):
            return True
    return False


@pytest.fixture(scope="module")
def deployed_roles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """The roles as deployed with SourceBuckets=acme-ml-artifacts,acme-dev-data."""
    options = RunOptions(
        release=EXAMPLE,
        validation="completed",
        parameter_overrides={
            "SourceBuckets": "acme-ml-artifacts,acme-dev-data",
            "SourceRepositories": "arn:aws:ecr:us-west-2:123456789012:repository/acme/*",
        },
        log_file=tmp_path_factory.mktemp("roles") / "lambda.log",
    )
    sandbox = Sandbox(load_release(EXAMPLE), options)
    with contextlib.redirect_stdout(io.StringIO()), sandbox.running():
        return role_statements(sandbox)


@pytest.mark.parametrize("function", ["TriggerFunction", "ResolveReleaseFunction", "CopyArtifactsFunction"])
def test_given_the_deployed_roles_then_they_read_the_allowed_buckets_and_no_other(
    deployed_roles: dict[str, list[dict[str, Any]]], function: str
) -> None:
    [statements] = [value for name, value in deployed_roles.items() if f"-{function}Role" in name]

    assert may_read(statements, "s3:GetObject", "arn:aws:s3:::acme-ml-artifacts/sentiment/1.2.0/model.tar.gz")
    assert may_read(statements, "s3:GetObject", "arn:aws:s3:::acme-dev-data/input.csv")
    assert not may_read(statements, "s3:GetObject", "arn:aws:s3:::hr-private/payroll/2026.csv")


@pytest.mark.parametrize("function", ["TriggerFunction", "ResolveReleaseFunction"])
def test_given_source_repositories_then_the_roles_reading_sources_first_read_no_other_repository(
    deployed_roles: dict[str, list[dict[str, Any]]], function: str
) -> None:
    [statements] = [value for name, value in deployed_roles.items() if f"-{function}Role" in name]

    assert may_read(statements, "ecr:DescribeImages", "arn:aws:ecr:us-west-2:123456789012:repository/acme/sentiment")
    assert not may_read(
        statements, "ecr:DescribeImages", "arn:aws:ecr:us-west-2:123456789012:repository/finance/forecast"
    )

"""How the sandbox judges another account's resource policies (sandbox/ext_accounts.py), as AWS does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.ext_accounts import grants

pytestmark = pytest.mark.unit

SESSION = "arn:aws:sts::123456789012:assumed-role/mlpublish-ResolveReleaseFunctionRole-AB12/ResolveRelease-1"
REPOSITORY = "arn:aws:ecr:us-west-2:210987654321:repository/acme/sentiment"
READ = "ecr:BatchGetImage"


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(principal: Any, action: Any = READ, **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": action, **more}


@pytest.mark.parametrize(
    "principal",
    [
        {"AWS": "arn:aws:iam::123456789012:root"},
        {"AWS": "123456789012"},
        {
            "AWS": [
                "arn:aws:iam::999999999999:root",
                "arn:aws:iam::123456789012:role/mlpublish-ResolveReleaseFunctionRole-AB12",
            ]
        },
        {"AWS": "arn:aws:iam::123456789012:role/service/mlpublish-ResolveReleaseFunctionRole-AB12"},
        "*",
    ],
)
def test_given_a_policy_naming_the_callers_account_or_role_then_the_read_is_granted(principal: Any) -> None:
    assert grants(policy(allow(principal)), SESSION, READ, REPOSITORY)


@pytest.mark.parametrize(
    "statement",
    [
        allow({"AWS": "arn:aws:iam::999999999999:root"}),
        allow({"AWS": "arn:aws:iam::123456789012:role/another-role"}),
        allow({"Service": "lambda.amazonaws.com"}),
        allow({"AWS": "123456789012"}, action="ecr:DescribeImages"),
        allow({"AWS": "123456789012"}, Resource="arn:aws:ecr:us-west-2:210987654321:repository/other"),
        allow({"AWS": "123456789012"}, Condition={"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}),
    ],
)
def test_given_a_policy_that_does_not_name_the_caller_and_action_then_the_read_is_refused(
    statement: dict[str, Any],
) -> None:
    assert not grants(policy(statement), SESSION, READ, REPOSITORY)


def test_given_no_policy_then_another_accounts_resource_is_refused() -> None:
    assert not grants(None, SESSION, READ, REPOSITORY)


def test_given_an_allow_and_a_deny_then_the_deny_wins() -> None:
    deny = {"Effect": "Deny", "Principal": "*", "Action": "ecr:*"}

    assert not grants(policy(allow({"AWS": "123456789012"}), deny), SESSION, READ, REPOSITORY)


def test_given_wildcard_actions_and_tls_only_conditions_then_they_are_read_as_aws_reads_them() -> None:
    tls_only = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    document = policy(allow({"AWS": "123456789012"}, action="S3:Get*", Resource="arn:aws:s3:::dev/*"), tls_only)

    assert grants(document, SESSION, "s3:GetObject", "arn:aws:s3:::dev/model.tar.gz")
    assert not grants(document, SESSION, "s3:PutObject", "arn:aws:s3:::dev/model.tar.gz")

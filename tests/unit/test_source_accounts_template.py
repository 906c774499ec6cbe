"""SourceAccounts in template.yaml, and templates/source-account.yaml that feeds it.

The two templates are read as CloudFormation reads them, with their parameters: the stack's bus
takes events from the source accounts only when SourceAccounts names some, its trigger rules
match those accounts' events and no others, and the development account's forwarding rules put
exactly those events on the bus the policy opens.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from moto.events.models import EventPattern

from mlpublish.images.osrecords import RECORD_PREFIX
from mlpublish.records import RECORD_PREFIX as RELEASE_RECORDS
from sandbox.stack import load_template

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
STACK_ACCOUNT, DEV_ACCOUNT, OTHER_DEV_ACCOUNT = "123456789012", "210987654321", "444455556666"
REGION = "us-west-2"


class Deployed:
    """A template with its parameters: conditions and the intrinsics these resources use, resolved."""

    def __init__(self, path: Path, parameters: dict[str, str], *, account: str = STACK_ACCOUNT) -> None:
        self.template = load_template(path)
        declared = self.template["Parameters"]
        self.values: dict[str, Any] = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
        self.values |= parameters | {
            "AWS::AccountId": account,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::StackName": "mlpublish",
        }
        for name, spec in declared.items():
            pattern = spec.get("AllowedPattern")
            assert pattern is None or re.fullmatch(pattern, self.values[name]), f"{name}={self.values[name]!r}"
        self.conditions = {name: self.resolve(value) for name, value in self.template.get("Conditions", {}).items()}

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Fn::", "Ref", "Condition")):
            return {key: self.resolve(item) for key, item in value.items()}
        [(function, argument)] = value.items()
        if function == "Ref":
            return f"<{argument}>" if argument in self.template["Resources"] else self.values[argument]
        if function == "Condition":
            return self.conditions[argument]
        if function == "Fn::Equals":
            left, right = self.resolve(argument)
            return left == right
        if function == "Fn::Not":
            return not self.resolve(argument[0])
        if function == "Fn::If":
            name, then, otherwise = argument
            return self.resolve(then if self.conditions[name] else otherwise)
        if function == "Fn::Split":
            separator, text = argument
            return str(self.resolve(text)).split(separator)
        if function == "Fn::Sub":
            text, names = (argument, {}) if isinstance(argument, str) else argument
            local = {key: self.resolve(item) for key, item in names.items()}

            def value(name: str) -> str:
                if name in local:
                    return str(local[name])
                # ${Resource.Attribute} reads as Fn::GetAtt does here.
                return str(self.values.get(name, f"<{name}>" if "." in name else None))

            return re.sub(r"\$\{([^}]+)\}", lambda m: value(m[1]), text)
        if function == "Fn::Join":
            separator, items = argument
            return separator.join(str(item) for item in self.resolve(items))
        if function == "Fn::GetAtt":
            return f"<{'.'.join(argument) if isinstance(argument, list) else argument}>"
        raise AssertionError(f"intrinsic {function} is not resolved by this test")

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        """The resources of ``kind`` the stack creates, with their properties resolved."""
        return {
            name: self.resolve(resource.get("Properties", {}))
            for name, resource in self.template["Resources"].items()
            if resource["Type"] == kind and self.conditions.get(resource.get("Condition"), True)
        }


def stack(**parameters: str) -> Deployed:
    return Deployed(ROOT / "template.yaml", parameters)


def trigger_patterns(deployed: Deployed) -> list[dict[str, Any]]:
    rules = deployed.resources("AWS::Events::Rule")
    return [rules[name]["EventPattern"] for name in ("EcrPushRule", "S3UploadRule")]


def test_given_no_source_accounts_then_the_bus_takes_no_other_accounts_events() -> None:
    deployed = stack()

    assert deployed.resources("AWS::Events::EventBusPolicy") == {}
    assert [pattern["account"] for pattern in trigger_patterns(deployed)] == [[STACK_ACCOUNT], [STACK_ACCOUNT]]


def test_given_source_accounts_then_the_default_bus_lets_exactly_them_put_events() -> None:
    deployed = stack(SourceAccounts=f"{DEV_ACCOUNT},{OTHER_DEV_ACCOUNT}")

    [policy] = deployed.resources("AWS::Events::EventBusPolicy").values()
    statement = policy["Statement"]
    assert policy["EventBusName"] == "default"
    assert statement == {
        "Effect": "Allow",
        "Principal": {"AWS": [DEV_ACCOUNT, OTHER_DEV_ACCOUNT]},
        "Action": "events:PutEvents",
        "Resource": f"arn:aws:events:{REGION}:{STACK_ACCOUNT}:event-bus/default",
    }


def test_given_source_accounts_then_the_trigger_rules_match_their_events_and_the_stacks_own() -> None:
    deployed = stack(SourceAccounts=DEV_ACCOUNT)

    for pattern in trigger_patterns(deployed):
        assert pattern["account"] == [STACK_ACCOUNT, DEV_ACCOUNT]


def test_given_source_accounts_with_a_space_then_the_parameter_refuses_them() -> None:
    with pytest.raises(AssertionError, match="SourceAccounts"):
        stack(SourceAccounts=f"{DEV_ACCOUNT}, {OTHER_DEV_ACCOUNT}")


def source_account(**parameters: str) -> Deployed:
    return Deployed(
        ROOT / "templates" / "source-account.yaml",
        {"SellerAccountId": STACK_ACCOUNT, **parameters},
        account=DEV_ACCOUNT,
    )


def test_given_the_source_account_template_then_it_forwards_pushes_and_uploads_to_the_bus_the_stack_opens() -> None:
    dev = source_account(RepositoryNames="acme/sentiment,acme/preprocess", BucketNames="acme-dev-artifacts")
    [bus_policy] = stack(SourceAccounts=DEV_ACCOUNT).resources("AWS::Events::EventBusPolicy").values()
    [stack_push, stack_upload] = trigger_patterns(
        stack(SourceAccounts=DEV_ACCOUNT, WatchedBuckets="acme-dev-artifacts")
    )

    rules = dev.resources("AWS::Events::Rule")
    push, upload = rules["ForwardPushesRule"], rules["ForwardUploadsRule"]
    for rule in (push, upload):
        [target] = rule["Targets"]
        assert target["Arn"] == bus_policy["Statement"]["Resource"]
        assert target["RoleArn"] == "<ForwardingRole.Arn>"
    assert push["EventPattern"]["detail"]["repository-name"] == ["acme/sentiment", "acme/preprocess"]
    assert upload["EventPattern"]["detail"]["bucket"]["name"] == ["acme-dev-artifacts"]
    # What is forwarded is what the stack's rules take.
    for forwarded, taken in ((push, stack_push), (upload, stack_upload)):
        for field in ("source", "detail-type"):
            assert forwarded["EventPattern"][field] == taken[field]
    assert set(upload["EventPattern"]["detail"]["bucket"]["name"]) <= set(stack_upload["detail"]["bucket"]["name"])


def test_given_the_source_account_template_then_its_role_may_put_events_on_the_sellers_bus_only() -> None:
    dev = source_account(RepositoryNames="acme/sentiment", SellerRegion="us-east-1")

    [role] = dev.resources("AWS::IAM::Role").values()
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    [policy] = role["Policies"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "events:PutEvents",
            "Resource": f"arn:aws:events:us-east-1:{STACK_ACCOUNT}:event-bus/default",
        }
    ]


def test_given_no_buckets_then_the_source_account_template_forwards_pushes_only() -> None:
    rules = source_account(RepositoryNames="acme/sentiment").resources("AWS::Events::Rule")

    assert list(rules) == ["ForwardPushesRule"]


def s3_created(bucket: str, key: str) -> dict[str, Any]:
    return {
        "source": "aws.s3",
        "account": STACK_ACCOUNT,
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": bucket}, "object": {"key": key}},
    }


def test_given_the_pipelines_own_records_then_their_writes_start_nothing_while_release_files_do() -> None:
    deployed = stack()
    [_, upload] = trigger_patterns(deployed)
    [bucket] = upload["detail"]["bucket"]["name"][:1]
    pattern = EventPattern.load(json.dumps(upload))

    assert pattern.matches_event(s3_created(bucket, "releases/acme-sentiment.yaml"))
    assert pattern.matches_event(s3_created(bucket, "models/mlpublish/os-release.tar.gz"))
    assert not pattern.matches_event(s3_created(bucket, f"{RECORD_PREFIX}v1/{'ab' * 32}.json"))
    assert not pattern.matches_event(s3_created(bucket, f"{RELEASE_RECORDS}v1/{'cd' * 32}.json"))


def test_given_resolve_release_then_it_may_write_only_the_os_and_release_records_in_the_pipeline_bucket() -> None:
    functions = stack().resources("AWS::Serverless::Function")
    statements = functions["ResolveReleaseFunction"]["Policies"][0]["Statement"]

    writes = [statement for statement in statements if any("Put" in action for action in statement["Action"])]

    assert writes == [
        {
            "Sid": "RememberImageOs",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": f"<PipelineBucket.Arn>/{RECORD_PREFIX}*",
        },
        {
            "Sid": "KeepReleaseRecord",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": f"<PipelineBucket.Arn>/{RELEASE_RECORDS}*",
        },
    ]

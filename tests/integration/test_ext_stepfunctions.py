"""The sandbox's Step Functions: each definition is parsed once per process, and every
execution still runs on components of its own (sandbox/ext_stepfunctions.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

from sandbox import ext_stepfunctions
from sandbox.ext_stepfunctions import ParsedDefinitions

pytestmark = pytest.mark.integration

REGION = "us-west-2"
ROLE = "arn:aws:iam::123456789012:role/sandbox-states"
# A counter in the execution's own data: a component shared between executions would mix them.
DEFINITION = {
    "StartAt": "Count",
    "States": {
        "Count": {
            "Type": "Pass",
            "Parameters": {"seen.$": "States.ArrayLength($.items)"},
            "ResultPath": "$.count",
            "Next": "Big",
        },
        "Big": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.count.seen", "NumericGreaterThan": 2, "Next": "Many"}],
            "Default": "Few",
        },
        "Many": {"Type": "Pass", "Result": "many", "ResultPath": "$.verdict", "End": True},
        "Few": {"Type": "Pass", "Result": "few", "ResultPath": "$.verdict", "End": True},
    },
}


def finished(sfn: Any, arn: str) -> dict[str, Any]:
    for _ in range(200):
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return dict(described)
        time.sleep(0.02)
    raise TimeoutError(arn)


def test_given_one_definition_when_executed_twice_then_it_is_parsed_once_and_each_run_has_its_own_result(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    definition = json.dumps({**DEFINITION, "Comment": f"unique to this test {time.time_ns()}"})
    parses: list[str] = []
    grammar = AmazonStateLanguageParser.parse
    monkeypatch.setattr(
        AmazonStateLanguageParser, "parse", staticmethod(lambda text: parses.append(text) or grammar(text))
    )
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), ParsedDefinitions():
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(name="count", definition=definition, roleArn=ROLE)["stateMachineArn"]
        many = sfn.start_execution(stateMachineArn=machine, name="many", input=json.dumps({"items": [1, 2, 3, 4]}))
        few = sfn.start_execution(stateMachineArn=machine, name="few", input=json.dumps({"items": [1]}))

        outputs = [json.loads(finished(sfn, run["executionArn"])["output"]) for run in (many, few)]

    assert [output["verdict"] for output in outputs] == ["many", "few"]
    assert [output["count"]["seen"] for output in outputs] == [4, 1]
    assert parses == [definition]  # the grammar ran once; later parses reuse its tree
    assert definition in ext_stepfunctions._PARSE_TREES


def test_given_a_definition_that_does_not_parse_then_it_is_refused_every_time_and_not_kept(
    aws_credentials: None,
) -> None:
    broken = json.dumps({"StartAt": "Nowhere", "States": {"Nowhere": {"Type": "Teleport", "End": True}}})
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), ParsedDefinitions():
        sfn = boto3.client("stepfunctions", region_name=REGION)
        for name in ("first", "second"):
            with pytest.raises(ClientError, match="ASLParserException"):  # moto's answer for it
                sfn.create_state_machine(name=name, definition=broken, roleArn=ROLE)

    assert broken not in ext_stepfunctions._PARSE_TREES

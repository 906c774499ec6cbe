"""template.yaml's operations: the trigger's progress events, the alarms on releases that failed
or wait, the optional waiting message, and the dashboard, checked against what the code emits.

The metric names, namespace and event shapes come from the functions and the domain, so a rename
on either side that the other does not follow fails here.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_template_hardening import alarm_actions, branches, of_type

from mlpublish.trigger import RELEASE_WAITING, EventBridgeEvent, Started, progress_entries
from sandbox.stack import load_template

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def emitted_metrics() -> set[str]:
    """Every metric name the functions add (add_metric(name=...) and the trigger's outcome table)."""
    names = set()
    for source in (ROOT / "functions").glob("*/app.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "name" and isinstance(node.value, ast.Constant):
                names.add(node.value.value)
            if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "METRIC_BY_OUTCOME" for target in node.targets
            ):
                names.update(ast.literal_eval(node.value).values())
    return names


def topic_publishers(template: dict[str, Any]) -> list[Any]:
    """Every aws:SourceArn the notification topic's policy lets publish (both sides of each Fn::If)."""
    policy = template["Resources"]["NotificationTopicPolicy"]["Properties"]["PolicyDocument"]
    return [
        arn
        for statement in policy["Statement"]
        for arn in branches(statement.get("Condition", {}).get("ArnEquals", {}).get("aws:SourceArn", []))
    ]


def powertools(template: dict[str, Any]) -> tuple[str, str]:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    return variables["POWERTOOLS_METRICS_NAMESPACE"], variables["POWERTOOLS_SERVICE_NAME"]


def test_given_the_trigger_then_it_may_put_its_progress_events_on_the_stacks_bus(template: dict[str, Any]) -> None:
    trigger = template["Resources"]["TriggerFunction"]["Properties"]
    variables = trigger["Environment"]["Variables"]

    assert variables["EVENT_BUS_NAME"] == {"Ref": "EventBusName"}
    assert variables["EVENT_SOURCE"] == {"Ref": "EventSource"}
    assert {"EventBridgePutEventsPolicy": {"EventBusName": {"Ref": "EventBusName"}}} in trigger["Policies"]


def test_given_the_failed_releases_alarm_then_it_sums_every_unsuccessful_end_of_the_state_machine(
    template: dict[str, Any],
) -> None:
    alarm = template["Resources"]["ReleasesFailedAlarm"]["Properties"]
    stats = {query["Id"]: query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query}
    [expression] = [query["Expression"] for query in alarm["Metrics"] if "Expression" in query]

    assert {metric["MetricName"] for metric in stats.values()} == {
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "ExecutionsAborted",
    }
    for query_id, metric in stats.items():
        assert metric["Namespace"] == "AWS/States"
        assert metric["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "PublishingStateMachine"}}]
        assert query_id in expression
    # Failures are announced on the notification topic already: only the operators' topic is added.
    assert alarm_actions(template["Resources"]["ReleasesFailedAlarm"]) == [{"Ref": "OperatorAlarmTopicArn"}]


def test_given_the_waiting_alarm_then_it_reads_the_metrics_the_trigger_emits(template: dict[str, Any]) -> None:
    namespace, service = powertools(template)
    alarm = template["Resources"]["ReleasesWaitingAlarm"]["Properties"]
    metrics = [query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query]

    assert {metric["MetricName"] for metric in metrics} == {"ReleasesWaiting", "ReleasesStarted"}
    assert {metric["MetricName"] for metric in metrics} <= emitted_metrics()
    for metric in metrics:
        assert metric["Namespace"] == namespace
        assert metric["Dimensions"] == [{"Name": "service", "Value": service}]


def test_given_an_operators_topic_then_every_alarm_notifies_it(template: dict[str, Any]) -> None:
    for name, alarm in of_type(template, "AWS::CloudWatch::Alarm").items():
        assert {"Ref": "OperatorAlarmTopicArn"} in alarm_actions(alarm), name


def test_given_a_release_waiting_event_then_the_waiting_rule_matches_it_and_its_message_paths_exist(
    template: dict[str, Any],
) -> None:
    rule = template["Resources"]["ReleaseWaitingRule"]
    event = EventBridgeEvent.model_validate(
        {"source": "aws.ecr", "detail-type": "ECR Image Action", "account": "111122223333", "region": "us-west-2",
         "detail": {}}
    )  # fmt: skip
    waiting = Started("s3://pipeline/releases/r.yaml", "", "", "waiting", note="model_data: not uploaded yet")
    [entry] = progress_entries([waiting], event, bus="default", source="mlpublish")
    detail = json.loads(entry["Detail"])
    pattern = rule["Properties"]["EventPattern"]
    [target] = rule["Properties"]["Targets"]

    assert rule["Condition"] == "NotifyWaiting"
    assert pattern == {"source": [{"Ref": "EventSource"}], "detail-type": [RELEASE_WAITING]}
    assert entry["DetailType"] == RELEASE_WAITING
    for path in target["InputTransformer"]["InputPathsMap"].values():
        assert path.startswith("$.detail.")
        assert path.removeprefix("$.detail.") in detail
    assert {"Fn::GetAtt": ["ReleaseWaitingRule", "Arn"]} in topic_publishers(template)


def test_given_a_stage_change_event_then_the_optional_stage_rule_matches_it_and_its_message_paths_exist(
    template: dict[str, Any],
) -> None:
    rule = template["Resources"]["ReleaseStageRule"]
    states = json.loads((ROOT / "statemachine" / "publish.asl.json").read_text())["States"]
    [entry] = states["EnterScanning"]["Parameters"]["Entries"]
    detail = {key.removesuffix(".$") for key in entry["Detail"]}
    pattern = rule["Properties"]["EventPattern"]
    [target] = rule["Properties"]["Targets"]

    assert rule["Condition"] == "NotifyStages"
    assert template["Conditions"]["NotifyStages"] == {"Fn::Equals": [{"Ref": "StageNotifications"}, "Enabled"]}
    assert template["Parameters"]["StageNotifications"]["Default"] == "Disabled"
    assert pattern == {"source": [{"Ref": "EventSource"}], "detail-type": [entry["DetailType"]]}
    assert (entry["Source"], entry["EventBusName"]) == ("${EventSource}", "${EventBusName}")
    for path in target["InputTransformer"]["InputPathsMap"].values():
        assert path.startswith("$.detail.")
        assert path.removeprefix("$.detail.") in detail
    assert {"Fn::GetAtt": ["ReleaseStageRule", "Arn"]} in topic_publishers(template)


def test_given_the_dashboard_then_its_body_is_json_and_shows_only_metrics_and_alarms_the_stack_has(
    template: dict[str, Any],
) -> None:
    namespace, _ = powertools(template)
    body, variables = template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    rendered = re.sub(r"\$\{[^}]+\}", "x", body)
    widgets = json.loads(rendered)["widgets"]
    alarm_names = {
        alarm["Properties"]["AlarmName"]["Fn::Sub"].removeprefix("${AWS::StackName}-")
        for alarm in of_type(template, "AWS::CloudWatch::Alarm").values()
        if "AlarmName" in alarm["Properties"]
    }

    shown_alarms = {arn.rsplit(":alarm:x-", 1)[1] for widget in widgets if widget["type"] == "alarm"
                    for arn in widget["properties"]["alarms"]}  # fmt: skip
    assert shown_alarms == alarm_names
    own = {metric[1] for widget in widgets if widget["type"] == "metric"
           for metric in widget["properties"]["metrics"] if metric[0] == namespace}  # fmt: skip
    assert own <= emitted_metrics()
    assert {"ReleasesStarted", "ReleasesWaiting", "RefusedTriggers"} <= own
    assert {"StageDuration", "ReleasesReady", "ReleasesFailed", "ImageBytesCopied", "ObjectBytesCopied"} <= own
    referenced = set(re.findall(r"\$\{([^}.]+)", body)) - {"AWS::Region", "AWS::AccountId", "AWS::Partition",
                                                           "AWS::StackName"}  # fmt: skip
    assert referenced <= set(variables) | set(template["Resources"])

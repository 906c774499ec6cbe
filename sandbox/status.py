"""``python -m sandbox status``: where the stack's releases are, and why one failed.

A client of the deployed stack, not of the sandbox: it reads the stack's state machine from
CloudFormation and its executions from Step Functions with the usual AWS credentials, so it
works against AWS as it does against ``python -m sandbox serve`` (whose printed variables,
AWS_ENDPOINT_URL among them, point it there). For each recent execution it says the release,
the status, the state a running one is in and since when, and the error and cause of one that
failed. Exit 0; 1 when the stack or its state machine cannot be read; 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
HISTORY_PAGE = 50  # the newest events of a running execution: enough to find the state it is in


def add_parser(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="recent release executions of a deployed stack (AWS, or `sandbox serve`): state, and why one failed",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    status.add_argument("--stack-name", default="mlpublish", help="the stack (default: %(default)s)")
    status.add_argument("--region", help="the stack's region (default: the AWS CLI's, e.g. AWS_DEFAULT_REGION)")
    status.add_argument("--limit", type=int, default=10, help="how many recent executions (default: %(default)s)")
    status.add_argument("--execution", help="one execution, by name or ARN, instead of the recent ones")
    status.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        print("error: --limit must be 1 to 1000", file=sys.stderr)
        return EXIT_USAGE
    try:
        session = boto3.session.Session(region_name=args.region)
        machine = state_machine_arn(session.client("cloudformation"), args.stack_name)
        sfn = session.client("stepfunctions")
        if args.execution:
            arn = args.execution if args.execution.startswith("arn:") else _execution_arn(machine, args.execution)
            executions = [describe(sfn, arn)]
        else:
            listed = sfn.list_executions(stateMachineArn=machine, maxResults=args.limit)["executions"]
            executions = [describe(sfn, item["executionArn"]) for item in listed]
    except (NoRegionError, NoCredentialsError) as exc:
        print(f"error: {exc}; set AWS_DEFAULT_REGION (or --region) and credentials as for the AWS CLI", file=sys.stderr)
        return EXIT_USAGE
    except StackNotReadable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ClientError, BotoCoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"stack": args.stack_name, "state_machine_arn": machine, "executions": executions}))
    else:
        print(render(args.stack_name, machine, executions))
    return EXIT_OK


class StackNotReadable(Exception):
    pass


def state_machine_arn(cfn: Any, stack_name: str) -> str:
    try:
        [stack] = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        raise StackNotReadable(
            f"stack {stack_name} in {cfn.meta.region_name} cannot be read ({exc.response['Error']['Message']}); "
            "pass the stack's --stack-name and --region (samconfig.toml has both)"
        ) from exc
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
    if "StateMachineArn" not in outputs:
        raise StackNotReadable(f"stack {stack_name} has no StateMachineArn output: is it an mlpublish stack?")
    return str(outputs["StateMachineArn"])


def _execution_arn(machine: str, name: str) -> str:
    return machine.replace(":stateMachine:", ":execution:", 1) + ":" + name


def describe(sfn: Any, arn: str) -> dict[str, Any]:
    """One execution as status shows it: release, status, times, where it is or why it failed."""
    execution = sfn.describe_execution(executionArn=arn)
    item: dict[str, Any] = {
        "name": execution["name"],
        "execution_arn": arn,
        "status": execution["status"],
        "release": _release_uri(execution.get("input")),
        "started": _iso(execution.get("startDate")),
        "stopped": _iso(execution.get("stopDate")),
    }
    if execution["status"] == "RUNNING":
        item["state"], item["state_since"] = _current_state(sfn, arn)
    elif execution["status"] != "SUCCEEDED":
        item["error"] = execution.get("error")
        item["cause"] = execution.get("cause")
        item["failure"] = _failure(sfn, arn)
    else:
        item["model_package_arn"] = _find(_json(execution.get("output")), "model_package_arn")
    return item


def _current_state(sfn: Any, arn: str) -> tuple[str | None, str | None]:
    """The newest state entered (a Map's inner state included) and when."""
    history = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=HISTORY_PAGE)
    for event in history["events"]:
        details = event.get("stateEnteredEventDetails")
        if details:
            return details.get("name"), _iso(event.get("timestamp"))
    return None, None


def _failure(sfn: Any, arn: str) -> dict[str, Any] | None:
    """What the failure path caught: the stage that failed, the error and its message.

    The execution's own error (ReleaseFailed) only says that it failed; the states of its failure
    path carry the caught error in their input (``$.error``, with ``failed_stage``)."""
    kwargs: dict[str, Any] = {"executionArn": arn, "reverseOrder": True, "maxResults": HISTORY_PAGE}
    found: dict[str, Any] | None = None
    for _ in range(20):  # pages of the newest events: the failure path is at the end
        history = sfn.get_execution_history(**kwargs)
        for event in history["events"]:
            state_input = _json((event.get("stateEnteredEventDetails") or {}).get("input"))
            caught = state_input.get("error") if isinstance(state_input, dict) else None
            if not (isinstance(caught, dict) and "Error" in caught):
                continue
            cause = caught.get("Cause")
            lambda_error = _json(cause)
            if isinstance(lambda_error, dict) and "errorMessage" in lambda_error:
                cause = lambda_error["errorMessage"]  # a Lambda's raised error, as the function said it
            found = {"stage": state_input.get("failed_stage"), "error": caught["Error"], "reason": cause}
            if found["stage"]:
                return found
        if not history.get("nextToken"):
            break
        kwargs["nextToken"] = history["nextToken"]
    return found


def _release_uri(text: str | None) -> str | None:
    document = _json(text)
    uri = document.get("release_uri") if isinstance(document, dict) else None
    return str(uri) if uri else None


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _find(document: Any, key: str) -> Any:
    """The first value under ``key`` anywhere in a JSON document."""
    if isinstance(document, dict):
        if document.get(key):
            return document[key]
        values = list(document.values())
    elif isinstance(document, list):
        values = document
    else:
        return None
    for value in values:
        found = _find(value, key)
        if found:
            return found
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def render(stack_name: str, machine: str, executions: list[dict[str, Any]]) -> str:
    lines = [f"stack {stack_name}: {machine}"]
    if not executions:
        lines.append("  no release executions yet")
    for item in executions:
        lines.append(f"• {item['name']}  {item['status']}  {item['release'] or '(no release_uri in its input)'}")
        lines.append(f"    started {item['started']}" + (f", ended {item['stopped']}" if item["stopped"] else ""))
        if item["status"] == "RUNNING":
            lines.append(f"    in state {item['state']} since {item['state_since']}")
        elif item["status"] == "SUCCEEDED":
            lines.append(f"    ready for listing: {item['model_package_arn']}")
        elif item["failure"]:
            failure = item["failure"]
            stage = failure["stage"] or "an unnamed stage"
            lines.append(f"    failed at {stage}: {failure['error']}: {failure['reason']}")
        else:
            lines.append(f"    {item['error']}: {item['cause']}")
    return "\n".join(lines)

"""Lambda execution environments: handlers run as Lambda runs them, in worker processes.

Each test deploys a function through moto's Lambda API, points it at a temp directory's
``app.py`` and invokes it the ways the pipeline does (Invoke, Step Functions Tasks, an SQS
event source mapping). The workers are real Python 3.13 processes with only the runtime's SDK
and the layer importable, calling the emulator over loopback with their role's credentials.
"""

from __future__ import annotations

import functools
import io
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sandbox.audit import ApiAudit
from sandbox.clock import VirtualClock
from sandbox.ext_lambda import Fault, LambdaWorkers
from sandbox.ext_sqs import EventSourcePoller
from sandbox.lambda_env import LambdaEnvironment, ensure_environment
from sandbox.server import EmulatorServer

pytestmark = pytest.mark.integration

REGION = "us-east-1"

HANDLER_SOURCE = """
import json
import os
import sys
import time

import boto3
from aws_lambda_powertools import Logger, Tracer

if os.environ.get("INIT_SLEEP"):
    time.sleep(float(os.environ["INIT_SLEEP"]))
if os.environ.get("IMPORT_LOG"):
    with open(os.environ["IMPORT_LOG"], "a") as log:
        log.write("cold start\\n")

GREETING = os.environ.get("GREETING")
logger = Logger(service="sandbox-test")
tracer = Tracer(service="sandbox-test")


class ReleaseNotReadyError(Exception):
    \"\"\"A named error the state machine retries and catches by name.\"\"\"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event, context):
    if os.environ.get("RECORD_FILE"):
        with open(os.environ["RECORD_FILE"], "a") as record:
            record.write(json.dumps(event) + "\\n")
    event = event if isinstance(event, dict) else {}
    if event.get("fail"):
        raise ReleaseNotReadyError("release is not ready")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("allocate_mb"):
        hoard = b"x" * (event["allocate_mb"] * 1024 * 1024)  # touched: resident, not only reserved
    if event.get("import"):
        __import__(event["import"])
    calls = [boto3.client("sts").get_caller_identity()["Arn"] for _ in range(event.get("calls", 0))]
    return {
        "greeting": GREETING,
        "function": context.function_name,
        "has_time_left": context.get_remaining_time_in_millis() > 0,
        "input": event,
        "pid": os.getpid(),
        "python": "%d.%d" % sys.version_info[:2],
        "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
        "callers": calls,
    }
"""


@functools.cache
def session() -> boto3.session.Session:
    return boto3.session.Session(region_name=REGION)


def client(service: str) -> Any:
    return session().client(service)


@pytest.fixture(scope="module")
def lambda_environment() -> LambdaEnvironment:
    return ensure_environment()


@dataclass
class World:
    workers: LambdaWorkers
    audit: ApiAudit
    role_arn: str
    tmp_path: Path
    create: Callable[..., str]


@pytest.fixture
def world(lambda_environment: LambdaEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("MOTO_ACCOUNT_ID", raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), VirtualClock():
        server = EmulatorServer()
        audit = ApiAudit()
        server.observers.append(audit.record)
        server.start()
        workers = LambdaWorkers(
            lambda_environment,
            endpoint=lambda: server.endpoint,
            audit=audit,
            log_path=tmp_path / "lambda.log",
            faults=[Fault.parse("crash:Crashing:after=1")],
        )
        server.observers.append(workers.observe)
        role_arn = str(client("iam").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"])
        code_dir = tmp_path / "fn"
        code_dir.mkdir()
        (code_dir / "app.py").write_text(HANDLER_SOURCE)

        def create(name: str = "publisher", *, timeout: int = 30, memory: int = 256, init_sleep: float = 0) -> str:
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w") as zf:
                zf.writestr("app.py", "placeholder: the sandbox runs the registered directory")
            response = client("lambda").create_function(
                FunctionName=name,
                Runtime="python3.13",
                Role=role_arn,
                Handler="app.lambda_handler",
                Code={"ZipFile": archive.getvalue()},
                Timeout=timeout,
                MemorySize=memory,
                Environment={
                    "Variables": {
                        "GREETING": "configured at cold start",
                        "IMPORT_LOG": str(tmp_path / f"{name}-imports.log"),
                        "RECORD_FILE": str(tmp_path / f"{name}-events.jsonl"),
                        "INIT_SLEEP": str(init_sleep or ""),
                    }
                },
            )
            workers.register(name, name, code_dir)
            return str(response["FunctionArn"])

        try:
            with workers:
                yield World(workers, audit, role_arn, tmp_path, create)
        finally:
            server.stop()


def invoke(name: str, event: Any) -> tuple[dict[str, Any], str | None]:
    response = client("lambda").invoke(FunctionName=name, Payload=json.dumps(event))
    return json.loads(response["Payload"].read()), response.get("FunctionError")


def run_state_machine(definition: dict[str, Any], role_arn: str, payload: Any = None) -> dict[str, Any]:
    sfn = client("stepfunctions")
    machine = sfn.create_state_machine(name="machine", definition=json.dumps(definition), roleArn=role_arn)
    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input=json.dumps(payload or {}))
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=execution["executionArn"]))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution did not finish within 30 real seconds"
        time.sleep(0.02)
    return dict(described)


def test_given_a_function_when_invoked_twice_then_one_python313_worker_cold_starts_and_is_reused_warm(
    world: World,
) -> None:
    world.create()

    first, error = invoke("publisher", {"release": "r1"})
    second, _ = invoke("publisher", {"release": "r2"})

    assert error is None
    assert first["greeting"] == "configured at cold start"
    assert first["function"] == "publisher"
    assert first["has_time_left"] is True
    assert first["input"] == {"release": "r1"}
    assert first["python"] == "3.13"
    assert first["pid"] != os.getpid()
    assert second["pid"] == first["pid"]  # warm
    assert first["endpoint"].startswith("http://127.0.0.1:")
    assert (world.tmp_path / "publisher-imports.log").read_text() == "cold start\n"
    stats = world.workers.stats()["publisher"]
    assert (stats["invocations"], stats["cold_starts"]) == (2, 1)


def test_given_a_worker_when_it_calls_aws_then_the_call_is_made_as_the_functions_role_and_audited(
    world: World,
) -> None:
    world.create()

    result, _ = invoke("publisher", {"calls": 1})

    assert result["callers"][0].startswith("arn:aws:sts::123456789012:assumed-role/fn/publisher-")
    assert world.audit.calls["publisher"] == 1


def test_given_a_module_only_the_dev_virtualenv_has_when_imported_then_it_is_not_importable(
    world: World,
) -> None:
    world.create()

    error, kind = invoke("publisher", {"import": "moto"})

    assert kind is not None
    assert error["errorType"] == "ModuleNotFoundError"


def test_given_handler_raises_when_invoked_then_error_is_reported_by_exception_class_name(world: World) -> None:
    world.create()

    error, kind = invoke("publisher", {"fail": True})

    assert kind is not None
    assert error["errorType"] == "ReleaseNotReadyError"
    assert error["errorMessage"] == "release is not ready"
    assert any("lambda_handler" in frame for frame in error["stackTrace"])


def test_given_a_handler_over_its_timeout_when_invoked_then_sandbox_timedout_and_the_environment_is_replaced(
    world: World,
) -> None:
    world.create(timeout=1)

    error, kind = invoke("publisher", {"sleep": 5})
    again, _ = invoke("publisher", {})

    assert kind is not None
    assert error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in error["errorMessage"]
    assert again["greeting"] == "configured at cold start"
    stats = world.workers.stats()["publisher"]
    assert (stats["timeouts"], stats["cold_starts"]) == (1, 2)


def test_given_a_handler_over_its_memory_size_when_invoked_then_lambda_unknown_out_of_memory(world: World) -> None:
    world.create(memory=128)

    error, kind = invoke("publisher", {"allocate_mb": 200})
    fits, fits_error = invoke("publisher", {"allocate_mb": 8})

    assert kind is not None
    assert error["errorType"] == "Lambda.Unknown"
    assert "Runtime.OutOfMemory" in error["errorMessage"]
    assert fits_error is None
    assert fits["greeting"] == "configured at cold start"
    assert world.workers.stats()["publisher"]["crashes"] == 1


def test_given_an_init_that_overruns_its_limit_when_invoked_then_sandbox_timedout_and_not_stuck(world: World) -> None:
    world.workers.init_seconds = 0.5
    world.create(timeout=1, init_sleep=30)

    error, kind = invoke("publisher", {})

    assert kind is not None
    assert error["errorType"] == "Sandbox.Timedout"
    assert "(init)" in error["errorMessage"]
    assert world.workers.stats()["publisher"]["timeouts"] == 1


def test_given_a_crash_fault_when_an_invocation_makes_too_few_calls_then_the_next_invocation_gets_it(
    world: World,
) -> None:
    world.create("Crashing")

    _, quiet_error = invoke("Crashing", {"calls": 1})
    crashed, _ = invoke("Crashing", {"calls": 2})

    assert quiet_error is None
    assert crashed["errorType"] == "Lambda.Unknown"
    assert [fault.function for fault in world.workers.fired] == ["Crashing"]
    assert world.workers.unfired == []


def test_given_a_crash_fault_after_one_call_when_invoked_then_lambda_unknown_once_then_it_works(
    world: World,
) -> None:
    world.create("Crashing")

    crashed, kind = invoke("Crashing", {"calls": 2})
    recovered, recovered_error = invoke("Crashing", {"calls": 2})

    assert kind is not None
    assert crashed["errorType"] == "Lambda.Unknown"
    assert "Runtime.ExitError" in crashed["errorMessage"]
    assert recovered_error is None
    assert len(recovered["callers"]) == 2
    assert world.workers.stats()["Crashing"]["crashes"] == 1


def test_given_state_machine_tasks_when_executed_then_lambda_invoke_wraps_payload_and_retry_catch_by_name(
    world: World,
) -> None:
    function_arn = world.create()
    definition = {
        "StartAt": "Integration",
        "States": {
            "Integration": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn, "Payload": {"step": "integration"}},
                "ResultPath": "$.integration",
                "Next": "PlainArn",
            },
            "PlainArn": {
                "Type": "Task",
                "Resource": function_arn,
                "Parameters": {"step": "plain"},
                "ResultPath": "$.plain",
                "Next": "Failing",
            },
            "Failing": {
                "Type": "Task",
                "Resource": function_arn,
                "Parameters": {"fail": True},
                "Retry": [{"ErrorEquals": ["ReleaseNotReadyError"], "IntervalSeconds": 10, "MaxAttempts": 2}],
                "Catch": [{"ErrorEquals": ["ReleaseNotReadyError"], "ResultPath": "$.error", "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }

    result = run_state_machine(definition, world.role_arn)

    output = json.loads(result["output"])
    assert result["status"] == "SUCCEEDED"
    assert output["integration"]["StatusCode"] == 200
    assert output["integration"]["Payload"]["input"] == {"step": "integration"}
    assert output["plain"]["input"] == {"step": "plain"}
    assert output["error"]["Error"] == "ReleaseNotReadyError"


def test_given_a_map_when_executed_then_invocations_run_in_parallel_environments(world: World) -> None:
    function_arn = world.create()
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 3,
                "Iterator": {
                    "StartAt": "Call",
                    "States": {"Call": {"Type": "Task", "Resource": function_arn, "End": True}},
                },
                "End": True,
            }
        },
    }

    result = run_state_machine(definition, world.role_arn, {"items": [{"n": n, "sleep": 0.5} for n in range(6)]})

    assert result["status"] == "SUCCEEDED"
    assert sorted(item["input"]["n"] for item in json.loads(result["output"])) == list(range(6))
    stats = world.workers.stats()["publisher"]
    assert stats["invocations"] == 6
    assert 1 < stats["max_concurrent"] <= 3


def test_given_sqs_event_source_mapping_when_message_sent_then_handler_receives_records(world: World) -> None:
    function_arn = world.create()
    sqs = client("sqs")
    queue_url = sqs.create_queue(QueueName="triggers")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client("lambda").create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=function_arn)

    sqs.send_message(QueueUrl=queue_url, MessageBody='{"release": "r1"}')

    events = [json.loads(line) for line in (world.tmp_path / "publisher-events.jsonl").read_text().splitlines()]
    assert [record["body"] for record in events[0]["Records"]] == ['{"release": "r1"}']
    assert events[0]["Records"][0]["eventSourceARN"] == queue_arn


def test_given_a_background_poller_when_a_message_is_sent_then_the_sender_does_not_wait_for_the_function(
    world: World,
) -> None:
    function_arn = world.create()
    sqs = client("sqs")
    queue_url = sqs.create_queue(QueueName="polled")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client("lambda").create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=function_arn)
    with EventSourcePoller() as poller:
        started = time.monotonic()
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"sleep": 1.5}))
        sent_after = time.monotonic() - started
        poller.wait_idle()

    events = [json.loads(line) for line in (world.tmp_path / "publisher-events.jsonl").read_text().splitlines()]
    assert sent_after < 1.0
    assert json.loads(events[0]["Records"][0]["body"]) == {"sleep": 1.5}
    assert (
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
        == "0"
    )


def test_given_function_without_registered_code_when_invoked_then_error_names_the_sandbox_gap(world: World) -> None:
    client("lambda").create_function(
        FunctionName="unknown",
        Runtime="python3.13",
        Role=world.role_arn,
        Handler="app.lambda_handler",
        Code={"ZipFile": b"not used"},
    )

    error, _ = invoke("unknown", {})

    assert error["errorType"] == "Sandbox.NoLocalCode"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("crash:CopyBlob", Fault("crash", "CopyBlob", 0)),
        ("crash:CopyBlobFunction:after=3", Fault("crash", "CopyBlobFunction", 3)),
        ("timeout:CopyBlob", Fault("timeout", "CopyBlob", 0)),
    ],
)
def test_given_fault_texts_when_parsed_then_kind_function_and_count(text: str, expected: Fault) -> None:
    assert Fault.parse(text) == expected
    assert expected.matches("CopyBlob")


@pytest.mark.parametrize("text", ["crash", "explode:CopyBlob", "timeout:CopyBlob:after=1", "crash:CopyBlob:after=x"])
def test_given_bad_fault_texts_when_parsed_then_usage_error_says_the_form(text: str) -> None:
    with pytest.raises(ValueError, match="crash:FUNCTION"):
        Fault.parse(text)

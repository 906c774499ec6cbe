"""``python -m sandbox serve`` with the real AWS CLI: a seller's own commands against the sandbox.

serve runs as a subprocess and prints its endpoint, outputs, credentials and queues
(``--json``). The AWS CLI, pinned in its own virtualenv (``make awscli-venv``), uploads the
example release, starts it by hand, lists and describes the execution and reads the
notification it announced. The example image is never pushed, so the release fails in
ResolveRelease: what matters here is that the seller's commands reach the stack, the
execution finishes and is announced. Then SIGTERM stops serve cleanly.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sandbox.serve import EXAMPLE_PRODUCT, EXAMPLE_RELEASE, environment

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
AWS = ROOT / ".venv-awscli" / "bin" / "aws"
FINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
START_TIMEOUT = 300.0  # the first start may build the Lambda environment (pip installs)


@dataclass
class Served:
    process: subprocess.Popen[str]
    info: dict[str, Any]
    stderr_path: Path
    exit_code: int | None = field(default=None)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.exit_code is None:
            self.process.send_signal(signum)
            self.exit_code = self.process.wait(timeout=timeout)
        return self.exit_code

    def aws_env(self) -> dict[str, str]:
        """Only what a seller's shell would have: the printed variables, no other AWS setting."""
        return {
            "PATH": f"{AWS.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.stderr_path.parent),
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_PAGER": "",
            **environment(self.info),
        }

    def aws(self, *args: str) -> Any:
        """``aws ARGS --output json`` as the seller runs it; the parsed output."""
        output = self.aws_text(*args, "--output", "json")
        return json.loads(output) if output.strip() else None

    def aws_text(self, *args: str) -> str:
        """``aws ARGS``; what it printed."""
        done = subprocess.run(
            [str(AWS), *args],
            cwd=ROOT,
            env=self.aws_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"aws {' '.join(args)} (exit {done.returncode}): {done.stderr}"
        return done.stdout


def _read_line(process: subprocess.Popen[str], stderr_path: Path, timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            line = process.stdout.readline()
            if line:
                return line
        if process.poll() is not None:
            break
    pytest.fail(
        f"sandbox serve printed nothing (exit {process.poll()}): {stderr_path.read_text(errors='replace')[-4000:]}"
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not AWS.is_file():
        pytest.fail(f"the AWS CLI is not installed at {AWS}: run `make awscli-venv` first")
    directory = tmp_path_factory.mktemp("serve")
    stderr_path = directory / "stderr.txt"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "serve", "--json", "--log-file", str(directory / "lambda.log")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        info = json.loads(_read_line(process, stderr_path, START_TIMEOUT))
        yield Served(process, info, stderr_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _receive_until(served: Served, queue_url: str, found: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Receive from the queue until ``found(body)``; the first matching body."""
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        received = served.aws(
            "sqs",
            "receive-message",
            "--endpoint-url",  # AWS CLI v1 ignores AWS_ENDPOINT_URL for sqs (aws/aws-cli#8737)
            served.info["endpoint"],
            "--queue-url",
            queue_url,
            "--max-number-of-messages",
            "10",
            "--wait-time-seconds",
            "2",
        )
        for message in (received or {}).get("Messages", []):
            body: dict[str, Any] = json.loads(message["Body"])
            seen.append(body)
            if found(body):
                return body
    raise AssertionError(f"nothing matching arrived on {queue_url} in {timeout} s; received {seen}")


def test_given_serve_when_a_seller_starts_a_release_with_the_aws_cli_then_it_runs_and_is_announced(
    served: Served,
) -> None:
    bucket, machine = served.info["outputs"]["PipelineBucketName"], served.info["state_machine_arn"]
    release_uri = f"s3://{bucket}/manual/{EXAMPLE_PRODUCT}.yaml"
    served.aws_text("s3", "cp", EXAMPLE_RELEASE, release_uri)
    start_input = {"release_uri": release_uri, "trigger": {"kind": "manual", "ref": "cli"}}

    started = served.aws(
        "stepfunctions",
        "start-execution",
        "--state-machine-arn",
        machine,
        "--name",
        f"e2e-{uuid.uuid4()}",
        "--input",
        json.dumps(start_input),
    )

    arn = started["executionArn"]
    listed = served.aws("stepfunctions", "list-executions", "--state-machine-arn", machine)["executions"]
    assert arn in [item["executionArn"] for item in listed]
    deadline, status = time.monotonic() + 120, "RUNNING"
    while status == "RUNNING" and time.monotonic() < deadline:
        described = served.aws("stepfunctions", "describe-execution", "--execution-arn", arn)
        status = described["status"]
        time.sleep(0.5)
    assert status in FINAL, f"{arn} still {status} after 120 s"
    assert json.loads(described["input"]) == start_input
    notification = _receive_until(served, served.info["queues"]["notifications"], lambda body: arn in body["Message"])
    assert notification["TopicArn"] == served.info["outputs"]["NotificationTopicArn"]
    assert notification["Subject"].startswith("Release ")
    event = _receive_until(served, served.info["queues"]["events"], lambda body: arn in body["resources"])
    assert event["source"] == "mlpublish"
    assert event["account"] == served.info["account"]
    if status == "FAILED":  # the example's image is never pushed: the release file was read, its image not found
        assert "containers.0.image" in event["detail"]["reason"], event["detail"]


def test_given_serve_when_status_is_asked_then_it_shows_each_execution_and_why_one_failed(served: Served) -> None:
    bucket, machine = served.info["outputs"]["PipelineBucketName"], served.info["state_machine_arn"]
    release_uri = f"s3://{bucket}/manual/status-{EXAMPLE_PRODUCT}.yaml"
    served.aws_text("s3", "cp", EXAMPLE_RELEASE, release_uri)
    start_input = json.dumps({"release_uri": release_uri, "trigger": {"kind": "manual", "ref": "cli"}})
    name = f"status-{uuid.uuid4().hex[:8]}"
    served.aws(
        "stepfunctions", "start-execution", "--state-machine-arn", machine, "--name", name, "--input", start_input
    )
    arn = machine.replace(":stateMachine:", ":execution:") + ":" + name
    deadline = time.monotonic() + 120
    while served.aws("stepfunctions", "describe-execution", "--execution-arn", arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{arn} still running after 120 s"
        time.sleep(0.5)

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**served.aws_env(), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        command = [sys.executable, "-m", "sandbox", "status", "--stack-name", served.info["stack_name"], *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)

    listed, one, text = status("--json"), status("--json", "--execution", name), status("--execution", name)

    assert listed.returncode == one.returncode == text.returncode == 0, listed.stderr + one.stderr + text.stderr
    executions = {item["name"]: item for item in json.loads(listed.stdout)["executions"]}
    truth = served.aws("stepfunctions", "list-executions", "--state-machine-arn", machine)["executions"]
    assert {item["name"]: item["status"] for item in truth} == {key: item["status"] for key, item in executions.items()}
    [shown] = json.loads(one.stdout)["executions"]
    assert shown == executions[name]
    # The example's image is never pushed here: the release fails in ResolveRelease, announced.
    assert shown["status"] == "FAILED"
    assert shown["release"] == release_uri
    assert shown["error"] == "ReleaseFailed"
    failure = shown["failure"]
    assert failure["stage"] == "ResolveRelease"
    assert "containers.0.image" in failure["reason"], failure
    assert f"• {name}  FAILED  {release_uri}" in text.stdout
    assert f"failed at ResolveRelease: {failure['error']}: " in text.stdout


def test_given_status_for_a_stack_that_does_not_exist_then_it_says_which_and_how_to_fix(served: Served) -> None:
    env = {**served.aws_env(), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "sandbox", "status", "--stack-name", "not-deployed"]

    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 1
    assert "error: stack not-deployed in " in done.stderr
    assert "pass the stack's --stack-name and --region" in done.stderr


def test_given_serve_when_its_printed_commands_are_pasted_into_bash_then_they_run(served: Served) -> None:
    script = "\n".join(["set -euo pipefail", *served.info["commands"], 'echo "started $EXECUTION_ARN"'])
    env = {key: value for key, value in served.aws_env().items() if not key.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_PAGER="")

    done = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )

    assert done.returncode == 0, done.stderr
    execution_arn = done.stdout.strip().splitlines()[-1].removeprefix("started ")
    assert execution_arn.startswith(f"arn:aws:states:{served.info['region']}:{served.info['account']}:execution:")
    assert execution_arn.rsplit(":", 1)[1] in done.stdout.split("started ")[0]  # list-executions shows it


def test_given_serve_when_another_serve_asks_for_its_port_then_that_one_is_a_usage_error(served: Served) -> None:
    port = served.info["endpoint"].rsplit(":", 1)[1]

    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "serve", "--port", port],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert f"error: --port {port}: address already in use" in done.stderr
    assert done.stdout == ""


def test_given_serve_when_it_gets_sigterm_then_it_shuts_down_cleanly_with_exit_0(served: Served) -> None:
    code = served.stop(signal.SIGTERM)

    assert code == 0, served.stderr
    assert "Traceback" not in served.stderr

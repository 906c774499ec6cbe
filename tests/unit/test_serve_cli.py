"""``python -m sandbox serve``: usage errors deploy nothing, a signal stops it with exit 0, and
the commands it prints are shell a seller can paste."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from sandbox import serve
from sandbox.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from sandbox.lambda_env import LambdaEnvironmentError
from sandbox.runner import RunOptions

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "mlpublish-pipelinebucket-abc"
MACHINE = "arn:aws:states:us-west-2:123456789012:stateMachine:mlpublish-PublishingStateMachine-X"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "se+cr/et=",
    "AWS_SESSION_TOKEN": "to/ken+==",
}
QUEUES = {
    "notifications": "https://sqs.us-west-2.amazonaws.com/123456789012/sandbox-notifications",
    "events": "https://sqs.us-west-2.amazonaws.com/123456789012/sandbox-events",
}


class FakeSandbox:
    """Stands in for :class:`sandbox.runner.Sandbox`: what serve reads, and what it did."""

    instances: list[FakeSandbox] = []
    fail_with: BaseException | None = None

    def __init__(self, spec: Any, options: RunOptions, *, port: int = 0) -> None:
        self.options, self.port = options, port
        self.account_id, self.source_region = options.account_id, options.region
        self.server = SimpleNamespace(endpoint=f"http://127.0.0.1:{port or 40123}")
        self.stack = SimpleNamespace(
            name="mlpublish",
            parameters={"PublishingRegion": "us-east-1"},
            outputs={"PipelineBucketName": BUCKET, "StateMachineArn": MACHINE, "NotificationTopicArn": "arn:sns"},
            state_machine_arn=MACHINE,
        )
        self._capture = dict(QUEUES)
        self.lambda_log = options.log_file
        self.entered = self.exited = False
        FakeSandbox.instances.append(self)

    def credentials(self, account: str) -> dict[str, str]:
        return dict(CREDENTIALS)

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeSandbox]:
        if FakeSandbox.fail_with is not None:
            raise FakeSandbox.fail_with
        self.entered = True
        try:
            yield self
        finally:
            self.exited = True


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeSandbox]:
    FakeSandbox.instances, FakeSandbox.fail_with = [], None
    monkeypatch.setattr(serve, "Sandbox", FakeSandbox)
    return FakeSandbox


def run_serve(tmp_path: Path, *args: str) -> int:
    return main(["serve", "--log-file", str(tmp_path / "sandbox.log"), *args])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--account-id", "12345"], "--account-id 12345: an AWS account id is 12 digits"),
        (["--region", "west"], "--region west: not an AWS region; use one of"),
        (["--port", "70000"], "--port 70000: a TCP port is 0 (any free port) to 65535"),
        (["--parameter-overrides", "PublishingRegion"], "parameter override 'PublishingRegion': write it as Key=Value"),
        (["--log-file", "/nonexistent/x.log"], "--log-file /nonexistent/x.log: directory /nonexistent does not exist"),
    ],
)
def test_given_bad_usage_when_serve_then_it_is_a_usage_error_and_nothing_is_deployed(
    capsys: pytest.CaptureFixture[str], fake: type[FakeSandbox], tmp_path: Path, args: list[str], says: str
) -> None:
    code = run_serve(tmp_path, *args)

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"error: {says}" in err
    assert fake.instances == []


def test_given_an_unknown_samconfig_environment_when_serve_then_it_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = run_serve(tmp_path, "--config-env", "staging")  # the real Sandbox reads samconfig.toml first

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "error: --config-env staging: samconfig.toml has no such environment" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("failure", "code", "says"),
    [
        (LambdaEnvironmentError("python3.13 is not installed; pyenv install 3.13.0"), EXIT_USAGE, "pyenv install"),
        (RuntimeError("moto broke"), EXIT_FAILED, "the sandbox failed (RuntimeError: moto broke)"),
    ],
)
def test_given_a_sandbox_that_cannot_start_when_serve_then_it_says_why_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
    fake: type[FakeSandbox],
    tmp_path: Path,
    failure: BaseException,
    code: int,
    says: str,
) -> None:
    fake.fail_with = failure

    exit_code = run_serve(tmp_path)

    err = capsys.readouterr().err
    assert exit_code == code
    assert says in err
    assert "Traceback" not in err


def signal_when_serving(signum: int, timeout: float = 30.0) -> threading.Thread:
    """Send ``signum`` to this process once a sandbox is serving (its handlers are set by then),
    not after a fixed delay: on a loaded machine the signal would otherwise kill the test."""

    def send() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(sandbox.entered for sandbox in FakeSandbox.instances):
                os.kill(os.getpid(), signum)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_given_a_serving_sandbox_when_signalled_then_it_shuts_down_and_exits_0(
    capsys: pytest.CaptureFixture[str], fake: type[FakeSandbox], tmp_path: Path, signum: signal.Signals
) -> None:
    handlers = {s: signal.getsignal(s) for s in serve.STOP_SIGNALS}
    timer = signal_when_serving(signum)

    code = run_serve(tmp_path, "--json", "--region", "eu-west-1", "--account-id", "210987654321", "--port", "0")

    timer.join()
    out = capsys.readouterr().out
    info = json.loads(out.splitlines()[0])
    [sandbox] = fake.instances
    assert code == EXIT_OK
    assert (sandbox.entered, sandbox.exited) == (True, True)
    assert sandbox.options.release is None
    assert (sandbox.options.region, sandbox.options.account_id) == ("eu-west-1", "210987654321")
    assert info["endpoint"] == "http://127.0.0.1:40123"
    assert (info["region"], info["account"]) == ("eu-west-1", "210987654321")
    assert info["credentials"] == CREDENTIALS
    assert info["queues"] == QUEUES
    assert info["outputs"]["PipelineBucketName"] == BUCKET
    assert {s: signal.getsignal(s) for s in serve.STOP_SIGNALS} == handlers


def test_given_parameter_overrides_when_serve_then_the_sandbox_deploys_with_them(
    fake: type[FakeSandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve, "_check_port", lambda port: None)  # no sockets in unit tests
    timer = signal_when_serving(signal.SIGTERM)

    run_serve(
        tmp_path,
        "--parameter-overrides",
        "PublishingRegion=us-east-2 WatchedBuckets=a,b",
        "--parameter-overrides",
        "NotificationEmail=x@example.com",
        "--config-env",
        "dev",
        "--port",
        "8123",
    )

    timer.join()
    [sandbox] = fake.instances
    assert sandbox.port == 8123
    assert sandbox.options.config_env == "dev"
    assert sandbox.options.parameter_overrides == {
        "PublishingRegion": "us-east-2",
        "WatchedBuckets": "a,b",
        "NotificationEmail": "x@example.com",
    }


# ------------------------------------------------------------------ the printed commands
def info() -> dict[str, Any]:
    return {
        "endpoint": "http://127.0.0.1:40123",
        "region": "us-west-2",
        "account": "123456789012",
        "outputs": {"PipelineBucketName": BUCKET, "StateMachineArn": MACHINE},
        "state_machine_arn": MACHINE,
        "credentials": CREDENTIALS,
        "queues": QUEUES,
    }


def test_the_export_line_points_the_cli_at_the_sandbox_in_the_stacks_account() -> None:
    export = serve.commands(info())[0]

    words = shlex.split(export)
    assert words[0] == "export"
    assert dict(word.split("=", 1) for word in words[1:]) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:40123",
        **CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-west-2",
    }


def test_the_start_command_starts_the_uploaded_release_as_a_manual_start_does() -> None:
    upload, start = serve.commands(info())[1:3]

    upload_words, start_words = shlex.split(upload), shlex.split(start.partition("$(")[2].rstrip(")"))
    start_input = json.loads(start_words[start_words.index("--input") + 1])
    assert upload_words[:3] == ["aws", "s3", "cp"]
    assert (ROOT / upload_words[3]).is_file()
    assert start_input == {
        "release_uri": upload_words[4],
        "trigger": {"kind": "manual", "ref": "cli"},
    }
    assert upload_words[4] == f"s3://{BUCKET}/manual/acme-sentiment.yaml"
    assert start_words[start_words.index("--state-machine-arn") + 1] == MACHINE


def test_the_uploaded_release_is_named_after_the_example_release_s_product() -> None:
    document = yaml.safe_load((ROOT / serve.EXAMPLE_RELEASE).read_text())

    assert document["product"]["name"] == serve.EXAMPLE_PRODUCT


def test_every_sqs_command_names_the_endpoint_since_aws_cli_v1_ignores_aws_endpoint_url_for_sqs() -> None:
    sqs = [command for command in serve.commands(info()) if command.startswith("aws sqs ")]

    assert len(sqs) == 2
    for command, url in zip(sqs, QUEUES.values(), strict=True):
        words = shlex.split(command)
        assert words[words.index("--endpoint-url") + 1] == "$AWS_ENDPOINT_URL"  # expanded by the shell
        assert words[words.index("--queue-url") + 1] == url


def test_every_command_is_valid_shell() -> None:
    for command in serve.commands(info()):
        assert shlex.split(command)


def test_the_banner_shows_the_endpoint_outputs_credentials_queues_and_commands() -> None:
    shown = {**info(), "stack_name": "mlpublish", "config_env": "default", "log_file": "/tmp/x.log"}
    shown["commands"] = serve.commands(shown)

    text = serve.render(shown)

    assert "sandbox endpoint: http://127.0.0.1:40123" in text
    assert f"PipelineBucketName  {BUCKET}" in text
    assert "AWS_SESSION_TOKEN=to/ken+==" in text
    assert all(url in text for url in QUEUES.values())
    assert all(command in text for command in shown["commands"])

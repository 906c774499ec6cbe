"""``python -m sandbox serve``: keep the deployed sandbox up for the real AWS CLI.

The stack is deployed as for ``run`` (a samconfig environment, in the seller's region and
account), nothing is seeded, and the emulator's endpoint stays up on 127.0.0.1 until SIGINT
or SIGTERM. serve prints the endpoint, the stack's outputs, STS credentials in the stack's
account (the account of a request comes from its credentials) and commands to paste: upload
a release file, start, list and describe executions, read the notifications delivered so
far (an SQS queue subscribed to the NotificationTopicArn, and one receiving the pipeline's
EventBridge events).

Exit codes: 0 stopped by a signal, 1 the sandbox failed, 2 bad usage (nothing was deployed).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from sandbox import cli
from sandbox.cli import EXIT_FAILED, EXIT_OK, _quiet, _usage_error
from sandbox.lambda_env import LambdaEnvironmentError
from sandbox.runner import RunOptions, Sandbox
from sandbox.stack import StackConfigError, parse_parameter_overrides

EXAMPLE_RELEASE = "events/release.example.yaml"
EXAMPLE_PRODUCT = "acme-sentiment"  # the product name in events/release.example.yaml
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """SIGINT or SIGTERM: leave the sandbox (a BaseException, so no ``except Exception`` eats it)."""


def add_parser(commands: Any) -> None:
    """The ``serve`` subcommand, on the CLI's subparsers."""
    serve = commands.add_parser(
        "serve",
        help="deploy the stack and keep the local AWS up for the AWS CLI until Ctrl-C",
        description="Deploy the stack (nothing seeded) and keep the local AWS up on 127.0.0.1 for the real AWS "
        "CLI until SIGINT or SIGTERM; print the endpoint, stack outputs, credentials and commands to paste.",
    )
    cli.add_stack_arguments(serve)
    cli.add_catalog_arguments(serve)
    serve.add_argument(
        "--port", type=int, default=0, help="port on 127.0.0.1 (default: 0, a free port; the one taken is printed)"
    )
    cli.add_log_arguments(serve)
    serve.add_argument(
        "--json", action="store_true", help="print one JSON object on one line (endpoint, outputs, credentials, ...)"
    )


def main(args: argparse.Namespace) -> int:
    """Run ``serve`` with parsed arguments; returns the exit code."""
    try:
        overrides: dict[str, str] = {}
        for text in args.parameter_overrides:
            overrides.update(parse_parameter_overrides(text))
        _check_options(args)
        catalog = cli.catalog_options(args)
    except ValueError as exc:  # StackConfigError included
        return _usage_error(str(exc))
    options = RunOptions(
        release=None,
        region=args.region,
        account_id=args.account_id,
        config_env=args.config_env,
        parameter_overrides=overrides,
        log_file=args.log_file,
        **catalog,
    )
    out = sys.stdout  # bound now: while the sandbox runs, sys.stdout goes to the log
    saved = {signum: signal.signal(signum, _stop) for signum in STOP_SIGNALS}
    try:
        with _quiet(None if args.verbose else args.log_file):
            serve(options, args.port, out, as_json=args.json)
    except Stopped:
        if not args.json:
            print("• stopped; the sandbox and everything in it are gone", file=out, flush=True)
        return EXIT_OK
    except (StackConfigError, LambdaEnvironmentError) as exc:
        return _usage_error(str(exc))
    except Exception as exc:  # a sandbox defect: say so plainly, with where to look
        return _failed(exc, args.log_file)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    return EXIT_OK  # pragma: no cover (serve returns only by a signal)


def serve(options: RunOptions, port: int, out: TextIO, *, as_json: bool = False) -> None:
    """Deploy, print how to reach the sandbox, and wait for a signal (raises :class:`Stopped`)."""
    sandbox = Sandbox(None, options, port=port)
    with sandbox.running():
        info = describe(sandbox)
        if as_json:
            out.write(json.dumps(info) + "\n")
        else:
            out.write(render(info))
        out.flush()
        # Not signal.pause(): a signal that lands between Python's check for pending signals and
        # the pause() call is consumed by the C handler and pause() then waits forever. A
        # bounded sleep returns, and the stop handler runs at the next bytecode.
        while True:
            time.sleep(0.5)


def describe(sandbox: Sandbox) -> dict[str, Any]:
    """What a client needs: the endpoint, the stack, credentials and the notification queues."""
    assert sandbox.stack is not None, "describe a running sandbox"
    stack = sandbox.stack
    info: dict[str, Any] = {
        "endpoint": sandbox.server.endpoint,
        "region": sandbox.source_region,
        "account": sandbox.account_id,
        "stack_name": stack.name,
        "config_env": sandbox.options.config_env,
        "parameters": dict(sorted(stack.parameters.items())),
        "outputs": dict(sorted(stack.outputs.items())),
        "state_machine_arn": stack.state_machine_arn,
        "credentials": dict(sandbox.credentials(sandbox.account_id)),
        "queues": dict(sandbox._capture),
        "log_file": str(sandbox.lambda_log),
    }
    info["commands"] = commands(info)
    return info


def environment(info: dict[str, Any]) -> dict[str, str]:
    """The variables that point an AWS CLI or SDK at the sandbox, in the stack's account."""
    return {
        "AWS_ENDPOINT_URL": info["endpoint"],
        **info["credentials"],
        "AWS_DEFAULT_REGION": info["region"],
    }


def commands(info: dict[str, Any]) -> list[str]:
    """Shell commands (bash) to paste, in order, from the repository's root."""
    q = shlex.quote
    bucket = info["outputs"]["PipelineBucketName"]
    machine = info["state_machine_arn"] or info["outputs"]["StateMachineArn"]
    release_uri = f"s3://{bucket}/manual/{EXAMPLE_PRODUCT}.yaml"
    start_input = json.dumps({"release_uri": release_uri, "trigger": {"kind": "manual", "ref": "cli"}})
    queues = info["queues"]
    return [
        "export " + " ".join(f"{key}={q(value)}" for key, value in environment(info).items()),
        f"aws s3 cp {EXAMPLE_RELEASE} {q(release_uri)}",
        # --name: AWS names an unnamed execution with a UUID; the sandbox's moto does not.
        f"EXECUTION_ARN=$(aws stepfunctions start-execution --state-machine-arn {q(machine)}"
        f' --name "manual-$(date +%s)" --input {q(start_input)} --query executionArn --output text)',
        f"aws stepfunctions list-executions --state-machine-arn {q(machine)}"
        " --query 'executions[].[name,status]' --output text",
        'aws stepfunctions describe-execution --execution-arn "$EXECUTION_ARN" --query status --output text',
        *(
            # --endpoint-url: AWS CLI v1 sends sqs commands to queue.amazonaws.com whatever
            # AWS_ENDPOINT_URL says (aws/aws-cli#8737).
            f'aws sqs receive-message --endpoint-url "$AWS_ENDPOINT_URL" --queue-url {q(queues[which])}'
            " --max-number-of-messages 10 --wait-time-seconds 5 --query 'Messages[].Body' --output text"
            for which in ("notifications", "events")
        ),
    ]


def render(info: dict[str, Any]) -> str:
    """The human-readable banner."""
    width = max(map(len, info["outputs"]), default=0)
    lines = [
        f"• sandbox endpoint: {info['endpoint']}",
        f"• stack {info['stack_name']} (samconfig {info['config_env']}) in account {info['account']}, "
        f"region {info['region']}",
        f"• Lambda logs: {info['log_file']}",
        "",
        "Stack outputs:",
        *(f"  {key:<{width}}  {value}" for key, value in info["outputs"].items()),
        "",
        "Credentials (STS, account {account}; requests land in the account of their credentials):".format(**info),
        *(f"  {key}={value}" for key, value in info["credentials"].items()),
        "",
        "Notifications delivered so far (SQS):",
        f"  {info['queues']['notifications']}  (subscribed to NotificationTopicArn)",
        f"  {info['queues']['events']}  (the pipeline's EventBridge events, source mlpublish)",
        "",
        "In another shell, from the repository's root (the AWS CLI: make awscli-venv; .venv-awscli/bin/aws):",
        "",
        *info["commands"],
        "",
        "Ctrl-C (or SIGTERM) stops the sandbox; nothing in it is kept.",
        "",
    ]
    return "\n".join(lines)


def _check_options(args: argparse.Namespace) -> None:
    cli.check_place(args.account_id, args.region)
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: a TCP port is 0 (any free port) to 65535")
    cli.check_log_file(args.log_file)
    _check_port(args.port)


def _check_port(port: int) -> None:
    """The port can be listened on (werkzeug would print a message and exit 1 once deployed)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ValueError(f"--port {port}: {reason}; choose another port, or 0 for a free one") from exc


def _stop(signum: int, frame: FrameType | None) -> None:
    # Once is enough: further signals are ignored while the sandbox shuts down.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def _failed(exc: BaseException, log_file: Path) -> int:
    print(
        f"error: the sandbox failed ({type(exc).__name__}: {exc}); this is a sandbox bug, "
        f"please report it with the log {log_file}",
        file=sys.stderr,
    )
    logging.getLogger("sandbox").debug("sandbox failure", exc_info=True)
    return EXIT_FAILED

"""Importing a handler (Lambda's init) makes no boto3 Session or client and opens no connection:
they come with the first call, from the container's one Session (mlpublish.aws).

Each handler is imported in the Lambda-like environment (sandbox.lambda_env: Python 3.13 -I -S,
its code, the layer and the runtime's SDK) with the environment template.yaml gives it, in a
fresh process whose boto3, botocore and sockets record what they are asked to do, and by whom.

One exception, not ours to change: the X-Ray SDK, which Powertools' Tracer imports (enabled or
not), makes a botocore session and an X-Ray client for its sampler when imported (it calls
nothing then: in Lambda it samples locally).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from tools.check_lambda_package import ROOT, Function, functions, load_template

from sandbox.lambda_env import LambdaEnvironment, ensure_environment

pytestmark = pytest.mark.integration

HANDLERS = functions(load_template(ROOT / "template.yaml"))

XRAY_SAMPLER = "aws_xray_sdk"

# Run by the Lambda-like interpreter: records Sessions, clients and connections (with whether the
# X-Ray SDK asked for them), then imports the module.
_PROBE = """
import importlib, json, os, socket, sys, traceback
sys.path[:0] = sys.argv[1].split(os.pathsep)
import boto3.session, botocore.session

made = []

def by():
    in_xray = any("/aws_xray_sdk/" in frame.filename for frame in traceback.extract_stack())
    return "aws_xray_sdk" if in_xray else ""

def recorded(what, original):
    def record(*args, **kwargs):
        made.append((what, by()))
        return original(*args, **kwargs)
    return record

def refuse(what):
    def record(*args, **kwargs):
        made.append((what, by()))
        raise OSError("no network at import")
    return record

boto3.session.Session.__init__ = recorded("boto3 Session", boto3.session.Session.__init__)
botocore.session.Session.__init__ = recorded("botocore session", botocore.session.Session.__init__)
botocore.session.Session.create_client = recorded("client", botocore.session.Session.create_client)
socket.socket.connect = refuse("connection")
socket.socket.connect_ex = refuse("connection")
socket.getaddrinfo = refuse("name lookup")
importlib.import_module(sys.argv[2])
print(json.dumps(made))
"""


@pytest.fixture(scope="module")
def env() -> LambdaEnvironment:
    return ensure_environment()


def import_side_effects(
    env: LambdaEnvironment, code_dir: Path, module: str, environment: dict[str, str]
) -> list[tuple[str, str]]:
    """What importing ``module`` made or opened, in order, each with who asked (XRAY_SAMPLER or "")."""
    paths = os.pathsep.join(env.sys_path(code_dir))
    done = subprocess.run(
        [str(env.python), "-I", "-S", "-c", _PROBE, paths, module],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [(what, by) for what, by in json.loads(done.stdout.splitlines()[-1])]


@pytest.mark.parametrize("function", HANDLERS, ids=[function.logical_id for function in HANDLERS])
def test_given_a_handler_when_imported_as_lambda_does_then_it_makes_no_session_or_client_and_calls_nothing(
    env: LambdaEnvironment, function: Function
) -> None:
    made = import_side_effects(env, function.code_dir, function.module, function.environment)

    assert [what for what, by in made if by != XRAY_SAMPLER] == []
    assert [what for what, _ in made if what in ("connection", "name lookup")] == []


def test_given_a_module_that_makes_a_client_at_import_when_probed_then_the_session_and_client_are_seen(
    env: LambdaEnvironment, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text(
        "import boto3\nboto3.client('s3', region_name='us-east-1')\nfrom mlpublish import aws\naws.client('ecr')\n"
    )
    environment = {"AWS_ACCESS_KEY_ID": "placeholder", "AWS_SECRET_ACCESS_KEY": "placeholder"}  # nosec B105
    environment |= {"AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    made = import_side_effects(env, tmp_path, "app", environment)

    assert [what for what, by in made if by != XRAY_SAMPLER] == [
        "boto3 Session",
        "botocore session",
        "client",
        "boto3 Session",
        "botocore session",
        "client",
    ]


def test_given_a_module_that_calls_aws_at_import_when_probed_then_the_connection_is_seen_and_refused(
    env: LambdaEnvironment, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text(
        "from botocore.config import Config\nfrom mlpublish import aws\n"
        "try:\n    aws.client('sts', 'us-east-1', max_attempts=0).get_caller_identity()\nexcept Exception:\n    pass\n"
    )
    environment = {"AWS_ACCESS_KEY_ID": "placeholder", "AWS_SECRET_ACCESS_KEY": "placeholder"}  # nosec B105
    environment |= {"AWS_EC2_METADATA_DISABLED": "true"}

    made = import_side_effects(env, tmp_path, "app", environment)

    assert [what for what, _ in made[:3]] == ["boto3 Session", "botocore session", "client"]
    assert {"name lookup", "connection"} & {what for what, _ in made[3:]}

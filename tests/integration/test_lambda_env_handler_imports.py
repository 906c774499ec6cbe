"""Handlers imported in the Lambda-like environment (Python 3.13, -I -S, layer + runtime SDK only).

The environment is built on first use by sandbox.lambda_env (pip, about 10 s, then cached).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tools.check_lambda_package import ROOT, check_handlers, functions, import_error, load_template

from sandbox.lambda_env import LambdaEnvironment, ensure_environment

pytestmark = pytest.mark.integration

TEMPLATE = """
Resources:
  Machine: {Type: AWS::Serverless::StateMachine}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.lambda_handler
      Environment:
        Variables:
          STATE_MACHINE_ARN: !Ref Machine
"""


@pytest.fixture(scope="module")
def env() -> LambdaEnvironment:
    return ensure_environment()


@pytest.fixture
def handler(tmp_path: Path) -> tuple[dict[str, object], Path]:
    (tmp_path / "fn").mkdir()
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return load_template(tmp_path / "template.yaml"), tmp_path


def _write_app(root: Path, code: str) -> None:
    (root / "fn" / "app.py").write_text(code + "\n\ndef lambda_handler(event, context):\n    return event\n")


def test_given_a_handler_using_the_layer_and_its_environment_when_imported_then_it_imports(
    env: LambdaEnvironment, handler: tuple[dict[str, object], Path]
) -> None:
    template, root = handler
    _write_app(
        root,
        "import os\nimport boto3\nfrom aws_lambda_powertools import Logger, Tracer\nfrom mlpublish import aws\n"
        "assert os.environ['STATE_MACHINE_ARN'].startswith('arn:aws:states:')\n"
        "Tracer(); Logger()",
    )

    assert list(check_handlers(template, env, root)) == []


@pytest.mark.parametrize(
    "module",
    [
        "requests",  # neither the layer nor the runtime ships it
        "moto",  # in the development virtualenv only
        "pytest",
    ],
)
def test_given_a_handler_importing_what_lambda_lacks_when_imported_then_the_error_is_reported(
    env: LambdaEnvironment, handler: tuple[dict[str, object], Path], module: str
) -> None:
    template, root = handler
    _write_app(root, f"import {module}")

    (problem,) = check_handlers(template, env, root)

    assert problem.startswith("Fn (fn, app.lambda_handler) does not import:")
    assert f"ModuleNotFoundError: No module named '{module}'" in problem


def test_given_a_handler_name_that_is_not_in_the_module_when_imported_then_it_is_reported(
    env: LambdaEnvironment, handler: tuple[dict[str, object], Path]
) -> None:
    template, root = handler
    (root / "fn" / "app.py").write_text("def handler(event, context):\n    return event\n")

    (function,) = functions(template, root)

    assert "has no attribute 'lambda_handler'" in (import_error(function, env) or "")


def test_given_the_repository_when_every_handler_is_imported_then_none_fails(env: LambdaEnvironment) -> None:
    assert list(check_handlers(load_template(ROOT / "template.yaml"), env)) == []

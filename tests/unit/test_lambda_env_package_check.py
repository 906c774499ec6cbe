"""tools/check_lambda_package.py (make layer-check): the template's functions and environment, layer comparison."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tools.check_lambda_package import (
    ROOT,
    Placeholders,
    check_layers,
    compare_packages,
    dist_infos,
    functions,
    load_template,
)

from sandbox.lambda_env import LAYER_DIR, LambdaEnvironment

pytestmark = pytest.mark.unit

TEMPLATE = """
Parameters:
  Region: {Type: String, Default: eu-west-1}
  RoleArn: {Type: String, Default: ""}
  Retention: {Type: Number, Default: 30}
Conditions:
  CreateRole: !Equals [!Ref RoleArn, ""]
  KeepRole: !Not [!Condition CreateRole]
Globals:
  Function:
    MemorySize: 256
    LoggingConfig: {LogFormat: JSON, ApplicationLogLevel: DEBUG}
    Environment:
      Variables:
        SHARED: from-globals
        OVERRIDDEN: from-globals
        ROLE: !If [CreateRole, !GetAtt Role.Arn, !Ref RoleArn]
        BUCKET: !Sub "bucket-${AWS::AccountId}-${Region}"
        LITERAL: !Sub "${!NotAVariable}"
        REGIONS: !Join [",", [a, b]]
        DAYS: !Ref Retention
Resources:
  Role: {Type: AWS::IAM::Role}
  Machine: {Type: AWS::Serverless::StateMachine}
  Layer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: layers/publishing}
    Metadata: {BuildMethod: python3.13}
  One:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/one/
      Handler: app.lambda_handler
      MemorySize: 1024
      Environment:
        Variables:
          OVERRIDDEN: from-function
          MACHINE: !Ref Machine
          MACHINE_NAME: !GetAtt Machine.Name
  Two:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: functions/two, Handler: pkg/handlers.main}
  Inline:
    Type: AWS::Lambda::Function
    Properties: {Code: {ZipFile: "def handler(e, c): pass"}, Handler: index.handler}
"""


@pytest.fixture
def template(tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    return load_template(path)


def test_given_a_template_when_functions_are_read_then_each_has_its_code_handler_and_merged_environment(
    template: dict[str, object], tmp_path: Path
) -> None:
    one, two = functions(template, tmp_path)

    assert (one.logical_id, one.code_dir, one.module, one.attribute) == (
        "One",
        tmp_path / "functions/one/",
        "app",
        "lambda_handler",
    )
    assert (two.module, two.attribute) == ("pkg.handlers", "main")
    assert one.environment["SHARED"] == two.environment["SHARED"] == "from-globals"
    assert one.environment["OVERRIDDEN"] == "from-function"
    assert two.environment["OVERRIDDEN"] == "from-globals"
    assert "MACHINE" not in two.environment


def test_given_intrinsics_when_resolved_then_they_take_default_parameters_and_placeholder_resources(
    template: dict[str, object], tmp_path: Path
) -> None:
    one = functions(template, tmp_path)[0].environment

    assert one["ROLE"] == "arn:aws:iam::123456789012:role/mlpublish-Role"  # CreateRole: RoleArn defaults to ""
    assert one["BUCKET"] == "bucket-123456789012-eu-west-1"
    assert one["LITERAL"] == "${NotAVariable}"
    assert one["REGIONS"] == "a,b"
    assert one["DAYS"] == "30"
    assert one["MACHINE"].startswith("arn:aws:states:us-east-1:123456789012:stateMachine:")
    assert one["MACHINE_NAME"] == "mlpublish-Machine"


def test_given_a_function_when_its_environment_is_built_then_lambda_variables_are_set_as_on_aws(
    template: dict[str, object], tmp_path: Path
) -> None:
    one, two = (function.environment for function in functions(template, tmp_path))

    assert one["AWS_REGION"] == one["AWS_DEFAULT_REGION"] == "us-east-1"
    assert one["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert one["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1024"
    assert two["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert (one["AWS_LAMBDA_LOG_FORMAT"], one["AWS_LAMBDA_LOG_LEVEL"]) == ("JSON", "DEBUG")
    assert one["AWS_CONFIG_FILE"] == one["AWS_SHARED_CREDENTIALS_FILE"] == "/dev/null"


def test_given_the_real_template_when_read_then_every_function_gets_what_its_settings_validate() -> None:
    template = load_template(ROOT / "template.yaml")
    placeholders = Placeholders(template)

    found = functions(template)

    assert len(found) >= 10
    for function in found:
        assert function.code_dir.is_dir(), function.logical_id
        assert function.environment["PUBLISHING_REGION"] == "us-east-1"
        assert function.environment["VALIDATION_ROLE_ARN"].startswith("arn:aws:iam::")
    trigger = next(function for function in found if function.logical_id == "TriggerFunction")
    assert re.match(r"^arn:aws[a-z-]*:states:", trigger.environment["STATE_MACHINE_ARN"])
    assert placeholders.condition("CreateValidationRole") is True


def _dist_infos(directory: Path, *names: str) -> Path:
    for name in names:
        (directory / f"{name}.dist-info").mkdir(parents=True)
    return directory


def test_given_dist_info_directories_when_read_then_names_are_normalised_and_data_directories_ignored(
    tmp_path: Path,
) -> None:
    _dist_infos(tmp_path, "typing_extensions-4.16.0", "python_dateutil-2.9.0.post0", "PyYAML-6.0.3")
    (tmp_path / "jmespath-1.1.0.data").mkdir()

    assert dist_infos(tmp_path) == {
        "typing-extensions": "4.16.0",
        "python-dateutil": "2.9.0.post0",
        "pyyaml": "6.0.3",
    }


def test_given_two_package_sets_when_compared_then_each_difference_is_named_once() -> None:
    built = {"same": "1", "newer": "2", "only-built": "3"}
    expected = {"same": "1", "newer": "1", "only-sandbox": "4"}

    assert compare_packages(built, expected) == [
        "newer: sam built 2, the sandbox has 1",
        "only-built 3: in the layer sam built, not in the sandbox's",
        "only-sandbox 4: in the sandbox's layer, not in the one sam built",
    ]


def _environment(tmp_path: Path, layer: tuple[str, ...], runtime: tuple[str, ...]) -> LambdaEnvironment:
    return LambdaEnvironment(
        python=Path("/nonexistent/python3.13"),
        runtime_dir=_dist_infos(tmp_path / "runtime", *runtime),
        layer_deps_dir=_dist_infos(tmp_path / "layer", *layer),
        layer_code_dir=LAYER_DIR,
    )


def test_given_a_built_layer_unlike_the_sandboxs_when_checked_then_the_differences_are_reported(
    template: dict[str, object], tmp_path: Path
) -> None:
    env = _environment(tmp_path / "env", ("pydantic-2.13.5", "wrapt-2.5.2"), ("boto3-1.40.4",))
    _dist_infos(tmp_path / "build" / "Layer" / "python", "pydantic-2.13.4", "wrapt-2.5.2", "aws_xray_sdk-2.15.0")

    problems = check_layers(template, tmp_path / "build", env, ROOT)

    assert problems == [
        "layer Layer: aws-xray-sdk 2.15.0: in the layer sam built, not in the sandbox's",
        "layer Layer: pydantic: sam built 2.13.4, the sandbox has 2.13.5",
    ]


def test_given_the_same_layer_when_checked_then_nothing_is_reported(
    template: dict[str, object], tmp_path: Path
) -> None:
    env = _environment(tmp_path / "env", ("pydantic-2.13.5",), ("boto3-1.40.4",))
    _dist_infos(tmp_path / "build" / "Layer" / "python", "pydantic-2.13.5")

    assert check_layers(template, tmp_path / "build", env, ROOT) == []


def test_given_no_build_when_checked_then_the_problem_says_to_run_make_build(
    template: dict[str, object], tmp_path: Path
) -> None:
    env = _environment(tmp_path / "env", ("pydantic-2.13.5",), ())

    (problem,) = check_layers(template, tmp_path / "build", env, ROOT)

    assert "does not exist; run `make build` first" in problem


def test_given_a_layer_that_shadows_the_runtime_sdk_with_another_version_when_checked_then_it_is_reported(
    template: dict[str, object], tmp_path: Path
) -> None:
    env = _environment(tmp_path / "env", ("botocore-1.40.5",), ("botocore-1.40.4", "boto3-1.40.4"))
    _dist_infos(tmp_path / "build" / "Layer" / "python", "botocore-1.40.5")

    (problem,) = check_layers(template, tmp_path / "build", env, ROOT)

    assert problem.startswith("the layer's botocore 1.40.5 shadows the runtime's botocore 1.40.4")


def test_given_a_layer_the_sandbox_does_not_build_when_checked_then_it_is_reported(tmp_path: Path) -> None:
    template = load_template(_write(tmp_path, TEMPLATE.replace("ContentUri: layers/publishing", "ContentUri: other")))
    env = _environment(tmp_path / "env", (), ())

    (problem,) = check_layers(template, tmp_path / "build", env, ROOT)

    assert problem == "layer Layer (other): the sandbox's Lambda environment is built from layers/publishing only"


def _write(directory: Path, text: str) -> Path:
    path = directory / "template.yaml"
    path.write_text(text)
    return path

"""Check what `sam build` packages against what the sandbox runs the Lambdas with (`make layer-check`).

1. The layer: the distributions `sam build` installed into each Python layer
   (``.aws-sam/build/<LayerLogicalId>/python/*.dist-info``) must be those of the sandbox's
   Lambda-like environment (``sandbox.lambda_env``), by name and version. Only names and
   versions are compared: sam builds arm64 wheels, the sandbox installs the host's.
2. The layer does not shadow the runtime's SDK (boto3 and its dependencies) with another version.
3. Every function of ``template.yaml`` imports its handler on Python 3.13 run with ``-I -S``
   and only its code, the layer and the runtime's SDK on ``sys.path``, with the environment
   variables Lambda sets and those the template gives it. Intrinsic functions in the template
   are resolved as for a stack deployed with its default parameters; references to resources
   become placeholder names and ARNs.

Usage: ``python -m tools.check_lambda_package [--template template.yaml] [--build-dir .aws-sam/build]``.
Exits 1 and lists every difference and import error when something is wrong.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sandbox.lambda_env import LambdaEnvironment, LambdaEnvironmentError, ensure_environment, installed

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "mlpublish"
PSEUDO_PARAMETERS = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/placeholder",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
LAYER_TYPES = ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")
IMPORT_TIMEOUT = 120


# --- template.yaml -------------------------------------------------------------------


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags, read into their long forms ({"Fn::Sub": ...})."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    document = yaml.load(path.read_text(), Loader=_TemplateLoader)  # nosec B506  # a SafeLoader plus CloudFormation tags
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return document


class Placeholders:
    """Values for the template's intrinsic functions, as for a stack deployed with its defaults."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.parameters = template.get("Parameters") or {}
        self.conditions = template.get("Conditions") or {}
        self.resources = template.get("Resources") or {}

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(item) for key, item in value.items()}
        ((key, argument),) = value.items()
        if key == "Ref":
            return self.ref(argument)
        if key == "Fn::GetAtt":
            return self.get_att(*argument)
        if key == "Fn::Sub":
            return self.sub(argument)
        if key == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false)
        if key == "Fn::Join":
            separator, items = argument
            return str(separator).join(str(item) for item in self.resolve(items))
        if key == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(self.resolve(index))]
        if key == "Fn::Split":
            separator, text = argument
            return str(self.resolve(text)).split(separator)
        if key.startswith("Fn::"):
            return f"placeholder-{key.removeprefix('Fn::').lower()}"
        return {key: self.resolve(argument)}

    def ref(self, name: str) -> str:
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self.parameters:
            default = self.parameters[name].get("Default", f"placeholder-{name}")
            return _text(default)
        kind = self.resources.get(name, {}).get("Type", "")
        if kind in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STACK}-{name}"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{STACK}-{name}"
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{STACK}-{name}"
        return f"{STACK}-{name}".lower()

    def get_att(self, name: str, attribute: str) -> str:
        kind = self.resources.get(name, {}).get("Type", "")
        if attribute == "Arn":
            if kind == "AWS::IAM::Role":
                return f"arn:aws:iam::{ACCOUNT}:role/{STACK}-{name}"
            service = {"Serverless": "lambda", "StepFunctions": "states"}.get(kind.split("::")[1], "")
            return f"arn:aws:{service or kind.split('::')[1].lower()}:{REGION}:{ACCOUNT}:{STACK}-{name}"
        if attribute in ("Name", "QueueName", "TopicName"):
            return f"{STACK}-{name}"
        return f"placeholder-{name}-{attribute}".lower()

    def sub(self, argument: str | list[Any]) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])

        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in variables:
                return _text(self.resolve(variables[expression]))
            if "." in expression and expression not in self.parameters:
                return self.get_att(*expression.split(".", 1))
            return self.ref(expression)

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def condition(self, value: Any) -> bool:
        if isinstance(value, str):
            return self.condition(self.conditions[value])
        if isinstance(value, bool):
            return value
        ((key, argument),) = value.items()
        if key == "Condition":
            return self.condition(argument)
        if key == "Fn::Equals":
            left, right = (_text(self.resolve(item)) for item in argument)
            return left == right
        if key == "Fn::Not":
            return not self.condition(argument[0])
        if key == "Fn::And":
            return all(self.condition(item) for item in argument)
        if key == "Fn::Or":
            return any(self.condition(item) for item in argument)
        raise ValueError(f"unsupported condition {key}")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Function:
    logical_id: str
    code_dir: Path
    module: str
    attribute: str
    environment: dict[str, str]


def functions(template: dict[str, Any], root: Path = ROOT) -> list[Function]:
    """Every Lambda function in the template: its code, handler and environment variables."""
    placeholders = Placeholders(template)
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    found = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") not in FUNCTION_TYPES:
            continue
        properties = resource.get("Properties") or {}
        if resource["Type"] == "AWS::Serverless::Function":
            properties = merge_globals(globals_, properties)
        code = properties.get("CodeUri") or properties.get("Code")
        handler = properties.get("Handler")
        if not isinstance(code, str) or not isinstance(handler, str):
            continue  # inline code or an image: nothing sam builds from this repository
        module, _, attribute = handler.rpartition(".")
        environment = lambda_environment(logical_id, properties, placeholders)
        found.append(Function(logical_id, root / code, module.replace("/", "."), attribute, environment))
    return found


def merge_globals(globals_: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """SAM's Globals: maps are merged (the function's keys win), anything else the function's replaces."""
    merged = dict(globals_)
    for key, value in own.items():
        both_maps = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge_globals(merged[key], value) if both_maps else value
    return merged


def lambda_environment(logical_id: str, properties: dict[str, Any], placeholders: Placeholders) -> dict[str, str]:
    """What the function's process sees: Lambda's own variables and the template's."""
    environment = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": f"{STACK}-{logical_id}",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": _text(placeholders.resolve(properties.get("MemorySize", 128))),
        # credentials that reach nothing: importing a handler must not call AWS
        "AWS_ACCESS_KEY_ID": "placeholder",
        "AWS_SECRET_ACCESS_KEY": "placeholder",  # nosec B105  # a dummy that reaches nothing (see above)
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
    }
    logging = placeholders.resolve(properties.get("LoggingConfig") or {})
    if logging.get("LogFormat") == "JSON":
        environment["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        environment["AWS_LAMBDA_LOG_LEVEL"] = _text(logging.get("ApplicationLogLevel", "INFO"))
    for name, value in ((properties.get("Environment") or {}).get("Variables") or {}).items():
        resolved = placeholders.resolve(value)
        if resolved is not None:
            environment[name] = _text(resolved)
    return environment


# --- the checks ----------------------------------------------------------------------


def dist_infos(directory: Path) -> dict[str, str]:
    """Distribution name (PEP 503) -> version, from the *.dist-info directories pip or sam left."""
    return installed(directory)


def compare_packages(built: dict[str, str], expected: dict[str, str]) -> list[str]:
    """Differences between two name -> version maps, one line each, as `sam build` vs the sandbox."""
    differences = []
    for name in sorted(built.keys() | expected.keys()):
        if name not in expected:
            differences.append(f"{name} {built[name]}: in the layer sam built, not in the sandbox's")
        elif name not in built:
            differences.append(f"{name} {expected[name]}: in the sandbox's layer, not in the one sam built")
        elif built[name] != expected[name]:
            differences.append(f"{name}: sam built {built[name]}, the sandbox has {expected[name]}")
    return differences


def check_layers(template: dict[str, Any], build_dir: Path, env: LambdaEnvironment, root: Path = ROOT) -> list[str]:
    """The layers sam built against the sandbox's; root is the template's directory."""
    problems = []
    layers = {
        logical_id: resource
        for logical_id, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") in LAYER_TYPES
        and str((resource.get("Metadata") or {}).get("BuildMethod", "")).startswith("python")
    }
    if not layers:
        problems.append("template.yaml has no Python layer built by sam; the sandbox expects one")
    for logical_id, resource in layers.items():
        content = (resource.get("Properties") or {}).get("ContentUri", "")
        if (root / str(content)).resolve() != env.layer_code_dir.resolve():
            problems.append(
                f"layer {logical_id} ({content}): the sandbox's Lambda environment is built from "
                f"{env.layer_code_dir.relative_to(ROOT)} only"
            )
            continue
        built_dir = build_dir / logical_id / "python"
        if not built_dir.is_dir():
            problems.append(f"layer {logical_id}: {built_dir} does not exist; run `make build` first")
            continue
        for difference in compare_packages(dist_infos(built_dir), env.layer_packages()):
            problems.append(f"layer {logical_id}: {difference}")
    runtime = env.runtime_packages()
    for name, version in sorted(env.layer_packages().items()):
        if name in runtime and runtime[name] != version:
            problems.append(
                f"the layer's {name} {version} shadows the runtime's {name} {runtime[name]} "
                f"(requirements/lambda-runtime.txt): pin the runtime's version in layers/publishing/requirements.txt"
            )
    return problems


# Run by the Lambda-like interpreter: -I -S, so sys.path holds the standard library only.
_IMPORT_HANDLER = """
import importlib, os, sys
paths, module, attribute = sys.argv[1].split(os.pathsep), sys.argv[2], sys.argv[3]
sys.path[:0] = paths
handler = getattr(importlib.import_module(module), attribute)
if not callable(handler):
    raise TypeError(f"{module}.{attribute} is not callable")
"""


def import_error(function: Function, env: LambdaEnvironment) -> str | None:
    """None if the handler imports as on Lambda, else the exception and the end of its traceback."""
    if not function.code_dir.is_dir():
        return f"CodeUri {function.code_dir} does not exist"
    command = [
        str(env.python), "-I", "-S", "-X", "no_debug_ranges", "-c", _IMPORT_HANDLER,
        os.pathsep.join(env.sys_path(function.code_dir)), function.module, function.attribute,
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command,
            env=function.environment,
            cwd=function.code_dir,
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"importing took more than {IMPORT_TIMEOUT} s"
    if result.returncode == 0:
        return None
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    if not lines:
        return f"exit code {result.returncode}"
    # the exception first, then where it was raised
    return "\n".join([lines[-1], *lines[-9:-1]])


def check_handlers(template: dict[str, Any], env: LambdaEnvironment, root: Path = ROOT) -> Iterator[str]:
    for function in functions(template, root):
        error = import_error(function, env)
        if error:
            handler = f"{function.module}.{function.attribute}"
            where = os.path.relpath(function.code_dir, root)
            yield f"{function.logical_id} ({where}, {handler}) does not import:\n    " + error.replace("\n", "\n    ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    args = parser.parse_args(argv)

    template = load_template(args.template)
    try:
        env = ensure_environment()
    except LambdaEnvironmentError as exc:
        print(f"layer-check: {exc}", file=sys.stderr)
        return 1
    root = args.template.resolve().parent
    problems = check_layers(template, args.build_dir, env, root)
    handler_count = len(functions(template, root))
    problems += check_handlers(template, env, root)
    if problems:
        print(f"layer-check: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(
        f"layer-check: the layer sam built has the sandbox's {len(env.layer_packages())} packages; "
        f"{handler_count} handlers import on Python {env.python.name.removeprefix('python')} "
        "with only their code, the layer and the runtime's SDK"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

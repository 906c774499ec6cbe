"""Deploy the real template.yaml into moto's CloudFormation, as `sam deploy` would.

The SAM template is translated with aws-sam-translator (the library `sam` itself uses) and
created as a CloudFormation stack in moto. Two gaps of moto's CloudFormation are filled
from the template's own properties, so the deployed system is the one the template says:

* local ``CodeUri``/``ContentUri``/``DefinitionUri`` are what ``sam build``/``sam package``
  turn into S3 locations; here they point at small placeholder zips, and the sandbox's
  Lambda workers run the code from the directory the template names;
* moto's S3 bucket ignores ``NotificationConfiguration``; it is applied through the S3 API;
* moto's CloudFormation skips ``AWS::Events::EventBusPolicy``; each one (its condition and
  intrinsics resolved by CloudFormation itself, through a stack output) is put on its bus
  through the EventBridge API;
* moto creates CloudFormation state machines in a backend that does not execute, and does
  not apply ``DefinitionSubstitutions``; each substitution is added to the stack as an
  output (so CloudFormation itself resolves it), substituted into the definition, and the
  state machine is created again, under the same name and so the same ARN, through the
  Step Functions API.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import os
import shlex
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest.mock import patch

import boto3
import yaml

CODE_BUCKET = "sandbox-deployment-artifacts"


class StackConfigError(ValueError):
    """samconfig.toml or a parameter override cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class DeployConfig:
    """What ``sam deploy --config-env ENV [--parameter-overrides ...]`` would deploy."""

    config_env: str
    stack_name: str
    parameters: dict[str, str]


def parse_parameter_overrides(text: str) -> dict[str, str]:
    """``Key=Value Key2="a value"`` (samconfig's and ``sam deploy``'s form) as a dict."""
    parameters = {}
    for item in shlex.split(text):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StackConfigError(f"parameter override {item!r}: write it as Key=Value")
        parameters[key] = value
    return parameters


def read_samconfig(path: Path, config_env: str, overrides: dict[str, str] | None = None) -> DeployConfig:
    """The stack name and parameters of one samconfig.toml environment, then ``overrides``."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StackConfigError(f"{path}: {exc}") from exc
    if config_env not in document:
        environments = ", ".join(key for key, value in document.items() if isinstance(value, dict))
        raise StackConfigError(
            f"--config-env {config_env}: {path.name} has no such environment; use one of {environments}"
        )
    section = document[config_env]
    deploy_params = section.get("deploy", {}).get("parameters", {})
    global_params = section.get("global", {}).get("parameters", {})
    stack_name = deploy_params.get("stack_name") or global_params.get("stack_name") or "mlpublish"
    parameters = parse_parameter_overrides(str(deploy_params.get("parameter_overrides", "")))
    parameters.update(overrides or {})
    return DeployConfig(config_env, str(stack_name), parameters)


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # libyaml's, when built with it
    """YAML loader that understands CloudFormation short-form tags (!Ref, !Sub, ...)."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    document = yaml.load(path.read_text(), Loader=_CfnLoader)  # nosec B506  # _CfnLoader is a SafeLoader
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return document


@dataclass
class DeployedStack:
    name: str
    region: str
    account_id: str
    parameters: dict[str, str]  # every template parameter, defaults included
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id
    code_dirs: dict[str, Path] = field(default_factory=dict)  # function name -> code directory
    short_names: dict[str, str] = field(default_factory=dict)  # function name -> CopyBlob, Trigger, ...
    state_machine_arn: str = ""


class _NoManagedPolicies:
    """samtranslator asks for AWS managed policy ARNs; the template uses none by name."""

    def load(self) -> dict[str, str]:
        return {}


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "The sandbox runs this function's code from its CodeUri in a Lambda worker.\n")
    return buffer.getvalue()


def _prepare(template: dict[str, Any], root: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Replace local code/definition paths with what sam package would produce."""
    code_dirs: dict[str, Path] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        kind = resource.get("Type")
        if kind == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            code_dirs[logical_id] = (root / props["CodeUri"]).resolve()
            props["CodeUri"] = f"s3://{CODE_BUCKET}/{logical_id}.zip"
        elif kind == "AWS::Serverless::LayerVersion" and isinstance(props.get("ContentUri"), str):
            props["ContentUri"] = f"s3://{CODE_BUCKET}/{logical_id}.zip"
        elif kind == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            props["Definition"] = json.loads((root / props.pop("DefinitionUri")).read_text())
    return template, code_dirs


def translate(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """The template as SAM translates it (a copy of its own: the caller may change it)."""
    # samtranslator reads the region from the environment (boto3's default session)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return copy.deepcopy(
        _translated(json.dumps(template, sort_keys=True), json.dumps(parameters, sort_keys=True), region)
    )


@functools.lru_cache(maxsize=16)
def _translated(template: str, parameters: str, region: str | None) -> dict[str, Any]:
    """Translating is deterministic and takes most of a second: once per template, parameters and region."""
    from samtranslator.translator.transform import transform

    translated: dict[str, Any] = transform(json.loads(template), json.loads(parameters), _NoManagedPolicies())
    return translated


@contextmanager
def _json_templates() -> Iterator[None]:
    """moto reads every TemplateBody with PyYAML's pure-Python loader (a second for this stack's);
    a JSON body (JSON is YAML) is read with ``json`` instead, to the same document."""
    from moto.cloudformation.models import Stack

    original = Stack.parse_template

    def parse_template(template: str) -> dict[str, Any]:
        try:
            document = json.loads(template)
        except ValueError:
            return original(template)
        return document if isinstance(document, dict) else original(template)

    with patch.object(Stack, "parse_template", staticmethod(parse_template)):
        yield


def deploy(
    root: Path,
    *,
    region: str,
    account_id: str,
    stack_name: str = "mlpublish",
    parameters: dict[str, str] | None = None,
) -> DeployedStack:
    """Create the stack from ``root/template.yaml`` (moto must be active, and the default
    credentials those of ``account_id``)."""
    parameters = parameters or {}
    template, code_dirs = _prepare(load_template(root / "template.yaml"), root)
    declared = template.get("Parameters", {})
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise StackConfigError(
            f"parameter(s) {', '.join(unknown)} are not in template.yaml; it declares {', '.join(declared)}"
        )
    for key, value in parameters.items():
        allowed = declared[key].get("AllowedValues")
        if allowed and value not in [str(item) for item in allowed]:
            raise StackConfigError(f"parameter {key}={value}: allowed values are {', '.join(map(str, allowed))}")
    translated = translate(template, parameters)
    substitutions = _expose_substitutions(translated)
    _expose_bus_policies(translated)

    s3 = boto3.client("s3", region_name=region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=CODE_BUCKET)
    else:
        s3.create_bucket(Bucket=CODE_BUCKET, CreateBucketConfiguration={"LocationConstraint": region})
    placeholder = _placeholder_zip()
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] in {"AWS::Serverless::Function", "AWS::Serverless::LayerVersion"}:
            s3.put_object(Bucket=CODE_BUCKET, Key=f"{logical_id}.zip", Body=placeholder)

    cfn = boto3.client("cloudformation", region_name=region)
    with _json_templates():
        cfn.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(translated),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(f"sandbox stack {stack_name} is {stack['StackStatus']}: {stack.get('StackStatusReason')}")
    resources = {
        item["LogicalResourceId"]: item["PhysicalResourceId"]
        for item in cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    }
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
    public_outputs = {
        key: value for key, value in outputs.items() if not key.startswith((_SUBST_OUTPUT, _BUS_POLICY_OUTPUT))
    }
    deployed = DeployedStack(
        name=stack_name,
        region=region,
        account_id=account_id,
        parameters={key: str(spec.get("Default", "")) for key, spec in declared.items()} | parameters,
        outputs=public_outputs,
        resources=resources,
        code_dirs={_function_name(resources[logical]): path for logical, path in code_dirs.items()},
        short_names={_function_name(resources[logical]): logical.removesuffix("Function") for logical in code_dirs},
    )
    _apply_bucket_notifications(s3, translated, resources)
    _apply_bus_policies(boto3.client("events", region_name=region), outputs)
    deployed.state_machine_arn = _recreate_state_machines(
        translated, resources, outputs, substitutions, region, account_id
    )
    return deployed


def _function_name(physical_id: str) -> str:
    return physical_id.rsplit(":", 1)[-1] if physical_id.startswith("arn:") else physical_id


def _apply_bucket_notifications(s3: Any, translated: dict[str, Any], resources: dict[str, str]) -> None:
    for logical_id, resource in translated["Resources"].items():
        config = resource.get("Properties", {}).get("NotificationConfiguration")
        if resource["Type"] == "AWS::S3::Bucket" and config and "EventBridgeConfiguration" in config:
            s3.put_bucket_notification_configuration(
                Bucket=resources[logical_id],
                NotificationConfiguration={"EventBridgeConfiguration": {}},
            )


_BUS_POLICY_OUTPUT = "SandboxEventBusPolicy"


def _expose_bus_policies(translated: dict[str, Any]) -> None:
    """Add each EventBusPolicy's properties, as JSON, as a stack output under the resource's condition."""
    outputs = translated.setdefault("Outputs", {})
    for logical_id, resource in translated["Resources"].items():
        if resource["Type"] != "AWS::Events::EventBusPolicy":
            continue
        output: dict[str, Any] = {"Value": {"Fn::ToJsonString": resource["Properties"]}}
        if "Condition" in resource:
            output["Condition"] = resource["Condition"]
        outputs[f"{_BUS_POLICY_OUTPUT}{logical_id}"] = output


def _apply_bus_policies(events: Any, outputs: dict[str, str]) -> None:
    for name, value in outputs.items():
        if not name.startswith(_BUS_POLICY_OUTPUT):
            continue
        properties = json.loads(value)
        statement = {"Sid": properties["StatementId"], **properties["Statement"]}
        events.put_permission(
            EventBusName=properties.get("EventBusName", "default"),
            Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
        )


_SUBST_OUTPUT = "SandboxSubstitution"


def _expose_substitutions(translated: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Add every DefinitionSubstitutions value as a stack output; returns key -> output name."""
    exposed: dict[str, dict[str, str]] = {}
    outputs = translated.setdefault("Outputs", {})
    for logical_id, resource in translated["Resources"].items():
        if resource["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        names = {}
        for index, (key, value) in enumerate(resource["Properties"].get("DefinitionSubstitutions", {}).items()):
            name = f"{_SUBST_OUTPUT}{logical_id}{index}"
            outputs[name] = {"Value": value}
            names[key] = name
        exposed[logical_id] = names
    return exposed


def _recreate_state_machines(
    translated: dict[str, Any],
    resources: dict[str, str],
    outputs: dict[str, str],
    substitutions: dict[str, dict[str, str]],
    region: str,
    account_id: str,
) -> str:
    """Create each CloudFormation state machine again where moto executes it; same ARN."""
    from moto.stepfunctions.models import stepfunctions_backends

    cfn_backend = stepfunctions_backends[account_id][region]
    sfn = boto3.client("stepfunctions", region_name=region)
    arn = ""
    for logical_id, resource in translated["Resources"].items():
        if resource["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        created = cfn_backend.describe_state_machine(resources[logical_id])
        definition = created.definition
        for key, output in substitutions[logical_id].items():
            definition = definition.replace("${" + key + "}", outputs[output])
        arn = sfn.create_state_machine(
            name=created.name,
            definition=definition,
            roleArn=created.roleArn,
            type=resource["Properties"].get("StateMachineType", "STANDARD"),
        )["stateMachineArn"]
        if arn != created.arn:
            raise RuntimeError(f"state machine ARN changed when recreated: {created.arn} -> {arn}")
    return arn

"""Requests to the sandbox's own SageMaker operations, refused as the SageMaker service refuses them.

boto3 validates a request before sending it, but only partly (required members, types,
minimum lengths: no maximum, enum or pattern) and only when the client was made with
``parameter_validation`` on; SageMaker itself checks every constraint of its model. So the
operations the sandbox serves itself check each request here, server-side, against
botocore's SageMaker service model:

* every constraint of the operation's input shape (required, length and count limits,
  numeric ranges, enums, patterns), reported in the format AWS's JSON services use
  (``1 validation error detected: Value '…' at 'validationSpecification.validationRole'
  failed to satisfy constraint: Member must satisfy regular expression pattern: …``; that
  format, with lower-camel member paths, is what SageMaker answered for a bad ValidationRole
  in aws/amazon-sagemaker-examples#4843; list items as ``.1.member`` is the format of AWS's
  JSON services generally, not seen for SageMaker specifically);
* then ``botocore.validate.ParamValidator`` (types, unknown members);
* then, for CreateAlgorithm, the rules SageMaker documents beyond the shapes (see
  :func:`check_create_algorithm`).

Patterns are Java regular expressions (``\\p{L}``, look-behinds): they are matched whole with
the ``regex`` package, which reads them as Java does.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator, Mapping
from typing import Any

import botocore.session
from botocore.model import Shape, StructureShape
from botocore.validate import ParamValidator
from moto.sagemaker.exceptions import ValidationError

# ``regex`` ships no type information; it is pinned in requirements/dev.txt.
_regex: Any = importlib.import_module("regex")


@functools.cache
def _service_model() -> Any:
    return botocore.session.get_session().get_service_model("sagemaker")


@functools.cache
def _pattern(pattern: str) -> Any:
    return _regex.compile(pattern)


def input_shape(operation: str) -> StructureShape:
    """The input shape of a SageMaker operation in botocore's model."""
    shape: StructureShape = _service_model().operation_model(operation).input_shape
    return shape


def output_shape(operation: str) -> StructureShape:
    """The output shape of a SageMaker operation in botocore's model."""
    shape: StructureShape = _service_model().operation_model(operation).output_shape
    return shape


def enum_of(shape_name: str) -> list[str]:
    """The values of an enum shape (e.g. ``TrainingInstanceType``) in botocore's model."""
    return list(_service_model().shape_for(shape_name).enum)


def check_request(operation: str, params: Mapping[str, Any]) -> None:
    """Raise ValidationException as SageMaker does when ``params`` break the operation's input shape."""
    shape = input_shape(operation)
    errors = list(constraint_errors(params, shape))
    if errors:
        count = f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} detected: "
        raise ValidationError(count + "; ".join(errors))
    report = ParamValidator().validate(dict(params), shape)
    if report.has_errors():
        raise ValidationError(report.generate_report())


def constraint_errors(value: Any, shape: Shape, path: str = "", *, patterns: bool = True) -> Iterator[str]:
    """Every constraint of ``shape`` that ``value`` breaks, as AWS words it (``path`` in lower camel case).

    ``patterns=False`` leaves out the modeled patterns, for a model whose patterns the service
    itself does not apply (marketplace-catalog's EntityType ``^[a-zA-Z]+$`` would refuse
    ``MachineLearningProduct@1.0``)."""
    metadata = shape.metadata
    if shape.type_name == "structure" and isinstance(value, Mapping):
        assert isinstance(shape, StructureShape)
        for name, member in shape.members.items():
            member_path = f"{path}.{_camel(name)}" if path else _camel(name)
            if value.get(name) is None:
                if name in shape.required_members:
                    yield f"Value null at '{member_path}' failed to satisfy constraint: Member must not be null"
                continue
            yield from constraint_errors(value[name], member, member_path, patterns=patterns)
        return
    if shape.type_name in ("string", "list", "map") and isinstance(value, str | list | Mapping):
        yield from _limits(value, len(value), metadata, path, "length")
    elif shape.type_name in ("integer", "long", "float", "double") and isinstance(value, int | float):
        yield from _limits(value, value, metadata, path, "value")
    if shape.type_name == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            yield _message(value, path, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        elif patterns and "pattern" in metadata and not _pattern(metadata["pattern"]).fullmatch(value):
            yield _message(value, path, f"Member must satisfy regular expression pattern: {metadata['pattern']}")
    elif shape.type_name == "list" and isinstance(value, list):
        for index, item in enumerate(value, start=1):
            if item is not None:
                yield from constraint_errors(item, shape.member, f"{path}.{index}.member", patterns=patterns)
    elif shape.type_name == "map" and isinstance(value, Mapping):
        for key, item in value.items():
            yield from constraint_errors(key, shape.key, f"{path}.{key}.key", patterns=patterns)
            if item is not None:
                yield from constraint_errors(item, shape.value, f"{path}.{key}.value", patterns=patterns)


def _limits(value: Any, measure: float, metadata: Mapping[str, Any], path: str, what: str) -> Iterator[str]:
    if "min" in metadata and measure < metadata["min"]:
        yield _message(value, path, f"Member must have {what} greater than or equal to {metadata['min']}")
    if "max" in metadata and measure > metadata["max"]:
        yield _message(value, path, f"Member must have {what} less than or equal to {metadata['max']}")


def _message(value: Any, path: str, constraint: str) -> str:
    return f"Value '{_render(value)}' at '{path}' failed to satisfy constraint: {constraint}"


def _render(value: Any) -> str:
    """A value as AWS's Java services print it in a validation message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_render(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {_render(item)}" for key, item in value.items()) + "}"
    return str(value)


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


# ------------------------------------------------------------------ CreateAlgorithm


def check_create_algorithm(params: Mapping[str, Any]) -> None:
    """CreateAlgorithm's shape, then what SageMaker documents beyond it.

    Beyond the shape (which already makes AlgorithmName 1–63 ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``,
    exactly one validation profile, 1–8 TrainingChannels, at most 100 SupportedHyperParameters
    and 40 MetricDefinitions, and the ValidationRole an IAM role ARN):

    * ``CertifyForMarketplace`` needs a ValidationSpecification: Marketplace lists only an
      algorithm SageMaker has validated (seller guide); the API reference does not say
      whether CreateAlgorithm refuses it or validation fails later, the sandbox refuses it;
    * the profile's TrainingJobDefinition instance type is one of the
      SupportedTrainingInstanceTypes, and its TransformJobDefinition's one of the
      InferenceSpecification's SupportedTransformInstanceTypes (SageMaker runs the
      validation jobs on them);
    * its StoppingCondition has no ``MaxWaitTimeInSeconds``: that is for managed spot training,
      which a TrainingJobDefinition cannot ask for (no EnableManagedSpotTraining); SageMaker
      refuses it elsewhere with "Invalid MaxWaitTimeInSeconds. It is only supported when
      EnableManagedSpotTraining is set to true" (reported for CreateTrainingJob).

    How SageMaker words these refusals is not documented: the messages are the sandbox's.
    """
    check_request("CreateAlgorithm", params)
    validation = params.get("ValidationSpecification")
    if params.get("CertifyForMarketplace") and not validation:
        raise ValidationError("ValidationSpecification is required when CertifyForMarketplace is true.")
    if not validation:
        return
    training_types = params["TrainingSpecification"]["SupportedTrainingInstanceTypes"]
    transform_types = (params.get("InferenceSpecification") or {}).get("SupportedTransformInstanceTypes") or []
    for profile in validation["ValidationProfiles"]:
        name = profile["ProfileName"]
        training = profile["TrainingJobDefinition"]["ResourceConfig"].get("InstanceType")
        if training is None:
            raise ValidationError(
                f"Validation profile {name}: TrainingJobDefinition.ResourceConfig needs an InstanceType."
            )
        if training not in training_types:
            raise ValidationError(
                f"Validation profile {name}: training instance type {training} is not one of the algorithm's "
                f"SupportedTrainingInstanceTypes [{', '.join(training_types)}]."
            )
        if "MaxWaitTimeInSeconds" in profile["TrainingJobDefinition"].get("StoppingCondition", {}):
            raise ValidationError(
                "Invalid MaxWaitTimeInSeconds. It is only supported when EnableManagedSpotTraining is set to true"
            )
        transform_job = profile.get("TransformJobDefinition")
        if transform_job is None:
            continue
        if not params.get("InferenceSpecification"):
            raise ValidationError(
                f"Validation profile {name}: a TransformJobDefinition needs the algorithm's InferenceSpecification."
            )
        transform = transform_job["TransformResources"]["InstanceType"]
        if transform not in transform_types:
            raise ValidationError(
                f"Validation profile {name}: transform instance type {transform} is not one of the "
                f"InferenceSpecification's SupportedTransformInstanceTypes [{', '.join(transform_types)}]."
            )

"""The release specification: what a seller writes once per product (YAML or JSON).

One file describes one product version. ``kind`` selects what is published: a
``model_package`` (1–15 inference containers and their model data) or an ``algorithm`` (a
``training`` section: the training image, its channels, hyperparameters and metrics; the
inference containers serve what training makes; validation trains, then transforms). The
shape has room for model packages built from an algorithm (``source_algorithm``) without
renaming anything a seller has written.

Validation errors carry the field path and the reason, e.g.
``containers.0.image: must be an ECR image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG)``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mlpublish.errors import InvalidRelease

ECR_IMAGE_RE = re.compile(
    r"^(?P<registry>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
S3_URI_RE = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)$")
PRODUCT_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")
ENV_KEY_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _schema_pattern(regex: re.Pattern[str]) -> str:
    """A validator's regex as a JSON Schema ``pattern`` (ECMA-262, which has no ``(?P<name>``)."""
    return re.sub(r"\(\?P<\w+>", "(", regex.pattern)


def _also_written_as(*types: str) -> Callable[[dict[str, Any]], None]:
    """A text field YAML may give as another scalar the validator turns into text (``2`` -> "2"):
    the JSON Schema takes those types too."""

    def extend(schema: dict[str, Any]) -> None:
        for branch in (schema, *schema.get("anyOf", []), schema.get("additionalProperties")):
            if isinstance(branch, dict) and branch.get("type") == "string":
                branch["type"] = ["string", *types]

    return extend


def _instance_types_schema(shape: str) -> Callable[[dict[str, Any]], None]:
    """The instance types botocore knows, as the JSON Schema's enum (read only when it is generated)."""

    def extend(schema: dict[str, Any]) -> None:
        (schema["items"] if schema.get("type") == "array" else schema)["enum"] = sorted(_instance_type_enum(shape))

    return extend


class _Spec(BaseModel):
    # Built on first use, as the state models are (mlpublish.state): most handlers never parse a spec.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, defer_build=True)


class ImageRef(BaseModel):
    """An ECR image reference split into its parts."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    registry_id: str
    region: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ImageRef:
        match = ECR_IMAGE_RE.match(uri)
        if match is None:
            raise ValueError(
                "must be an ECR image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG or REPO@sha256:DIGEST)"
            )
        return cls(
            registry_id=match["registry"],
            region=match["region"],
            repository=match["repository"],
            tag=match["tag"],
            digest=match["digest"],
        )

    @property
    def host(self) -> str:
        return f"{self.registry_id}.dkr.ecr.{self.region}.amazonaws.com"

    @property
    def reference(self) -> str:
        """The digest if pinned, else the tag (``latest`` when neither is given)."""
        return self.digest or self.tag or "latest"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    match = S3_URI_RE.match(uri)
    if match is None:
        raise ValueError("must be an S3 object URI: s3://BUCKET/KEY")
    return match["bucket"], match["key"]


def _check_s3_uri(value: str) -> str:
    parse_s3_uri(value)
    return value


S3Uri = Annotated[str, Field(min_length=6, max_length=1024, json_schema_extra={"pattern": _schema_pattern(S3_URI_RE)})]
ProductKind = Literal["model_package", "algorithm"]


class Product(_Spec):
    name: str = Field(
        min_length=1,
        max_length=40,
        description="Lower-case product slug; part of every resource name.",
        json_schema_extra={"pattern": PRODUCT_NAME_RE.pattern},
    )
    version: str = Field(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        json_schema_extra=_also_written_as("integer"),
    )
    kind: ProductKind = "model_package"
    description: str = Field(default="", max_length=1024, description="SageMaker ModelPackageDescription")

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, value: str) -> str:
        if not PRODUCT_NAME_RE.match(value):
            raise ValueError(
                "must be lower-case letters, digits and hyphens, starting and ending with a letter or digit "
                "(e.g. acme-sentiment)"
            )
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        # YAML reads `version: 1.10` as the number 1.1: the text the seller wrote is lost, so
        # a float is refused rather than guessed. An integer keeps its digits (2 -> "2").
        if isinstance(value, float):
            raise ValueError(
                'write the version in quotes (version: "1.10"): YAML reads 1.10 as the number 1.1, '
                f"and read this one as the number {value!r}"
            )
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("description")
    @classmethod
    def _description_is_one_line(cls, value: str) -> str:
        # SageMaker's ModelPackageDescription pattern, [\p{L}\p{M}\p{Z}\p{S}\p{N}\p{P}]*, leaves
        # out exactly the "other" categories (C*): line breaks, tabs and other control or
        # format characters. Refused here, not hours later by CreateModelPackage.
        for index, char in enumerate(value):
            if unicodedata.category(char).startswith("C"):
                raise ValueError(
                    f"contains {_character_name(char)} at character {index + 1}, which SageMaker does not "
                    "accept in a description; use a single line (YAML `>` folds lines into one)"
                )
        return value


def _character_name(char: str) -> str:
    named = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab"}
    if char in named:
        return named[char]
    unicode_name = unicodedata.name(char, "")
    return f"the character U+{ord(char):04X}" + (f" ({unicode_name})" if unicode_name else "")


class Container(_Spec):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    image: str = Field(
        description="Source image in the seller's ECR: REPO:TAG or REPO@DIGEST.",
        json_schema_extra={"pattern": _schema_pattern(ECR_IMAGE_RE)},
    )
    platform: str = Field(
        default="linux/amd64",
        description="Platform taken from an image index.",
        json_schema_extra={"pattern": PLATFORM_RE.pattern},
    )
    model_data: S3Uri | None = Field(default=None, description="s3:// URI of model.tar.gz.")
    environment: dict[str, str] = Field(
        default_factory=dict,
        max_length=16,
        json_schema_extra={
            "propertyNames": {"pattern": ENV_KEY_RE.pattern},
            "additionalProperties": {"type": "string", "maxLength": 1024},
        },
    )

    @field_validator("image")
    @classmethod
    def _image_is_ecr(cls, value: str) -> str:
        ImageRef.parse(value)
        return value

    @field_validator("platform")
    @classmethod
    def _platform_shape(cls, value: str) -> str:
        if not PLATFORM_RE.match(value):
            raise ValueError("must be OS/ARCH[/VARIANT], e.g. linux/amd64")
        return value

    @field_validator("model_data")
    @classmethod
    def _model_data_uri(cls, value: str | None) -> str | None:
        return None if value is None else _check_s3_uri(value)

    @field_validator("environment")
    @classmethod
    def _environment_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not ENV_KEY_RE.match(key):
                raise ValueError(f"variable name {key!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
            if len(item) > 1024:
                raise ValueError(f"value of {key} is longer than 1024 characters")
        return value

    @property
    def image_ref(self) -> ImageRef:
        return ImageRef.parse(self.image)


class Inference(_Spec):
    content_types: list[str] = Field(min_length=1, description="SupportedContentTypes")
    response_mime_types: list[str] = Field(min_length=1, description="SupportedResponseMIMETypes")
    realtime_instance_types: list[str] = Field(
        min_length=1, json_schema_extra=_instance_types_schema("ProductionVariantInstanceType")
    )
    transform_instance_types: list[str] = Field(
        min_length=1, json_schema_extra=_instance_types_schema("TransformInstanceType")
    )

    @field_validator("realtime_instance_types")
    @classmethod
    def _realtime(cls, value: list[str]) -> list[str]:
        return _known_instance_types(value, "ProductionVariantInstanceType")

    @field_validator("transform_instance_types")
    @classmethod
    def _transform(cls, value: list[str]) -> list[str]:
        return _known_instance_types(value, "TransformInstanceType")


HYPERPARAMETER_TYPES = ("Integer", "Continuous", "Categorical", "FreeText")
InputMode = Literal["File", "Pipe", "FastFile"]
Compression = Literal["None", "Gzip"]


class Channel(_Spec):
    """A training channel the algorithm reads (SageMaker ChannelSpecification)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9.\-_]+$")
    description: str = Field(default="", max_length=1024)
    required: bool = True
    content_types: list[str] = Field(min_length=1, description="SupportedContentTypes, e.g. text/csv")
    compression: list[Compression] = Field(default_factory=lambda: list[Compression](["None"]), min_length=1)
    input_modes: list[InputMode] = Field(default_factory=lambda: list[InputMode](["File"]), min_length=1)


class HyperParameter(_Spec):
    """A hyperparameter the algorithm accepts (SageMaker HyperParameterSpecification).

    Integer and Continuous take ``min`` and ``max``; Categorical takes ``values``; FreeText
    takes neither. ``default`` must lie in the range (or be one of the values).
    """

    name: str = Field(min_length=1, max_length=256)
    type: Literal["Integer", "Continuous", "Categorical", "FreeText"]
    description: str = Field(default="", max_length=1024)
    min: int | float | None = None
    max: int | float | None = None
    values: list[str] | None = Field(default=None, min_length=1, max_length=30)
    default: str | None = Field(default=None, max_length=2500, json_schema_extra=_also_written_as("number", "boolean"))
    tunable: bool = False
    required: bool = False

    @field_validator("default", mode="before")
    @classmethod
    def _default_as_text(cls, value: object) -> object:
        # SageMaker passes every hyperparameter as a string; YAML reads 10 or 0.5 as numbers.
        return _as_text(value)

    @model_validator(mode="after")
    def _consistent(self) -> HyperParameter:
        problems = [*_range_problems(self)]
        if self.default is not None:
            problem = value_problem(self, self.default)
            if problem:
                problems.append(f"default {problem}")
        if self.type == "FreeText" and self.tunable:
            problems.append("a FreeText hyperparameter cannot be tunable (tuning needs a range or values)")
        if problems:
            raise ValueError(f"hyperparameter {self.name}: " + "; ".join(problems))
        return self


def _as_text(value: object) -> object:
    """A YAML number or boolean as the string SageMaker passes (true, 10, 0.5); else unchanged."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, int | float) else value


def _range_problems(parameter: HyperParameter) -> list[str]:
    kind, low, high, values = parameter.type, parameter.min, parameter.max, parameter.values
    if kind in {"Integer", "Continuous"}:
        if low is None or high is None:
            return [f"an {kind} hyperparameter needs min and max"]
        if values is not None:
            return [f"an {kind} hyperparameter takes min and max, not values"]
        if kind == "Integer" and not (float(low).is_integer() and float(high).is_integer()):
            return ["an Integer hyperparameter needs whole-number min and max"]
        if low >= high:
            return [f"min ({low}) must be less than max ({high})"]
        return []
    if low is not None or high is not None:
        return [f"a {kind} hyperparameter takes no min or max"]
    if kind == "Categorical" and not values:
        return ["a Categorical hyperparameter needs values (1-30)"]
    if kind == "FreeText" and values is not None:
        return ["a FreeText hyperparameter takes no values"]
    return []


def value_problem(parameter: HyperParameter, value: str) -> str | None:
    """Why ``value`` is not a valid setting of ``parameter`` (None when it is)."""
    if parameter.type == "Categorical":
        return None if value in (parameter.values or []) else f"{value!r} is not one of {parameter.values}"
    if parameter.type == "FreeText" or parameter.min is None or parameter.max is None:
        return None
    try:
        number = int(value) if parameter.type == "Integer" else float(value)
    except ValueError:
        return f"{value!r} is not {'a whole number' if parameter.type == 'Integer' else 'a number'}"
    if not parameter.min <= number <= parameter.max:
        return f"{value} is outside {parameter.min}..{parameter.max}"
    return None


class Metric(_Spec):
    """A metric training logs and SageMaker parses with ``regex`` (MetricDefinition)."""

    name: str = Field(min_length=1, max_length=255)
    regex: str = Field(min_length=1, max_length=500)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a regular expression ({exc})") from exc
        if pattern.groups < 1:
            raise ValueError("needs a capturing group around the value, e.g. accuracy=([0-9.]+)")
        return value


class Objective(_Spec):
    """A metric hyperparameter tuning may optimise (HyperParameterTuningJobObjective)."""

    metric: str = Field(min_length=1, max_length=255)
    type: Literal["Maximize", "Minimize"]


class Training(_Spec):
    """What an algorithm product trains with (SageMaker TrainingSpecification)."""

    image: str | None = Field(
        default=None,
        description="Training image; omitted: the first container's image trains and serves",
        json_schema_extra={"pattern": _schema_pattern(ECR_IMAGE_RE)},
    )
    instance_types: list[str] = Field(
        min_length=1,
        description="SupportedTrainingInstanceTypes",
        json_schema_extra=_instance_types_schema("TrainingInstanceType"),
    )
    distributed: bool = Field(default=False, description="SupportsDistributedTraining")
    channels: list[Channel] = Field(min_length=1, max_length=8)
    hyperparameters: list[HyperParameter] = Field(default_factory=list, max_length=100)
    metrics: list[Metric] = Field(default_factory=list, max_length=40)
    objectives: list[Objective] = Field(default_factory=list, description="SupportedTuningJobObjectiveMetrics")

    @field_validator("image")
    @classmethod
    def _image_is_ecr(cls, value: str | None) -> str | None:
        if value is not None:
            ImageRef.parse(value)
        return value

    @field_validator("instance_types")
    @classmethod
    def _instance_types(cls, value: list[str]) -> list[str]:
        return _known_instance_types(value, "TrainingInstanceType")

    @field_validator("channels", "hyperparameters", "metrics")
    @classmethod
    def _unique_names(cls, value: list[Any]) -> list[Any]:
        names = [item.name for item in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"names must be unique; repeated: {', '.join(repeated)}")
        return value

    @model_validator(mode="after")
    def _objectives_are_metrics(self) -> Training:
        defined = {metric.name for metric in self.metrics}
        unknown = [objective.metric for objective in self.objectives if objective.metric not in defined]
        if unknown:
            raise ValueError(
                f"objectives name metrics that are not defined: {', '.join(unknown)}; add them to training.metrics "
                "(name and regex) or remove the objective"
            )
        return self

    @property
    def image_ref(self) -> ImageRef | None:
        return ImageRef.parse(self.image) if self.image else None


class TrainingValidation(_Spec):
    """The training job of an algorithm's validation profile (TrainingJobDefinition)."""

    channels: dict[str, S3Uri] = Field(min_length=1, description="Channel name -> s3:// URI of its data")
    instance_type: str = Field(json_schema_extra=_instance_types_schema("TrainingInstanceType"))
    instance_count: int = Field(default=1, ge=1, le=20)
    volume_gb: int = Field(default=30, ge=1, le=16384)
    input_mode: InputMode = "File"
    hyperparameters: dict[str, str] = Field(
        default_factory=dict, max_length=100, json_schema_extra=_also_written_as("number", "boolean")
    )
    max_runtime_seconds: int = Field(default=3600, ge=1, le=28 * 24 * 3600)

    @field_validator("channels")
    @classmethod
    def _channel_uris(cls, value: dict[str, str]) -> dict[str, str]:
        for name, uri in value.items():
            try:
                _check_s3_uri(uri)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from exc
        return value

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _values_as_text(cls, value: object) -> object:
        if isinstance(value, dict):
            return {key: _as_text(item) for key, item in value.items()}
        return value

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        return _known_instance_types([value], "TrainingInstanceType")[0]


class Validation(_Spec):
    """The one validation profile: a batch transform job (after a training job, for an algorithm)."""

    profile_name: str = Field(default="validation", pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    input: S3Uri = Field(description="s3:// URI of the validation input object.")
    content_type: str
    split_type: Literal["None", "Line", "RecordIO", "TFRecord"] = "None"
    compression: Literal["None", "Gzip"] = "None"
    instance_type: str = Field(json_schema_extra=_instance_types_schema("TransformInstanceType"))
    instance_count: int = Field(default=1, ge=1, le=10)
    batch_strategy: Literal["MultiRecord", "SingleRecord"] = "SingleRecord"
    max_payload_mb: int = Field(default=6, ge=1, le=100, description="Marketplace batch limit: 100 MB")
    accept: str | None = None
    timeout_minutes: int = Field(default=720, ge=10, le=7 * 24 * 60)
    training: TrainingValidation | None = Field(
        default=None, description="Algorithms: the training job validation runs first; its model is then transformed"
    )

    @field_validator("input")
    @classmethod
    def _input_uri(cls, value: str) -> str:
        return _check_s3_uri(value)

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        return _known_instance_types([value], "TransformInstanceType")[0]


def _as_section(schema: dict[str, Any]) -> None:
    """A section required but in one case, as JSON Schema shows it: the section, not "or null"."""
    options = schema.pop("anyOf", [])
    schema.pop("default", None)
    schema.update(next((option for option in options if option.get("type") != "null"), {}))


HTTPS_URL_RE = re.compile(r"^https://\S{1,1990}$")
ACCESS_ROLE_RE = re.compile(r"^arn:aws:iam::\d{12}:role(/[A-Za-z0-9_+=,.@-]+)?$")
INSTANCE_TYPE_RE = re.compile(r"^\S{1,24}$")


class ListingSample(_Spec):
    """A sample input or output shown to buyers: text or a URL, for real-time and/or batch use
    (at least one)."""

    realtime_inference_text: str | None = Field(default=None, max_length=10000)
    realtime_inference_url: str | None = Field(default=None, max_length=2000, pattern=r"^https://\S+$")
    batch_transform_text: str | None = Field(default=None, max_length=10000)
    batch_transform_url: str | None = Field(default=None, max_length=2000, pattern=r"^https://\S+$")

    @model_validator(mode="after")
    def _one_at_least(self) -> ListingSample:
        if not any(self.model_dump().values()):
            raise ValueError("give at least one of realtime_inference_text/_url, batch_transform_text/_url")
        return self


class ListingParameter(_Spec):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(min_length=1, max_length=1000)
    constraints: str | None = Field(default=None, min_length=1, max_length=1500)
    required: bool | None = Field(default=None, description="Inputs only")
    always_returned: bool | None = Field(default=None, description="Outputs only")


class ListingData(_Spec):
    description: str = Field(min_length=1, max_length=10000)
    limitations: str | None = Field(default=None, min_length=1, max_length=1000, description="Inputs only")
    sample: ListingSample
    parameters: list[ListingParameter] = Field(default_factory=list, max_length=35)


class RecommendedInstanceTypes(_Spec):
    batch_transform: str = Field(pattern=INSTANCE_TYPE_RE.pattern)
    realtime_inference: str = Field(pattern=INSTANCE_TYPE_RE.pattern)
    training: str | None = Field(default=None, pattern=INSTANCE_TYPE_RE.pattern, description="Algorithms only")


PRICE_RE = re.compile(r"^\d{1,9}(\.\d{1,6})?$")
# A dimension of an ML product's offer: INSTANCE_TYPE.m.i.b (batch transform), .m.i.r (real-time
# inference), .a.t (algorithm training), per instance-hour (API reference "Update pricing terms").
DIMENSION_KEY_RE = re.compile(r"^(?P<type>ml\.\S+?)\.(?P<use>m\.i\.b|m\.i\.r|a\.t)$")
Price = Annotated[
    str,
    BeforeValidator(
        lambda value: str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    ),
    Field(
        pattern=PRICE_RE.pattern,
        json_schema_extra=lambda schema: schema.update(type=["string", "number"], pattern=PRICE_RE.pattern, minimum=0),
    ),
]


class ListingPricing(_Spec):
    """Prices in USD per instance-hour for the dimensions the version adds to the product's
    public offer. Used only for instance types the offer does not price yet; existing prices are
    kept as they are."""

    hourly_price: Price | None = Field(
        default=None, description="USD per instance-hour for every new instance type, each use"
    )
    hourly_prices: dict[str, Price] = Field(
        default_factory=dict,
        description="USD per instance-hour by instance type (ml.c5.xlarge), or by dimension key for one use "
        "(ml.c5.xlarge.m.i.b batch transform, .m.i.r real-time inference, .a.t training); "
        "overrides hourly_price",
    )

    @field_validator("hourly_prices")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not (DIMENSION_KEY_RE.match(key) or re.fullmatch(r"ml\.\S+", key)) or len(key) > 40:
                raise ValueError(
                    f"{key!r} is neither an instance type (ml.c5.xlarge) nor a dimension key (ml.c5.xlarge.m.i.b, "
                    ".m.i.r, .a.t)"
                )
        return value

    def price_for(self, dimension: str) -> str | None:
        match = DIMENSION_KEY_RE.match(dimension)
        instance_type = match["type"] if match else dimension
        return self.hourly_prices.get(dimension) or self.hourly_prices.get(instance_type) or self.hourly_price


class Listing(_Spec):
    """The version this release adds to the seller's Marketplace product (Catalog API
    AddDeliveryOptions on MachineLearningProduct@1.0), once SageMaker validated it."""

    product_id: str = Field(min_length=1, max_length=255, pattern=r"^[a-zA-Z0-9-]+$")
    version_title: str | None = Field(default=None, min_length=1, max_length=64, description="Default: product.version")
    release_notes: str = Field(min_length=1, max_length=30000)
    access_role_arn: str = Field(
        pattern=ACCESS_ROLE_RE.pattern, description="The role AWS Marketplace assumes to read the SageMaker resource"
    )
    usage_instructions: str = Field(min_length=1, max_length=10000)
    sample_notebook_url: str = Field(pattern=HTTPS_URL_RE.pattern)
    repository_url: str = Field(pattern=HTTPS_URL_RE.pattern)
    input: ListingData
    output: ListingData
    recommended_instance_types: RecommendedInstanceTypes
    pricing: ListingPricing | None = Field(
        default=None,
        description="Prices for instance types the product's public offer does not price yet (UpdatePricingTerms "
        "in the same change set); a free product needs none",
    )
    restrict_previous_version: bool = Field(
        default=False,
        description="Restrict the product's latest earlier version (RestrictDeliveryOptions in the same change set): "
        "new buyers see only this version",
    )


ALGORITHM_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):algorithm/"
    r"(?P<name>[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})$"
)


class SourceAlgorithm(_Spec):
    """A model package built from an algorithm: the algorithm and the model it trained
    (SageMaker SourceAlgorithmSpecification). The algorithm serves the model with its own
    inference containers and instance types."""

    algorithm: str = Field(description="ARN of the seller's algorithm: arn:aws:sagemaker:REGION:ACCOUNT:algorithm/NAME")
    model_data: S3Uri = Field(description="s3:// URI of the model.tar.gz the algorithm trained")

    @field_validator("algorithm")
    @classmethod
    def _algorithm_arn(cls, value: str) -> str:
        if not ALGORITHM_ARN_RE.match(value):
            raise ValueError(
                "must be a SageMaker algorithm ARN (arn:aws:sagemaker:REGION:ACCOUNT:algorithm/NAME), as the "
                "algorithm's ready-for-listing announcement gives it"
            )
        return value

    @field_validator("model_data")
    @classmethod
    def _model_data_uri(cls, value: str) -> str:
        return _check_s3_uri(value)

    @property
    def region(self) -> str:
        match = ALGORITHM_ARN_RE.match(self.algorithm)
        assert match is not None  # nosec B101  # checked by the field validator
        return match["region"]

    @property
    def account(self) -> str:
        match = ALGORITHM_ARN_RE.match(self.algorithm)
        assert match is not None  # nosec B101  # checked by the field validator
        return match["account"]


class AlgorithmPackage(_Spec):
    """A model package built on the algorithm this release publishes and a model it trained,
    created once the algorithm passed validation (SageMaker SourceAlgorithmSpecification). Its
    validation transforms validation.input as the algorithm's does."""

    model_data: S3Uri = Field(description="s3:// URI of the model.tar.gz the algorithm trained")


class ReleaseSpec(_Spec):
    schema_version: Literal[1] = 1
    product: Product
    publishing_region: str | None = Field(
        default=None, description="Defaults to the stack's PublishingRegion parameter."
    )
    source_algorithm: SourceAlgorithm | None = Field(
        default=None, description="A model package built from the seller's algorithm (no containers, no inference)"
    )
    containers: list[Container] = Field(default_factory=list, max_length=15, validate_default=True)
    training: Training | None = Field(
        default=None, validate_default=True, description="Algorithms only: what the algorithm trains with"
    )
    # Required unless source_algorithm: the schema for editors shows it as the section it is.
    inference: Inference | None = Field(default=None, validate_default=True, json_schema_extra=_as_section)
    validation: Validation
    listing: Listing | None = Field(
        default=None, description="Add the validated version to the seller's Marketplace product (Catalog API)"
    )
    package: AlgorithmPackage | None = Field(
        default=None,
        description="Algorithms only: also publish a model package built on this algorithm and a model it trained",
    )

    @field_validator("package")
    @classmethod
    def _package_of_an_algorithm(cls, value: AlgorithmPackage | None, info: ValidationInfo) -> AlgorithmPackage | None:
        product = info.data.get("product")
        if value is not None and product is not None and product.kind != "algorithm":
            raise ValueError(
                "builds a model package on the algorithm this release publishes; set product.kind: algorithm, or "
                "give a model package release source_algorithm (an existing algorithm's ARN and model_data)"
            )
        return value

    @field_validator("source_algorithm")
    @classmethod
    def _packages_from_algorithms(cls, value: SourceAlgorithm | None, info: ValidationInfo) -> SourceAlgorithm | None:
        product = info.data.get("product")
        if value is not None and product is not None and product.kind != "model_package":
            raise ValueError("makes a model package; set product.kind: model_package, or remove it")
        return value

    @field_validator("inference")
    @classmethod
    def _inference_unless_from_algorithm(cls, value: Inference | None, info: ValidationInfo) -> Inference | None:
        from_algorithm = info.data.get("source_algorithm") is not None
        if value is None and not from_algorithm and "containers" in info.data:
            raise ValueError("Field required")
        if value is not None and from_algorithm:
            raise ValueError(
                "a model package built from an algorithm is served as the algorithm's inference specification says; "
                "remove inference"
            )
        return value

    @field_validator("validation", mode="before")
    @classmethod
    def _one_profile(cls, value: object) -> object:
        # SageMaker takes exactly one validation profile for an algorithm and at most one for a
        # Marketplace model package: a list is accepted only when it holds one.
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError(
                    f"gives {len(value)} validation profiles; SageMaker takes exactly one (an algorithm's "
                    "AlgorithmValidationSpecification.ValidationProfiles: 1; a model package's: at most 1): keep one, "
                    "as a mapping"
                )
            return value[0]
        return value

    # Field validators see the product (validated before them), so each problem carries its path.
    @field_validator("training")
    @classmethod
    def _training_for_algorithms(cls, value: Training | None, info: ValidationInfo) -> Training | None:
        product = info.data.get("product")
        if product is not None and product.kind == "algorithm" and value is None:
            raise ValueError(
                "product.kind algorithm needs a training section (image, instance_types, channels, hyperparameters, "
                "metrics): see events/release.algorithm.yaml"
            )
        if product is not None and product.kind != "algorithm" and value is not None:
            raise ValueError("belongs to algorithm products; set product.kind: algorithm, or remove it")
        return value

    @field_validator("validation")
    @classmethod
    def _validation_for_the_kind(cls, value: Validation, info: ValidationInfo) -> Validation:
        product = info.data.get("product")
        if product is not None and product.kind == "algorithm" and value.training is None:
            raise ValueError(
                "product.kind algorithm needs validation.training (channels, instance_type): SageMaker validates an "
                "algorithm by training it, then transforming validation.input with the model it trained"
            )
        if product is not None and product.kind != "algorithm" and value.training is not None:
            raise ValueError(
                "validation.training belongs to algorithm products; set product.kind: algorithm, or remove it"
            )
        return value

    # Field validators (not a model validator) so that these problems carry the field path
    # and are reported together with every other field's problems.
    @field_validator("containers")
    @classmethod
    def _consistent_containers(cls, containers: list[Container], info: ValidationInfo) -> list[Container]:
        from_algorithm = info.data.get("source_algorithm") is not None
        if from_algorithm and containers:
            raise ValueError(
                "a model package built from an algorithm runs the algorithm's inference containers; remove containers "
                "(or source_algorithm, to publish these containers)"
            )
        if not containers and not from_algorithm and "product" in info.data:
            raise ValueError("List should have at least 1 item after validation, not 0")
        problems = []
        names = [container.name for container in containers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            problems.append(f"container names must be unique; repeated: {', '.join(duplicates)}")
        accounts = {container.image_ref.registry_id for container in containers}
        if len(accounts) > 1:
            found = ", ".join(sorted(accounts))
            problems.append(f"all images must come from one ECR registry (the seller's account); found {found}")
        if problems:
            raise ValueError("; ".join(problems))
        return containers

    @property
    def source_account(self) -> str:
        if self.source_algorithm is not None:
            return self.source_algorithm.account
        return self.containers[0].image_ref.registry_id

    @property
    def is_algorithm(self) -> bool:
        return self.product.kind == "algorithm"

    def images(self) -> list[tuple[str, str, str, ImageRef]]:
        """(name, field path, platform, reference) of every image the release publishes: each
        container's, and an algorithm's training image when it is another image."""
        found = [
            (container.name, f"containers.{index}.image", container.platform, container.image_ref)
            for index, container in enumerate(self.containers)
        ]
        training = self.training.image_ref if self.training else None
        if training is not None and all(training != ref for *_, ref in found):
            found.append((TRAINING_IMAGE, "training.image", "linux/amd64", training))
        return found

    def objects(self) -> list[tuple[str, str | None, str, str]]:
        """(role, container or channel, field path, s3 URI) of every object the release names."""
        found: list[tuple[str, str | None, str, str]] = [
            ("model_data", container.name, f"containers.{index}.model_data", container.model_data)
            for index, container in enumerate(self.containers)
            if container.model_data is not None
        ]
        if self.source_algorithm is not None:
            found.append(("model_data", None, "source_algorithm.model_data", self.source_algorithm.model_data))
        if self.package is not None:
            found.append(("package_model_data", None, "package.model_data", self.package.model_data))
        found.append(("validation_input", None, "validation.input", self.validation.input))
        if self.validation.training is not None:
            found += [
                ("training_input", channel, f"validation.training.channels.{channel}", uri)
                for channel, uri in self.validation.training.channels.items()
            ]
        return found


# The name of an algorithm's training image among the release's images, when it is not one
# of the containers' (preflight refuses a container of that name in such a release).
TRAINING_IMAGE = "training"


@cache
def _instance_type_enum(shape: str) -> frozenset[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for(shape).enum)


def _known_instance_types(values: list[str], shape: str) -> list[str]:
    known = _instance_type_enum(shape)
    unknown = [value for value in values if value not in known]
    if unknown:
        raise ValueError(
            f"unknown instance type(s) {', '.join(unknown)} for {shape}; use SageMaker names such as ml.m5.xlarge"
        )
    return values


def _field_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(top level)"


def parse_release(text: str | bytes, *, source: str = "release") -> ReleaseSpec:
    """Parse YAML or JSON text into a ReleaseSpec, or raise InvalidRelease with every problem."""
    import yaml  # only the functions that read release files need it: not at every handler's import

    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidRelease(f"{source} is not valid YAML or JSON: {exc}. Fix the syntax and upload it again.") from exc
    return validate_release(document, source=source)


def validate_release(document: Any, *, source: str = "release") -> ReleaseSpec:
    """Validate an already-parsed document (e.g. an inline release), or raise InvalidRelease."""
    if not isinstance(document, dict):
        raise InvalidRelease(f"{source} must be a mapping with product, containers, inference and validation.")
    try:
        return ReleaseSpec.model_validate(document)
    except ValidationError as exc:
        reasons = [f"{_field_path(error['loc'])}: {_reason(error)}" for error in exc.errors()]
        raise InvalidRelease(
            f"{source} is not a valid release specification ({len(reasons)} problem(s)); fix these fields:",
            reasons=reasons,
        ) from exc


# Fields earlier versions of the spec had, and what replaces them.
REMOVED_FIELDS = {
    ("validation", "training", "max_wait_seconds"): (
        "not supported: a validation training job has no managed spot option (SageMaker's "
        "TrainingJobDefinition has no EnableManagedSpotTraining), and MaxWaitTimeInSeconds needs it; remove it"
    ),
    ("validation", "role_arn"): (
        "no longer a release field: SageMaker can only be passed the stack's validation role; "
        "choose the role with the stack's ValidationRoleArn parameter"
    ),
}


def _reason(error: Any) -> str:
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = REMOVED_FIELDS.get(
            tuple(error["loc"]), "unknown field (check the spelling against events/release.example.yaml)"
        )
    return message


# Sections added after release files were first fingerprinted: left out of the canonical form
# while unset, so a release written before them keeps its fingerprint (and so its execution and
# model package names) across an upgrade of the pipeline.
_LATER_SECTIONS = (("training",), ("validation", "training"), ("source_algorithm",), ("package",))


def canonical_json(spec: ReleaseSpec) -> str:
    """A stable rendering of the spec, used for fingerprints."""
    # The listing is not what is published: new release notes list the same package again.
    document = spec.model_dump(mode="json", exclude={"listing"})
    for *parents, key in _LATER_SECTIONS:
        holder = document
        for parent in parents:
            holder = holder.get(parent) or {}
        if key in holder and holder[key] is None:
            del holder[key]
    return json.dumps(document, sort_keys=True, separators=(",", ":"))

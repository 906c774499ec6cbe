"""The release specification: what a seller writes once per product (YAML or JSON).

One file describes one product version. ``kind`` selects what is published; today the
pipeline publishes ``model_package`` products with 1–15 containers. The shape already has
room for ``algorithm`` products (a ``training`` section) and model packages built from an
algorithm (``source_algorithm``) without renaming anything a seller has written.

Validation errors carry the field path and the reason, e.g.
``containers.0.image: must be an ECR image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG)``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ImageRef(BaseModel):
    """An ECR image reference split into its parts."""

    model_config = ConfigDict(frozen=True)

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


S3Uri = Annotated[str, Field(min_length=6, max_length=1024)]


class Product(_Spec):
    name: str = Field(min_length=1, max_length=40, description="Lower-case product slug; part of every resource name.")
    version: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal["model_package", "algorithm"] = "model_package"
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

    @field_validator("kind")
    @classmethod
    def _published_kind(cls, value: str) -> str:
        if value != "model_package":
            raise ValueError(f"{value!r} products are not published yet; use 'model_package'")
        return value


def _character_name(char: str) -> str:
    named = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab"}
    if char in named:
        return named[char]
    unicode_name = unicodedata.name(char, "")
    return f"the character U+{ord(char):04X}" + (f" ({unicode_name})" if unicode_name else "")


class Container(_Spec):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    image: str = Field(description="Source image in the seller's ECR: REPO:TAG or REPO@DIGEST.")
    platform: str = Field(default="linux/amd64", description="Platform taken from an image index.")
    model_data: S3Uri | None = Field(default=None, description="s3:// URI of model.tar.gz.")
    environment: dict[str, str] = Field(default_factory=dict, max_length=16)

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
    realtime_instance_types: list[str] = Field(min_length=1)
    transform_instance_types: list[str] = Field(min_length=1)

    @field_validator("realtime_instance_types")
    @classmethod
    def _realtime(cls, value: list[str]) -> list[str]:
        return _known_instance_types(value, "ProductionVariantInstanceType")

    @field_validator("transform_instance_types")
    @classmethod
    def _transform(cls, value: list[str]) -> list[str]:
        return _known_instance_types(value, "TransformInstanceType")


class Validation(_Spec):
    """The one validation profile SageMaker runs as a batch transform job."""

    profile_name: str = Field(default="validation", pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    input: S3Uri = Field(description="s3:// URI of the validation input object.")
    content_type: str
    split_type: Literal["None", "Line", "RecordIO", "TFRecord"] = "None"
    compression: Literal["None", "Gzip"] = "None"
    instance_type: str
    instance_count: int = Field(default=1, ge=1, le=10)
    batch_strategy: Literal["MultiRecord", "SingleRecord"] = "SingleRecord"
    max_payload_mb: int = Field(default=6, ge=1, le=100, description="Marketplace batch limit: 100 MB")
    accept: str | None = None
    timeout_minutes: int = Field(default=720, ge=10, le=7 * 24 * 60)

    @field_validator("input")
    @classmethod
    def _input_uri(cls, value: str) -> str:
        return _check_s3_uri(value)

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        return _known_instance_types([value], "TransformInstanceType")[0]


class ReleaseSpec(_Spec):
    schema_version: Literal[1] = 1
    product: Product
    publishing_region: str | None = Field(
        default=None, description="Defaults to the stack's PublishingRegion parameter."
    )
    containers: list[Container] = Field(min_length=1, max_length=15)
    inference: Inference
    validation: Validation

    # Field validators (not a model validator) so that these problems carry the field path
    # and are reported together with every other field's problems.
    @field_validator("containers")
    @classmethod
    def _consistent_containers(cls, containers: list[Container]) -> list[Container]:
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
        return self.containers[0].image_ref.registry_id


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


def canonical_json(spec: ReleaseSpec) -> str:
    """A stable rendering of the spec, used for fingerprints."""
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

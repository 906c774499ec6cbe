"""The release specification: what parses, and how every problem is reported (field path + reason)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import botocore.session
import pytest
import yaml
from tests.fixtures.releases import EXAMPLE, release_document

from mlpublish.errors import InvalidRelease
from mlpublish.release import ImageRef, ReleaseSpec, canonical_json, parse_release, parse_s3_uri, validate_release

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32


def reasons_of(text: str | bytes) -> list[str]:
    with pytest.raises(InvalidRelease) as caught:
        parse_release(text, source="s3://pipeline/releases/acme.yaml")
    return caught.value.reasons


def problems(document: dict[str, Any]) -> list[str]:
    return reasons_of(yaml.safe_dump(document))


def sagemaker_enum(shape: str) -> frozenset[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for(shape).enum)


# --- what parses ----------------------------------------------------------------------


def test_given_the_documented_example_when_parsed_then_every_field_is_read() -> None:
    spec = parse_release(EXAMPLE.read_text())

    assert (spec.product.name, spec.product.version, spec.product.kind) == ("acme-sentiment", "1.2.0", "model_package")
    assert spec.publishing_region == "us-east-2"
    [container] = spec.containers
    assert container.image_ref == ImageRef(
        registry_id="123456789012", region="us-west-2", repository="acme/sentiment", tag="1.2.0"
    )
    assert container.model_data == "s3://acme-ml-artifacts/sentiment/1.2.0/model.tar.gz"
    assert container.environment == {"SAGEMAKER_PROGRAM": "serve"}
    assert spec.inference.transform_instance_types == ["ml.m5.large", "ml.c5.xlarge"]
    assert (spec.validation.profile_name, spec.validation.split_type) == ("sentiment-validation", "Line")
    assert spec.source_account == "123456789012"


def test_given_the_example_as_json_when_parsed_then_it_equals_the_yaml_release() -> None:
    as_json = json.dumps(yaml.safe_load(EXAMPLE.read_text()))

    assert parse_release(as_json.encode()) == parse_release(EXAMPLE.read_text())


def test_given_a_release_without_defaults_when_parsed_then_the_documented_defaults_apply(
    release_yaml: Callable[..., str],
) -> None:
    document = release_document(publishing_region=None)
    del document["product"]["kind"]
    del document["containers"][0]["platform"]
    for field in ("profile_name", "split_type", "max_payload_mb", "timeout_minutes"):
        del document["validation"][field]

    spec = parse_release(release_yaml(document))

    assert spec.publishing_region is None
    assert spec.product.kind == "model_package"
    assert spec.containers[0].platform == "linux/amd64"
    validation = spec.validation
    assert (validation.profile_name, validation.split_type, validation.compression) == ("validation", "None", "None")
    assert (validation.max_payload_mb, validation.timeout_minutes, validation.instance_count) == (6, 720, 1)


def test_given_the_same_release_with_keys_in_another_order_then_the_canonical_json_is_the_same() -> None:
    document = release_document()
    shuffled = {key: document[key] for key in reversed(list(document))}
    shuffled["validation"] = dict(reversed(list(document["validation"].items())))

    assert canonical_json(parse_release(json.dumps(shuffled))) == canonical_json(parse_release(json.dumps(document)))


# --- every problem, with its field path ---------------------------------------------------


def test_given_several_broken_fields_when_parsed_then_each_is_reported_with_its_path_at_once() -> None:
    document = release_document()
    document["product"]["name"] = "Acme Sentiment"
    document["containers"][0]["image"] = "docker.io/acme/sentiment:1"
    document["validation"]["input"] = "https://example.com/input.csv"
    document["validation"]["instance_count"] = 0

    with pytest.raises(InvalidRelease) as caught:
        parse_release(yaml.safe_dump(document), source="s3://pipeline/releases/acme.yaml")

    error = caught.value
    assert "s3://pipeline/releases/acme.yaml" in error.message
    assert "4 problem(s)" in error.message
    assert sorted(reason.split(":", 1)[0] for reason in error.reasons) == [
        "containers.0.image",
        "product.name",
        "validation.input",
        "validation.instance_count",
    ]
    # The Lambda error message (what the announcement shows) lists them all.
    assert all(f"\n- {reason}" in str(error) for reason in error.reasons)


def test_given_a_missing_section_when_parsed_then_its_path_says_it_is_required() -> None:
    document = release_document()
    del document["inference"]

    assert problems(document) == ["inference: Field required"]


@pytest.mark.parametrize(
    ("path", "field"),
    [((), "containerz"), (("product",), "nmae"), (("containers", 0), "imag"), (("validation",), "split")],
)
def test_given_an_unknown_field_when_parsed_then_it_is_named_as_unknown(path: tuple[Any, ...], field: str) -> None:
    document = release_document()
    section: Any = document
    for part in path:
        section = section[part]
    section[field] = "x"

    [reason] = problems(document)

    location = ".".join([*map(str, path), field])
    assert reason == f"{location}: unknown field (check the spelling against events/release.example.yaml)"


@pytest.mark.parametrize(
    "image",
    [
        "acme/sentiment:1.2.0",
        "docker.io/acme/sentiment:1.2.0",
        "public.ecr.aws/acme/sentiment:1.2.0",
        "12345678901.dkr.ecr.us-west-2.amazonaws.com/acme/sentiment:1.2.0",
        "123456789012.dkr.ecr.us-west-2.amazonaws.com/Acme/Sentiment:1.2.0",
        "123456789012.dkr.ecr.us-west-2.amazonaws.com/acme/sentiment:-bad",
        "123456789012.dkr.ecr.us-west-2.amazonaws.com/acme/sentiment@sha256:short",
        "123456789012.dkr.ecr.us-west-2.amazonaws.com/",
    ],
)
def test_given_an_image_that_is_not_an_ecr_uri_when_parsed_then_the_expected_shape_is_explained(image: str) -> None:
    document = release_document()
    document["containers"][0]["image"] = image

    [reason] = problems(document)

    assert reason.startswith("containers.0.image: must be an ECR image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (
            f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/models/sentiment@{DIGEST}",
            ImageRef(registry_id="123456789012", region="eu-west-1", repository="team/models/sentiment", digest=DIGEST),
        ),
        (
            f"123456789012.dkr.ecr.us-east-1.amazonaws.com/sentiment:v2@{DIGEST}",
            ImageRef(registry_id="123456789012", region="us-east-1", repository="sentiment", tag="v2", digest=DIGEST),
        ),
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/my_repo.name-1",
            ImageRef(registry_id="123456789012", region="cn-north-1", repository="my_repo.name-1"),
        ),
    ],
)
def test_given_an_ecr_image_uri_when_parsed_then_it_splits_into_its_parts(image: str, expected: ImageRef) -> None:
    assert ImageRef.parse(image) == expected


@pytest.mark.parametrize(
    ("tag", "digest", "reference"), [(None, None, "latest"), ("v2", None, "v2"), ("v2", DIGEST, DIGEST)]
)
def test_given_an_image_ref_then_its_reference_prefers_the_digest_then_the_tag(
    tag: str | None, digest: str | None, reference: str
) -> None:
    ref = ImageRef(registry_id="123456789012", region="us-east-1", repository="r", tag=tag, digest=digest)

    assert ref.reference == reference
    assert ref.host == "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def _containers(count: int) -> list[dict[str, Any]]:
    template = release_document()["containers"][0]
    return [{**template, "name": f"step-{index}"} for index in range(count)]


def test_given_fifteen_containers_when_parsed_then_the_serial_pipeline_is_accepted() -> None:
    document = release_document()
    document["containers"] = _containers(15)

    assert len(parse_release(yaml.safe_dump(document)).containers) == 15


def test_given_sixteen_containers_when_parsed_then_the_limit_of_fifteen_is_reported() -> None:
    document = release_document()
    document["containers"] = _containers(16)

    assert problems(document) == ["containers: List should have at most 15 items after validation, not 16"]


def test_given_no_container_when_parsed_then_at_least_one_is_required() -> None:
    document = release_document()
    document["containers"] = []

    [reason] = problems(document)

    assert reason.startswith("containers: List should have at least 1 item")


def test_given_duplicate_container_names_when_parsed_then_they_are_reported_with_the_other_problems() -> None:
    document = release_document()
    document["containers"] = [*_containers(2), *_containers(1)]
    document["product"]["version"] = "-1"

    reasons = problems(document)

    assert "containers: container names must be unique; repeated: step-0" in reasons
    assert any(reason.startswith("product.version:") for reason in reasons)
    assert len(reasons) == 2


def test_given_images_from_two_registries_when_parsed_then_the_one_registry_rule_names_both() -> None:
    document = release_document()
    first, second = _containers(2)
    second["image"] = second["image"].replace("123456789012", "111122223333")
    document["containers"] = [first, second]

    assert problems(document) == [
        "containers: all images must come from one ECR registry (the seller's account); found "
        "111122223333, 123456789012"
    ]


def test_given_an_instance_type_sagemaker_does_not_know_when_parsed_then_each_list_names_it() -> None:
    document = release_document()
    document["inference"]["realtime_instance_types"] = ["ml.m5.large", "ml.m5.huge"]
    document["inference"]["transform_instance_types"] = ["m5.large"]
    document["validation"]["instance_type"] = "ml.m5.large"

    reasons = problems(document)

    assert reasons == [
        "inference.realtime_instance_types: unknown instance type(s) ml.m5.huge for ProductionVariantInstanceType; "
        "use SageMaker names such as ml.m5.xlarge",
        "inference.transform_instance_types: unknown instance type(s) m5.large for TransformInstanceType; "
        "use SageMaker names such as ml.m5.xlarge",
    ]


def test_given_an_endpoint_only_instance_type_when_used_for_batch_then_it_is_rejected_there_only() -> None:
    endpoint_only = "ml.c5.large"
    assert endpoint_only in sagemaker_enum("ProductionVariantInstanceType")
    assert endpoint_only not in sagemaker_enum("TransformInstanceType")
    document = release_document()
    document["inference"]["realtime_instance_types"] = [endpoint_only]
    document["validation"]["instance_type"] = endpoint_only

    [reason] = problems(document)

    assert reason.startswith(
        f"validation.instance_type: unknown instance type(s) {endpoint_only} for TransformInstanceType"
    )


@pytest.mark.parametrize(
    "uri",
    [
        "https://acme-ml-artifacts.s3.amazonaws.com/model.tar.gz",
        "s3://acme-ml-artifacts",
        "s3://acme-ml-artifacts/",
        "s3://Acme-Artifacts/model.tar.gz",
        "s3://ab/model.tar.gz",
        "s3:/acme-ml-artifacts/model.tar.gz",
    ],
)
def test_given_a_malformed_s3_uri_when_parsed_then_model_data_and_validation_input_explain_the_shape(uri: str) -> None:
    document = release_document()
    document["containers"][0]["model_data"] = uri
    document["validation"]["input"] = uri

    reasons = problems(document)

    assert reasons == [
        "containers.0.model_data: must be an S3 object URI: s3://BUCKET/KEY",
        "validation.input: must be an S3 object URI: s3://BUCKET/KEY",
    ]


def test_given_an_s3_uri_with_a_nested_key_then_it_splits_into_bucket_and_key() -> None:
    assert parse_s3_uri("s3://acme.ml-artifacts/a/b/model.tar.gz") == ("acme.ml-artifacts", "a/b/model.tar.gz")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            ("containers", 0, "environment"),
            {"1BAD": "x"},
            "containers.0.environment: variable name '1BAD' must match [a-zA-Z_][a-zA-Z0-9_]*",
        ),
        (
            ("containers", 0, "platform"),
            "amd64",
            "containers.0.platform: must be OS/ARCH[/VARIANT], e.g. linux/amd64",
        ),
        (
            ("validation", "max_payload_mb"),
            101,
            "validation.max_payload_mb: Input should be less than or equal to 100",
        ),
    ],
)
def test_given_a_field_breaking_its_rule_when_parsed_then_the_reason_says_what_is_allowed(
    field: tuple[Any, ...], value: Any, expected: str
) -> None:
    document = release_document()
    section: Any = document
    for part in field[:-1]:
        section = section[part]
    section[field[-1]] = value

    assert problems(document) == [expected]


@pytest.mark.parametrize("text", ["product: [unclosed", "product:\n  name: a\n   version: b\n", "\tproduct: x"])
def test_given_broken_yaml_when_parsed_then_the_syntax_error_names_the_file(text: str) -> None:
    with pytest.raises(InvalidRelease) as caught:
        parse_release(text, source="s3://pipeline/releases/acme.yaml")

    assert caught.value.message.startswith("s3://pipeline/releases/acme.yaml is not valid YAML or JSON: ")
    assert caught.value.message.endswith("Fix the syntax and upload it again.")
    assert caught.value.reasons == []


@pytest.mark.parametrize("text", ["", "- product\n- containers\n", "just a sentence", "42", "null"])
def test_given_a_document_that_is_not_a_mapping_when_parsed_then_the_expected_sections_are_named(text: str) -> None:
    with pytest.raises(InvalidRelease) as caught:
        parse_release(text, source="s3://pipeline/releases/acme.yaml")

    assert caught.value.message == (
        "s3://pipeline/releases/acme.yaml must be a mapping with product, containers, inference and validation."
    )


def test_given_an_algorithm_product_without_its_sections_when_parsed_then_each_missing_one_is_named() -> None:
    document = release_document()
    document["product"]["kind"] = "algorithm"

    found = problems(document)

    assert [problem.split(":")[0] for problem in found] == ["training", "validation"]
    assert "see events/release.algorithm.yaml" in found[0]


def test_given_an_unknown_product_kind_when_parsed_then_the_known_kinds_are_listed() -> None:
    document = release_document()
    document["product"]["kind"] = "dataset"

    assert problems(document) == ["product.kind: Input should be 'model_package' or 'algorithm'"]


def test_given_a_release_document_with_characters_outside_the_bmp_when_validated_then_they_are_kept() -> None:
    document = release_document()
    document["product"]["description"] = "Sentiment 😀 for reviews – ünïcode"

    spec = validate_release(document, source="the inline release")

    assert spec.product.description == "Sentiment 😀 for reviews – ünïcode"
    assert isinstance(spec, ReleaseSpec)


@pytest.mark.parametrize(("written", "version"), [("2", "2"), ("'1.10'", "1.10"), ('"2.0"', "2.0"), ("1.2.0", "1.2.0")])
def test_given_a_version_that_yaml_keeps_exactly_then_it_is_the_text_written(written: str, version: str) -> None:
    text = EXAMPLE.read_text().replace("version: 1.2.0", f"version: {written}")

    assert parse_release(text).product.version == version


@pytest.mark.parametrize(("written", "number"), [("1.10", "1.1"), ("2.0", "2.0"), ("10.50", "10.5")])
def test_given_a_version_yaml_reads_as_a_decimal_number_then_quotes_are_asked_for(written: str, number: str) -> None:
    text = EXAMPLE.read_text().replace("version: 1.2.0", f"version: {written}")

    assert reasons_of(text) == [
        'product.version: write the version in quotes (version: "1.10"): YAML reads 1.10 as the number 1.1, '
        f"and read this one as the number {number}"
    ]


def test_given_a_validation_role_in_the_spec_when_parsed_then_the_stack_parameter_is_named_instead() -> None:
    document = release_document()
    document["validation"]["role_arn"] = "arn:aws:iam::123456789012:role/seller-validation"

    assert problems(document) == [
        "validation.role_arn: no longer a release field: SageMaker can only be passed the stack's validation "
        "role; choose the role with the stack's ValidationRoleArn parameter"
    ]


def test_given_a_product_name_that_is_not_a_slug_when_parsed_then_the_rule_is_said_in_words() -> None:
    document = release_document()
    document["product"]["name"] = "Acme_Sentiment-"

    assert problems(document) == [
        "product.name: must be lower-case letters, digits and hyphens, starting and ending with a letter or "
        "digit (e.g. acme-sentiment)"
    ]


def _with_description(block: str) -> str:
    return EXAMPLE.read_text().replace(
        "  description: Sentiment scores for English product reviews.\n", f"  description: {block}\n"
    )


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (">\n    Sentiment scores\n    for English reviews.\n", "Sentiment scores for English reviews."),
        ('"  Sentiment scores for English reviews.  "', "Sentiment scores for English reviews."),
        ("Scores 😀 – ünïcode, (p < 0.05) & 100%", "Scores 😀 – ünïcode, (p < 0.05) & 100%"),
    ],
    ids=["folded", "padded", "symbols"],
)
def test_given_a_one_line_description_when_parsed_then_it_is_kept_without_surrounding_whitespace(
    block: str, expected: str
) -> None:
    assert parse_release(_with_description(block)).product.description == expected


@pytest.mark.parametrize(
    ("block", "character"),
    [
        ("|\n    Sentiment scores\n    for English reviews.\n", "a line break at character 17"),
        ('"Sentiment\\tscores"', "a tab at character 10"),
        ('"Sentiment\\u200dscores"', "the character U+200D (ZERO WIDTH JOINER) at character 10"),
        ('"Sentiment\\x07scores"', "the character U+0007 at character 10"),
    ],
    ids=["literal-block", "tab", "format-character", "control-character"],
)
def test_given_a_description_sagemaker_would_refuse_when_parsed_then_a_single_line_is_asked_for(
    block: str, character: str
) -> None:
    assert reasons_of(_with_description(block)) == [
        f"product.description: contains {character}, which SageMaker does not accept in a description; "
        "use a single line (YAML `>` folds lines into one)"
    ]

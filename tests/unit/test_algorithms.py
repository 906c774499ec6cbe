"""Algorithm products: the release file's training section, the rules preflight enforces, and
the CreateAlgorithm request, checked against botocore's model of the API."""

from __future__ import annotations

import copy
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator
from tests.fixtures.releases import ACCOUNT, algorithm_document, published_images, resolved_release

from mlpublish.announce import SuccessState, ready
from mlpublish.errors import InvalidRelease, PreflightFailed, ReleaseNotFound
from mlpublish.preflight import algorithm_problems, check_source_algorithm
from mlpublish.release import TRAINING_IMAGE, parse_release
from mlpublish.sagemaker import ALGORITHM, algorithm_request, kind_of, package_release, resource_request

pytestmark = pytest.mark.unit

TRAINER = f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com/acme/forecast-train:2.0.0"


def problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidRelease) as caught:
        parse_release(yaml.safe_dump(document), source="s3://pipeline/releases/forecast.yaml")
    return caught.value.reasons


def hyperparameter(**fields: Any) -> dict[str, Any]:
    document = algorithm_document()
    document["training"]["hyperparameters"] = [{"name": "p", **fields}]
    return document


def preflight(document: dict[str, Any]) -> list[str]:
    return algorithm_problems(parse_release(yaml.safe_dump(document)))


def botocore_problems(operation: str, request: dict[str, Any]) -> str:
    model = botocore.session.get_session().get_service_model("sagemaker")
    report = ParamValidator().validate(request, model.operation_model(operation).input_shape)
    return report.generate_report()


# --- the release file ---------------------------------------------------------------------


def test_given_the_algorithm_example_then_it_trains_and_serves_with_one_image_and_pins_each_channel() -> None:
    spec = parse_release(yaml.safe_dump(algorithm_document()))

    assert spec.is_algorithm
    assert [name for name, *_ in spec.images()] == ["inference"]  # no training.image: the same image trains
    assert [(role, name, field) for role, name, field, _ in spec.objects()] == [
        ("validation_input", None, "validation.input"),
        ("training_input", "train", "validation.training.channels.train"),
    ]
    assert [parameter.default for parameter in spec.training.hyperparameters] == ["50", "0.01", "weekly", None]


def test_given_a_separate_training_image_then_it_is_published_beside_the_containers() -> None:
    document = algorithm_document()
    document["training"]["image"] = TRAINER

    images = parse_release(yaml.safe_dump(document)).images()

    assert [(name, field) for name, field, *_ in images] == [
        ("inference", "containers.0.image"),
        (TRAINING_IMAGE, "training.image"),
    ]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"type": "Integer"}, "an Integer hyperparameter needs min and max"),
        ({"type": "Integer", "min": 5, "max": 5}, "min (5) must be less than max (5)"),
        ({"type": "Integer", "min": 0.5, "max": 5}, "an Integer hyperparameter needs whole-number min and max"),
        ({"type": "Continuous", "min": 0, "max": 1, "default": 2}, "default 2 is outside 0..1"),
        ({"type": "Integer", "min": 0, "max": 9, "default": "many"}, "default 'many' is not a whole number"),
        ({"type": "Categorical"}, "a Categorical hyperparameter needs values (1-30)"),
        ({"type": "Categorical", "values": ["a"], "default": "b"}, "default 'b' is not one of ['a']"),
        ({"type": "FreeText", "tunable": True}, "a FreeText hyperparameter cannot be tunable"),
        ({"type": "FreeText", "min": 1, "max": 2}, "a FreeText hyperparameter takes no min or max"),
    ],
)
def test_given_a_bad_hyperparameter_spec_then_it_is_refused_at_its_path_naming_the_fix(
    fields: dict[str, Any], reason: str
) -> None:
    [problem] = problems(hyperparameter(**fields))

    assert problem.startswith("training.hyperparameters.0: hyperparameter p: ")
    assert reason in problem


def test_given_two_validation_profiles_then_the_release_is_refused_saying_sagemaker_takes_one() -> None:
    document = algorithm_document()
    document["validation"] = [document["validation"], {**document["validation"], "profile_name": "second"}]

    [problem] = problems(document)

    assert problem.startswith("validation: gives 2 validation profiles; SageMaker takes exactly one")


def test_given_one_validation_profile_in_a_list_then_it_is_the_profile() -> None:
    document = algorithm_document()
    document["validation"] = [document["validation"]]

    assert parse_release(yaml.safe_dump(document)).validation.profile_name == "forecast-validation"


def test_given_an_algorithm_without_training_then_the_missing_sections_are_named() -> None:
    document = algorithm_document()
    del document["training"]
    del document["validation"]["training"]

    found = problems(document)

    assert found[0].startswith("training: product.kind algorithm needs a training section")
    assert found[1].startswith("validation: product.kind algorithm needs validation.training")


def test_given_a_model_package_with_a_training_section_then_it_is_refused_naming_the_kind() -> None:
    document = algorithm_document()
    document["product"]["kind"] = "model_package"

    found = problems(document)

    assert found[0] == "training: belongs to algorithm products; set product.kind: algorithm, or remove it"
    assert found[1].startswith("validation: validation.training belongs to algorithm products")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d["training"]["metrics"][0].update(regex="rmse=[0-9.]+"), "needs a capturing group"),
        (lambda d: d["training"]["objectives"][0].update(metric="loss"), "objectives name metrics that are not"),
        (lambda d: d["training"].update(instance_types=["ml.t2.nano"]), "unknown instance type(s) ml.t2.nano"),
        (lambda d: d["training"]["channels"].append({"name": "train", "content_types": ["a"]}), "repeated: train"),
        (lambda d: d["validation"]["training"].update(max_wait_seconds=7200), "not supported: a validation training"),
    ],
)
def test_given_a_broken_training_field_then_it_is_refused_with_why(change: Any, reason: str) -> None:
    document = algorithm_document()
    change(document)

    assert any(reason in problem for problem in problems(document)), problems(document)


# --- preflight: the validation job against what the algorithm declares ----------------------


def test_given_the_example_then_preflight_finds_nothing() -> None:
    assert preflight(algorithm_document()) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda d: d["validation"]["training"]["channels"].update(test="s3://acme-ml-artifacts/t.csv"),
            "validation.training.channels.test: the algorithm declares no channel 'test'",
        ),
        (
            lambda d: d["validation"]["training"].update(channels={"validation": "s3://acme-ml-artifacts/v.csv"}),
            "validation.training.channels: the required channel(s) train have no data",
        ),
        (
            lambda d: d["validation"]["training"]["hyperparameters"].update(epochs="0"),
            "validation.training.hyperparameters.epochs: 0 is outside 1..500",
        ),
        (
            lambda d: d["validation"]["training"]["hyperparameters"].update(depth="3"),
            "validation.training.hyperparameters.depth: not a hyperparameter of the algorithm",
        ),
        (
            lambda d: d["validation"]["training"].update(instance_type="ml.c5.xlarge"),
            "validation.training.instance_type: ml.c5.xlarge is not in training.instance_types",
        ),
        (
            lambda d: d["validation"]["training"].update(instance_count=2),
            "validation.training.instance_count: 2 instances need training.distributed: true",
        ),
        (
            lambda d: d["validation"]["training"].update(input_mode="Pipe"),
            "validation.training.input_mode: Pipe is not among channel train's input_modes",
        ),
        (
            lambda d: d["training"]["channels"][0].update(compression=["Gzip"]),
            "validation.training.channels.train: s3://acme-ml-artifacts/forecast/2.0.0/validation/train.csv is sent "
            "as CompressionType None",
        ),
        (
            lambda d: d["containers"][0].update(model_data="s3://acme-ml-artifacts/model.tar.gz"),
            "containers.0.model_data: an algorithm's inference containers serve the model its training makes",
        ),
        (
            lambda d: d["training"]["hyperparameters"].append({"name": "k", "type": "FreeText", "required": True}),
            "validation.training.hyperparameters: required hyperparameter(s) k have neither a value nor a default",
        ),
    ],
)
def test_given_a_validation_job_the_algorithm_cannot_run_then_preflight_names_the_field_and_the_fix(
    change: Any, reason: str
) -> None:
    document = algorithm_document()
    change(document)

    found = preflight(document)

    assert any(problem.startswith(reason) for problem in found), found


def test_given_a_broken_algorithm_when_resolved_then_it_is_refused_before_anything_is_copied() -> None:
    document = algorithm_document()
    document["validation"]["training"]["hyperparameters"]["epochs"] = "900"

    with pytest.raises(PreflightFailed) as caught:
        resolved_release(parse_release(yaml.safe_dump(document)))

    assert "validation.training.hyperparameters.epochs: 900 is outside 1..500" in caught.value.reasons


# --- CreateAlgorithm ----------------------------------------------------------------------


def test_given_an_algorithm_release_then_its_request_is_a_valid_certified_create_algorithm() -> None:
    release = resolved_release(parse_release(yaml.safe_dump(algorithm_document())))
    images = published_images(release)

    request = resource_request(release, images)

    assert botocore_problems("CreateAlgorithm", request) == ""
    assert kind_of(release) is ALGORITHM
    assert request["AlgorithmName"] == release.resource_name
    assert request["CertifyForMarketplace"] is True
    training = request["TrainingSpecification"]
    assert (training["TrainingImage"], training["TrainingImageDigest"]) == (images[0].image_uri, images[0].digest)
    assert [channel["Name"] for channel in training["TrainingChannels"]] == ["train", "validation"]
    assert training["SupportedHyperParameters"][0] == {
        "Name": "epochs",
        "Type": "Integer",
        "IsTunable": True,
        "IsRequired": False,
        "DefaultValue": "50",
        "Range": {"IntegerParameterRangeSpecification": {"MinValue": "1", "MaxValue": "500"}},
    }
    [profile] = request["ValidationSpecification"]["ValidationProfiles"]
    job = profile["TrainingJobDefinition"]
    [channel] = job["InputDataConfig"]
    [data] = [item for item in release.objects if item.role == "training_input"]
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == data.destination_uri  # the published copy
    assert data.destination_bucket == release.publishing_bucket
    assert job["HyperParameters"] == {"epochs": "2"}
    assert job["OutputDataConfig"]["S3OutputPath"].startswith(release.validation_output_uri)
    assert profile["TransformJobDefinition"]["TransformResources"]["InstanceType"] == "ml.m5.large"
    assert "ModelDataUrl" not in request["InferenceSpecification"]["Containers"][0]


def test_given_a_separate_training_image_then_the_algorithm_trains_with_its_published_copy() -> None:
    document = algorithm_document()
    document["training"]["image"] = TRAINER
    release = resolved_release(parse_release(yaml.safe_dump(document)))
    images = published_images(release)

    request = algorithm_request(release, images)

    [trainer] = [image for image in images if image.container == TRAINING_IMAGE]
    assert request["TrainingSpecification"]["TrainingImage"] == trainer.image_uri
    assert [c["Image"] for c in request["InferenceSpecification"]["Containers"]] == [images[0].image_uri]
    assert botocore_problems("CreateAlgorithm", request) == ""


def test_given_a_training_image_that_is_the_second_containers_then_the_algorithm_trains_with_that_one() -> None:
    document = algorithm_document()
    second = {"name": "postprocess", "image": TRAINER}
    document["containers"].append(second)
    document["training"]["image"] = TRAINER
    release = resolved_release(
        parse_release(yaml.safe_dump(document)),
        digests={"inference": "sha256:" + "a" * 64, "postprocess": "sha256:" + "b" * 64},
    )
    images = published_images(release)

    request = algorithm_request(release, images)

    assert [name for name, *_ in release.spec.images()] == ["inference", "postprocess"]  # published once
    assert request["TrainingSpecification"]["TrainingImageDigest"] == "sha256:" + "b" * 64


def test_given_an_integer_range_written_with_decimals_then_sagemaker_gets_whole_numbers() -> None:
    document = algorithm_document()
    document["training"]["hyperparameters"][0].update(min=1.0, max=500.0)
    release = resolved_release(parse_release(yaml.safe_dump(document)))

    request = algorithm_request(release, published_images(release))

    assert request["TrainingSpecification"]["SupportedHyperParameters"][0]["Range"] == {
        "IntegerParameterRangeSpecification": {"MinValue": "1", "MaxValue": "500"}
    }


def test_given_an_algorithm_arn_then_its_validation_is_read_as_an_algorithms() -> None:
    assert kind_of("arn:aws:sagemaker:us-east-2:123456789012:algorithm/acme-forecast-2-0-0-0123abcd") is ALGORITHM
    assert kind_of("arn:aws:sagemaker:us-east-2:123456789012:model-package/acme-x").label == "model package"


def test_given_a_changed_hyperparameter_default_then_the_release_is_new_content_with_a_new_algorithm_name() -> None:
    document = algorithm_document()
    changed = copy.deepcopy(document)
    changed["training"]["hyperparameters"][0]["default"] = 60

    first = resolved_release(parse_release(yaml.safe_dump(document)))
    second = resolved_release(parse_release(yaml.safe_dump(changed)))

    assert first.fingerprint != second.fingerprint
    assert first.resource_name != second.resource_name  # an existing algorithm cannot be changed


def test_given_a_validated_algorithm_then_the_ready_announcement_names_the_algorithm() -> None:
    release = resolved_release(parse_release(yaml.safe_dump(algorithm_document())))
    images = published_images(release)
    arn = f"arn:aws:sagemaker:us-east-2:{ACCOUNT}:algorithm/{release.resource_name}"
    state = SuccessState.model_validate(
        {
            "release": release.model_dump(mode="json"),
            "copied": {"images": [image.model_dump(mode="json") for image in images], "artifacts": []},
            "scan": {"complete": True, "attempt": 1, "wait_seconds": 0, "images": []},
            "resource": {"arn": arn, "name": release.resource_name, "action": "created"},
            "validation": {"status": "Completed", "attempt": 3, "wait_seconds": 0, "elapsed_seconds": 900},
        }
    )

    announcement = ready(state)

    assert announcement.detail["algorithm_arn"] == arn
    assert announcement.detail["kind"] == "algorithm"
    assert "model_package_arn" not in announcement.detail
    assert f"Algorithm: {arn} (created)" in announcement.message
    assert "with this algorithm ARN" in announcement.message


# --- model packages built from an algorithm ----------------------------------------------

SOURCE_ALGORITHM = f"arn:aws:sagemaker:us-east-2:{ACCOUNT}:algorithm/acme-forecast-2-0-0-d587bc20"


def package_document(**source: str) -> dict[str, Any]:
    """events/release.from-algorithm.yaml, with its source_algorithm fields replaced by ``source``."""
    from tests.fixtures.releases import EXAMPLE

    document = yaml.safe_load(EXAMPLE.with_name("release.from-algorithm.yaml").read_text())
    document["source_algorithm"].update(source)
    return dict(document)


class DescribedAlgorithms:
    """SageMaker's DescribeAlgorithm answering with ``described`` (or not found)."""

    def __init__(self, described: dict[str, Any] | None) -> None:
        self.described = described

    def describe_algorithm(self, AlgorithmName: str) -> dict[str, Any]:  # boto3's name
        if self.described is None:
            error = {
                "Error": {"Code": "ValidationException", "Message": f'Could not find algorithm "{AlgorithmName}".'}
            }
            raise ClientError(error, "DescribeAlgorithm")
        return self.described


def validated(**changes: Any) -> dict[str, Any]:
    return {
        "AlgorithmName": "acme-forecast-2-0-0-d587bc20",
        "AlgorithmArn": SOURCE_ALGORITHM,
        "AlgorithmStatus": "Completed",
        "CertifyForMarketplace": True,
        "InferenceSpecification": {"SupportedTransformInstanceTypes": ["ml.m5.large"]},
        **changes,
    }


def test_given_a_package_from_an_algorithm_then_it_has_no_images_and_pins_the_trained_model() -> None:
    spec = parse_release(yaml.safe_dump(package_document()))

    assert spec.images() == []
    assert spec.source_account == ACCOUNT
    assert [(role, field) for role, _, field, _ in spec.objects()] == [
        ("model_data", "source_algorithm.model_data"),
        ("validation_input", "validation.input"),
    ]


def test_given_a_package_from_an_algorithm_then_its_request_builds_on_the_algorithm_and_the_published_model() -> None:
    release = resolved_release(parse_release(yaml.safe_dump(package_document())))

    request = resource_request(release, [])

    assert botocore_problems("CreateModelPackage", request) == ""
    assert "InferenceSpecification" not in request  # the algorithm serves it
    [source] = request["SourceAlgorithmSpecification"]["SourceAlgorithms"]
    [model] = [item for item in release.objects if item.role == "model_data"]
    assert source == {"AlgorithmName": SOURCE_ALGORITHM, "ModelDataUrl": model.destination_uri}
    assert model.destination_bucket == release.publishing_bucket
    assert "/source-algorithm/" in model.destination_key
    assert request["CertifyForMarketplace"] is True


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.update(containers=[{"name": "x", "image": TRAINER}]), "containers: a model package built from"),
        (
            lambda d: d.update(inference=algorithm_document()["inference"]),
            "inference: a model package built from an algorithm",
        ),
        (lambda d: d["product"].update(kind="algorithm"), "source_algorithm: makes a model package"),
        (
            lambda d: d["source_algorithm"].update(algorithm="forecast"),
            "source_algorithm.algorithm: must be a SageMaker",
        ),
    ],
)
def test_given_a_package_from_an_algorithm_with_what_the_algorithm_provides_then_it_is_refused(
    change: Any, reason: str
) -> None:
    document = package_document()
    change(document)

    assert any(problem.startswith(reason) for problem in problems(document)), problems(document)


@pytest.mark.parametrize(
    ("arn", "reason"),
    [
        (
            "arn:aws:sagemaker:us-east-2:865070037744:algorithm/some-marketplace-algorithm",
            "AWS Marketplace does not list model packages built on AWS's built-in algorithms or on algorithms "
            "subscribed to in AWS Marketplace",
        ),
        (f"arn:aws:sagemaker:us-west-2:{ACCOUNT}:algorithm/acme-forecast", "SageMaker builds a package from an "),
    ],
)
def test_given_an_algorithm_not_the_sellers_own_in_the_region_then_preflight_refuses_it_before_any_copy(
    arn: str, reason: str
) -> None:
    spec = parse_release(yaml.safe_dump(package_document(algorithm=arn)))

    with pytest.raises(PreflightFailed) as caught:
        resolved_release(spec)

    assert any(reason in problem for problem in caught.value.reasons), caught.value.reasons


@pytest.mark.parametrize(
    ("described", "reason"),
    [
        (validated(AlgorithmStatus="InProgress"), "is InProgress, not validated"),
        (validated(CertifyForMarketplace=False), "is not certified for AWS Marketplace"),
        (
            validated(InferenceSpecification={"SupportedTransformInstanceTypes": ["ml.c5.xlarge"]}),
            "validation.instance_type: ml.m5.large is not one of the algorithm's transform instance types",
        ),
    ],
)
def test_given_an_algorithm_that_cannot_carry_the_package_then_the_release_says_why(
    described: dict[str, Any], reason: str
) -> None:
    spec = parse_release(yaml.safe_dump(package_document()))

    with pytest.raises(PreflightFailed) as caught:
        check_source_algorithm(spec, DescribedAlgorithms(described))

    assert any(reason in problem for problem in caught.value.reasons), caught.value.reasons


def test_given_an_algorithm_that_does_not_exist_then_the_release_names_it_and_what_to_publish_first() -> None:
    spec = parse_release(yaml.safe_dump(package_document()))

    with pytest.raises(ReleaseNotFound) as caught:
        check_source_algorithm(spec, DescribedAlgorithms(None))
    check_source_algorithm(spec, DescribedAlgorithms(validated()))  # a validated, certified one passes

    assert caught.value.message.startswith(f"source_algorithm.algorithm: {SOURCE_ALGORITHM} does not exist")


# --- an algorithm release that also publishes a package built on it -------------------------

ALGORITHM_ARN = f"arn:aws:sagemaker:us-east-2:{ACCOUNT}:algorithm/acme-forecast-2-0-0-01234567"
TRAINED_MODEL = "s3://acme-ml-artifacts/forecast/2.0.0/retail/model.tar.gz"


def test_given_an_algorithm_release_with_a_package_then_the_package_is_built_on_it_with_the_published_model() -> None:
    document = algorithm_document()
    document["package"] = {"model_data": TRAINED_MODEL}
    release = resolved_release(parse_release(yaml.safe_dump(document)))

    package = package_release(release, ALGORITHM_ARN)
    request = resource_request(package, [])

    assert botocore_problems("CreateModelPackage", request) == ""
    [source] = request["SourceAlgorithmSpecification"]["SourceAlgorithms"]
    [model] = [item for item in release.objects if item.role == "package_model_data"]
    assert source == {"AlgorithmName": ALGORITHM_ARN, "ModelDataUrl": model.destination_uri}
    assert "/package/" in model.destination_key
    assert (
        request["ModelPackageName"] == release.resource_name.rsplit("-", 1)[0] + "-model-" + release.resource_name[-8:]
    )
    assert request["ModelPackageName"] != release.resource_name
    assert request["ClientToken"] != algorithm_request(release, published_images(release)).get("ClientToken")
    job = request["ValidationSpecification"]["ValidationProfiles"][0]["TransformJobDefinition"]
    assert (
        job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        == release.object_for("validation_input").destination_uri
    )  # type: ignore[union-attr]


def test_given_a_long_product_name_then_the_packages_name_still_fits_sagemaker() -> None:
    document = algorithm_document()
    document["product"]["name"] = "a" * 40
    document["product"]["version"] = "1.2.3-" + "b" * 20
    document["package"] = {"model_data": TRAINED_MODEL}
    release = resolved_release(parse_release(yaml.safe_dump(document)))

    name = package_release(release, ALGORITHM_ARN).resource_name

    assert len(name) <= 63
    assert name.endswith("-model-" + release.resource_name[-8:])


def test_given_a_package_section_on_a_model_package_release_then_it_is_refused_naming_the_alternative() -> None:
    document = package_document()
    document["package"] = {"model_data": TRAINED_MODEL}

    [reason] = problems(document)

    assert reason.startswith("package: builds a model package on the algorithm this release publishes")
    assert "source_algorithm" in reason

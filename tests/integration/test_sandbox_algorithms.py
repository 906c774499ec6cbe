"""The sandbox's SageMaker algorithms behave as SageMaker's do, against boto3 clients.

moto has no CreateAlgorithm, DescribeAlgorithm, ListAlgorithms or DeleteAlgorithm: the
sandbox serves them (sandbox/ext_sagemaker.py), checks requests server-side
(sandbox/sagemaker_requests.py) and unfolds validation on its virtual clock.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator
from moto import mock_aws

from sandbox.audit import ApiCall
from sandbox.clock import VirtualClock
from sandbox.ext_sagemaker import EVERY, Algorithm, LocalRun, SageMakerValidation, ValidationOutcome
from sandbox.runner import ALGORITHM_VALIDATION_FAILURE
from sandbox.sagemaker_requests import constraint_errors, output_shape
from sandbox.server import EmulatorServer

pytestmark = pytest.mark.integration

REGION = "us-east-2"
ACCOUNT = "123456789012"
SELLER = "111122223333"
SESSION = boto3.session.Session(region_name=REGION)


@functools.cache
def client(region: str = REGION) -> Any:
    return SESSION.client("sagemaker", region_name=region)


@functools.cache
def unchecked_client() -> Any:
    """A client that sends what it is given: the sandbox must refuse bad requests itself."""
    return SESSION.client("sagemaker", config=Config(parameter_validation=False))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[VirtualClock]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws(), VirtualClock() as installed:
        yield installed


@pytest.fixture
def sandbox(clock: VirtualClock) -> Iterator[SageMakerValidation]:
    with SageMakerValidation(clock, ValidationOutcome(pending_seconds=60, in_progress_seconds=3600)) as installed:
        yield installed


def algorithm_request(name: str, account: str = ACCOUNT, **extra: Any) -> dict[str, Any]:
    """A certified algorithm: one training image, one inference container, one profile."""
    training = f"{account}.dkr.ecr.{REGION}.amazonaws.com/team/my-algo-train@sha256:{'a' * 64}"
    inference = f"{account}.dkr.ecr.{REGION}.amazonaws.com/team/my-algo-serve@sha256:{'b' * 64}"
    return {
        "AlgorithmName": name,
        "AlgorithmDescription": "Gradient boosting for tabular data",
        "TrainingSpecification": {
            "TrainingImage": training,
            "SupportedTrainingInstanceTypes": ["ml.m5.large", "ml.m5.xlarge"],
            "SupportsDistributedTraining": False,
            "TrainingChannels": [
                {
                    "Name": "train",
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedInputModes": ["File"],
                    "IsRequired": True,
                }
            ],
            "SupportedHyperParameters": [
                {
                    "Name": "rounds",
                    "Type": "Integer",
                    "Range": {"IntegerParameterRangeSpecification": {"MinValue": "1", "MaxValue": "500"}},
                    "IsTunable": True,
                    "IsRequired": False,
                    "DefaultValue": "100",
                }
            ],
            "MetricDefinitions": [{"Name": "validation:rmse", "Regex": "rmse=([0-9.]+)"}],
            "SupportedTuningJobObjectiveMetrics": [{"Type": "Minimize", "MetricName": "validation:rmse"}],
        },
        "InferenceSpecification": {
            "Containers": [{"Image": inference}],
            "SupportedTransformInstanceTypes": ["ml.m5.large"],
            "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        "ValidationSpecification": {
            "ValidationRole": f"arn:aws:iam::{account}:role/validation",
            "ValidationProfiles": [
                {
                    "ProfileName": "train-then-transform",
                    "TrainingJobDefinition": {
                        "TrainingInputMode": "File",
                        "HyperParameters": {"rounds": "10"},
                        "InputDataConfig": [
                            {
                                "ChannelName": "train",
                                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/train/"}},
                                "ContentType": "text/csv",
                            }
                        ],
                        "OutputDataConfig": {"S3OutputPath": "s3://b/model/"},
                        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
                        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
                    },
                    "TransformJobDefinition": {
                        "TransformInput": {
                            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}},
                            "ContentType": "text/csv",
                        },
                        "TransformOutput": {"S3OutputPath": "s3://b/out/"},
                        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                    },
                }
            ],
        },
        "CertifyForMarketplace": True,
        "Tags": [{"Key": "product", "Value": "my-algo"}],
        **extra,
    }


def refusal(request: dict[str, Any]) -> dict[str, str]:
    """The error the sandbox answers to a CreateAlgorithm request sent unchecked by the client."""
    with pytest.raises(ClientError) as refused:
        unchecked_client().create_algorithm(**request)
    return dict(refused.value.response["Error"])


def names(sm: Any, **filters: Any) -> list[str]:
    return [item["AlgorithmName"] for item in sm.list_algorithms(**filters)["AlgorithmSummaryList"]]


# ------------------------------------------------------------------- status on the virtual clock


def test_given_certified_algorithm_when_described_then_pending_in_progress_then_completed_on_the_virtual_clock(
    sandbox: SageMakerValidation, clock: VirtualClock
) -> None:
    sm = client()
    arn = sm.create_algorithm(**algorithm_request("my-algo-1-0"))["AlgorithmArn"]

    pending = sm.describe_algorithm(AlgorithmName="my-algo-1-0")
    clock.advance(60)
    running = sm.describe_algorithm(AlgorithmName=arn)
    clock.advance(3599)
    still_running = sm.describe_algorithm(AlgorithmName=arn)
    clock.advance(1)
    final = sm.describe_algorithm(AlgorithmName=arn)

    assert arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:algorithm/my-algo-1-0"
    assert pending["AlgorithmStatus"] == "Pending"
    assert pending["AlgorithmStatusDetails"] == {
        "ValidationStatuses": [{"Name": "train-then-transform", "Status": "NotStarted"}],
        "ImageScanStatuses": [
            {"Name": "my-algo-train", "Status": "NotStarted"},
            {"Name": "my-algo-serve", "Status": "NotStarted"},
        ],
    }
    assert running["AlgorithmStatus"] == still_running["AlgorithmStatus"] == "InProgress"
    assert {item["Status"] for item in running["AlgorithmStatusDetails"]["ValidationStatuses"]} == {"InProgress"}
    assert final["AlgorithmStatus"] == "Completed"
    assert final["AlgorithmStatusDetails"] == {
        "ValidationStatuses": [{"Name": "train-then-transform", "Status": "Completed"}],
        "ImageScanStatuses": [
            {"Name": "my-algo-train", "Status": "Completed"},
            {"Name": "my-algo-serve", "Status": "Completed"},
        ],
    }
    assert final["CreationTime"] == pending["CreationTime"]


def test_given_described_algorithm_then_output_is_exactly_describe_algorithm_output_without_product_id(
    sandbox: SageMakerValidation,
) -> None:
    sm = client()
    request = algorithm_request("shaped")
    sm.create_algorithm(**request)

    described = sm.describe_algorithm(AlgorithmName="shaped")
    del described["ResponseMetadata"]

    shape = output_shape("DescribeAlgorithm")
    assert set(shape.required_members) <= set(described) <= set(shape.members)
    assert "ProductId" not in described
    assert list(constraint_errors(described, shape)) == []
    assert not ParamValidator().validate(described, shape).has_errors()
    for key in ("AlgorithmDescription", "TrainingSpecification", "InferenceSpecification", "ValidationSpecification"):
        assert described[key] == request[key]
    assert described["CertifyForMarketplace"] is True


def test_given_failed_outcome_when_validation_time_passed_then_failed_with_training_job_failure_reason(
    clock: VirtualClock,
) -> None:
    outcome = ValidationOutcome(
        pending_seconds=0,
        in_progress_seconds=600,
        validation_failures={EVERY: "Transform job failed"},
        algorithm_validation_failures={EVERY: ALGORITHM_VALIDATION_FAILURE},
        image_scan_failures={"my-algo-serve": "Image has CRITICAL vulnerabilities"},
    )
    with SageMakerValidation(clock, outcome):
        sm = client()
        sm.create_algorithm(**algorithm_request("failing"))
        clock.advance(599)
        running = sm.describe_algorithm(AlgorithmName="failing")
        clock.advance(1)
        final = sm.describe_algorithm(AlgorithmName="failing")
        [summary] = sm.list_algorithms()["AlgorithmSummaryList"]

    assert running["AlgorithmStatus"] == "InProgress"
    assert final["AlgorithmStatus"] == summary["AlgorithmStatus"] == "Failed"
    assert final["AlgorithmStatusDetails"] == {
        "ValidationStatuses": [
            {"Name": "train-then-transform", "Status": "Failed", "FailureReason": ALGORITHM_VALIDATION_FAILURE}
        ],
        "ImageScanStatuses": [
            {"Name": "my-algo-train", "Status": "Completed"},
            {"Name": "my-algo-serve", "Status": "Failed", "FailureReason": "Image has CRITICAL vulnerabilities"},
        ],
    }
    assert ALGORITHM_VALIDATION_FAILURE.startswith("Training job validation failed: AlgorithmError: ")


def test_given_outcome_set_for_a_name_then_that_algorithm_fails_on_its_profile_and_others_complete(
    clock: VirtualClock,
) -> None:
    with SageMakerValidation(clock, ValidationOutcome(pending_seconds=0, in_progress_seconds=60)) as ext:
        ext.set_outcome(
            "bad-algo",
            ValidationOutcome(
                pending_seconds=0, in_progress_seconds=60, validation_failures={"train-then-transform": "no model"}
            ),
        )
        sm = client()
        sm.create_algorithm(**algorithm_request("bad-algo"))
        sm.create_algorithm(**algorithm_request("good-algo"))
        clock.advance(60)

        statuses = {
            item["AlgorithmName"]: item["AlgorithmStatus"] for item in sm.list_algorithms()["AlgorithmSummaryList"]
        }
        bad = sm.describe_algorithm(AlgorithmName="bad-algo")["AlgorithmStatusDetails"]["ValidationStatuses"]

    assert statuses == {"bad-algo": "Failed", "good-algo": "Completed"}
    assert bad == [{"Name": "train-then-transform", "Status": "Failed", "FailureReason": "no model"}]


def test_given_uncertified_algorithm_without_validation_then_completed_with_empty_status_lists(
    sandbox: SageMakerValidation,
) -> None:
    request = algorithm_request("plain")
    del request["ValidationSpecification"], request["CertifyForMarketplace"]
    client().create_algorithm(**request)

    described = client().describe_algorithm(AlgorithmName="plain")

    assert described["AlgorithmStatus"] == "Completed"
    assert described["AlgorithmStatusDetails"] == {"ValidationStatuses": [], "ImageScanStatuses": []}
    assert described["CertifyForMarketplace"] is False


def test_given_local_validator_when_algorithm_created_then_its_real_training_failure_decides_the_profile(
    clock: VirtualClock,
) -> None:
    given: list[Any] = []
    reason = "Training job validation failed: AlgorithmError: too few rows, exit code: 1"

    def local(resource: Any) -> LocalRun:
        given.append(resource)
        return LocalRun(resource.arn, failures={"train-then-transform": reason})

    with SageMakerValidation(clock, ValidationOutcome(pending_seconds=0, in_progress_seconds=60), local=local) as ext:
        arn = client().create_algorithm(**algorithm_request("local"))["AlgorithmArn"]
        clock.advance(60)
        final = client().describe_algorithm(AlgorithmName="local")

    [algorithm] = given
    assert isinstance(algorithm, Algorithm)
    assert algorithm.request["ValidationSpecification"]["ValidationProfiles"][0]["TrainingJobDefinition"]
    assert ext.local_runs[arn].not_run is None
    assert final["AlgorithmStatus"] == "Failed"
    assert final["AlgorithmStatusDetails"]["ValidationStatuses"] == [
        {"Name": "train-then-transform", "Status": "Failed", "FailureReason": reason}
    ]


# ------------------------------------------------------------------- requests refused server-side


def test_given_two_validation_profiles_when_created_then_refused_server_side_and_nothing_created(
    sandbox: SageMakerValidation,
) -> None:
    request = algorithm_request("two-profiles")
    [profile] = request["ValidationSpecification"]["ValidationProfiles"]
    request["ValidationSpecification"]["ValidationProfiles"].append({**copy.deepcopy(profile), "ProfileName": "other"})

    error = refusal(request)

    assert error["Code"] == "ValidationException"
    assert error["Message"].startswith("1 validation error detected: ")
    assert "at 'validationSpecification.validationProfiles' failed to satisfy constraint" in error["Message"]
    assert error["Message"].endswith("Member must have length less than or equal to 1")
    assert names(client()) == []


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("TrainingSpecification.ResourceConfig", "ml.c5.xlarge"),
        ("TransformJobDefinition.TransformResources", "ml.m5.xlarge"),
    ],
)
def test_given_profile_instance_type_not_supported_by_the_algorithm_when_created_then_refused(
    sandbox: SageMakerValidation, member: str, value: str
) -> None:
    request = algorithm_request("bad-instance")
    [profile] = request["ValidationSpecification"]["ValidationProfiles"]
    if member.startswith("Training"):
        profile["TrainingJobDefinition"]["ResourceConfig"]["InstanceType"] = value
    else:
        profile["TransformJobDefinition"]["TransformResources"]["InstanceType"] = value

    error = refusal(request)

    assert error["Code"] == "ValidationException"
    assert value in error["Message"]
    expected = "SupportedTrainingInstanceTypes" if member.startswith("Training") else "SupportedTransformInstanceTypes"
    assert expected in error["Message"]
    assert names(client()) == []


def test_given_a_validation_training_job_with_a_spot_wait_when_created_then_refused_as_sagemaker_does(
    sandbox: SageMakerValidation,
) -> None:
    request = algorithm_request("spot-wait")
    [profile] = request["ValidationSpecification"]["ValidationProfiles"]
    profile["TrainingJobDefinition"]["StoppingCondition"]["MaxWaitTimeInSeconds"] = 7200

    error = refusal(request)

    assert error["Code"] == "ValidationException"
    assert "only supported when EnableManagedSpotTraining is set to true" in error["Message"]
    assert names(client()) == []


@pytest.mark.parametrize(
    ("breaks", "path", "constraint"),
    [
        ("name_pattern", "algorithmName", "Member must satisfy regular expression pattern"),
        ("name_length", "algorithmName", "Member must have length less than or equal to 63"),
        ("role_not_a_role", "validationSpecification.validationRole", "Member must satisfy regular expression"),
        ("nine_channels", "trainingSpecification.trainingChannels", "Member must have length less than or equal to 8"),
        ("no_channel", "trainingSpecification.trainingChannels", "Member must have length greater than or equal to 1"),
        (
            "hyperparameters",
            "trainingSpecification.supportedHyperParameters",
            "Member must have length less than or equal to 100",
        ),
        ("metrics", "trainingSpecification.metricDefinitions", "Member must have length less than or equal to 40"),
        (
            "instance_enum",
            "trainingSpecification.supportedTrainingInstanceTypes.1.member",
            "Member must satisfy enum value set",
        ),
        ("no_training_image", "trainingSpecification.trainingImage", "Member must not be null"),
    ],
)
def test_given_request_breaking_the_service_model_when_sent_unchecked_then_refused_naming_the_member(
    sandbox: SageMakerValidation, breaks: str, path: str, constraint: str
) -> None:
    request = algorithm_request("broken")
    training = request["TrainingSpecification"]
    if breaks == "name_pattern":
        request["AlgorithmName"] = "my_algo-"
    elif breaks == "name_length":
        request["AlgorithmName"] = "a" * 64
    elif breaks == "role_not_a_role":
        request["ValidationSpecification"]["ValidationRole"] = f"arn:aws:iam::{ACCOUNT}:user/validation"
    elif breaks == "nine_channels":
        training["TrainingChannels"] = [{**training["TrainingChannels"][0], "Name": f"c{i}"} for i in range(9)]
    elif breaks == "no_channel":
        training["TrainingChannels"] = []
    elif breaks == "hyperparameters":
        training["SupportedHyperParameters"] = [{"Name": f"h{i}", "Type": "FreeText"} for i in range(101)]
    elif breaks == "metrics":
        training["MetricDefinitions"] = [{"Name": f"m{i}", "Regex": "m=(.*)"} for i in range(41)]
    elif breaks == "instance_enum":
        training["SupportedTrainingInstanceTypes"] = ["ml.m4.large"]
    elif breaks == "no_training_image":
        del training["TrainingImage"]

    error = refusal(request)

    assert error["Code"] == "ValidationException"
    assert f"at '{path}' failed to satisfy constraint: {constraint}" in error["Message"]
    assert names(client()) == []


def test_given_certified_algorithm_without_validation_specification_when_created_then_refused(
    sandbox: SageMakerValidation,
) -> None:
    request = algorithm_request("uncheckable")
    del request["ValidationSpecification"]

    error = refusal(request)

    assert error["Code"] == "ValidationException"
    assert "ValidationSpecification is required when CertifyForMarketplace is true" in error["Message"]


def test_given_existing_name_when_created_again_then_validation_exception_and_first_kept(
    sandbox: SageMakerValidation,
) -> None:
    sm = client()
    arn = sm.create_algorithm(**algorithm_request("dup"))["AlgorithmArn"]
    other = algorithm_request("DUP", AlgorithmDescription="another one")

    with pytest.raises(ClientError) as conflict:
        sm.create_algorithm(**other)

    assert conflict.value.response["Error"]["Code"] == "ValidationException"
    assert conflict.value.response["Error"]["Message"] == f"Algorithm already exists: {arn}"
    assert sm.describe_algorithm(AlgorithmName="dup")["AlgorithmDescription"] == "Gradient boosting for tabular data"
    assert names(sm) == ["dup"]


# ------------------------------------------------------------------- describe, list, delete


def test_given_missing_algorithm_when_described_then_validation_exception_could_not_find(
    sandbox: SageMakerValidation,
) -> None:
    sm = client()
    arn = sm.create_algorithm(**algorithm_request("present"))["AlgorithmArn"]

    with pytest.raises(ClientError) as missing:
        sm.describe_algorithm(AlgorithmName="absent")
    with pytest.raises(ClientError) as other_region:
        sm.describe_algorithm(AlgorithmName=arn.replace(REGION, "us-west-2"))
    with pytest.raises(ClientError) as bad_name:
        unchecked_client().describe_algorithm(AlgorithmName="not a name")

    assert missing.value.response["Error"] == {
        "Code": "ValidationException",
        "Message": f'Could not find algorithm "arn:aws:sagemaker:{REGION}:{ACCOUNT}:algorithm/absent".',
    }
    assert other_region.value.response["Error"]["Message"] == f"ARN should be scoped to correct region: {REGION}"
    assert "at 'algorithmName' failed to satisfy constraint" in bad_name.value.response["Error"]["Message"]


def test_given_algorithms_when_listed_then_filtered_sorted_and_paged(
    sandbox: SageMakerValidation, clock: VirtualClock
) -> None:
    sm = client()
    started = clock.now()
    for name in ("beta-algo", "alpha-algo", "gamma-model"):
        sm.create_algorithm(**algorithm_request(name))
        clock.advance(10)

    by_creation = names(sm)
    created_between = names(
        sm, CreationTimeAfter=started + dt.timedelta(seconds=5), CreationTimeBefore=started + dt.timedelta(seconds=15)
    )
    containing = names(sm, NameContains="ALGO")
    by_name_descending = names(sm, SortBy="Name", SortOrder="Descending")
    first = sm.list_algorithms(SortBy="Name", MaxResults=2)
    second = sm.list_algorithms(SortBy="Name", MaxResults=2, NextToken=first["NextToken"])
    [summary] = sm.list_algorithms(NameContains="gamma")["AlgorithmSummaryList"]

    assert by_creation == ["beta-algo", "alpha-algo", "gamma-model"]
    assert created_between == ["alpha-algo"]
    assert containing == ["beta-algo", "alpha-algo"]
    assert by_name_descending == ["gamma-model", "beta-algo", "alpha-algo"]
    assert [item["AlgorithmName"] for item in first["AlgorithmSummaryList"]] == ["alpha-algo", "beta-algo"]
    assert [item["AlgorithmName"] for item in second["AlgorithmSummaryList"]] == ["gamma-model"]
    assert "NextToken" not in second
    assert set(summary) == {"AlgorithmName", "AlgorithmArn", "AlgorithmDescription", "CreationTime", "AlgorithmStatus"}
    assert summary["AlgorithmStatus"] == "Pending"


def test_given_algorithm_when_deleted_then_gone_and_name_reusable(sandbox: SageMakerValidation) -> None:
    sm = client()
    sm.create_algorithm(**algorithm_request("to-delete"))

    sm.delete_algorithm(AlgorithmName="to-delete")
    with pytest.raises(ClientError) as gone:
        sm.describe_algorithm(AlgorithmName="to-delete")
    listed = names(sm)
    with pytest.raises(ClientError) as again:
        sm.delete_algorithm(AlgorithmName="to-delete")
    recreated = sm.create_algorithm(**algorithm_request("to-delete"))

    assert gone.value.response["Error"]["Code"] == "ValidationException"
    assert listed == []
    assert again.value.response["Error"]["Code"] == "ValidationException"
    assert recreated["AlgorithmArn"].endswith(":algorithm/to-delete")
    assert sm.describe_algorithm(AlgorithmName="to-delete")["AlgorithmStatus"] == "Pending"


def seller_session() -> boto3.session.Session:
    """Temporary credentials in the seller's account (not moto's default one), as the sandbox's seller has."""
    credentials = SESSION.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{SELLER}:role/publisher", RoleSessionName="seller"
    )["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    )


def test_given_seller_account_credentials_in_us_east_2_then_algorithm_lives_in_that_account_and_region_only(
    sandbox: SageMakerValidation,
) -> None:
    seller = seller_session()
    seller_sm = seller.client("sagemaker")

    arn = seller_sm.create_algorithm(**algorithm_request("seller-algo", account=SELLER))["AlgorithmArn"]
    described = seller_sm.describe_algorithm(AlgorithmName=arn)

    assert arn == f"arn:aws:sagemaker:us-east-2:{SELLER}:algorithm/seller-algo"
    assert described["AlgorithmArn"] == arn
    assert names(seller_sm) == ["seller-algo"]
    assert names(client()) == []
    assert names(seller.client("sagemaker", region_name="us-west-2")) == []
    with pytest.raises(ClientError) as other_account:
        client().describe_algorithm(AlgorithmName="seller-algo")
    assert "Could not find algorithm" in other_account.value.response["Error"]["Message"]


def test_given_the_emulator_endpoint_when_the_seller_calls_over_http_then_served_as_in_process(
    sandbox: SageMakerValidation, clock: VirtualClock
) -> None:
    server = EmulatorServer()
    received: list[ApiCall] = []
    server.observers.append(received.append)
    server.start()
    try:
        sm = seller_session().client("sagemaker", endpoint_url=server.endpoint)
        arn = sm.create_algorithm(**algorithm_request("over-http", account=SELLER))["AlgorithmArn"]
        clock.advance(3660)
        described = sm.describe_algorithm(AlgorithmName="over-http")
        listed = names(sm)
        sm.delete_algorithm(AlgorithmName="over-http")
    finally:
        server.stop()

    assert arn == f"arn:aws:sagemaker:{REGION}:{SELLER}:algorithm/over-http"
    assert described["AlgorithmStatus"] == "Completed"
    assert listed == ["over-http"]
    assert {"CreateAlgorithm", "DescribeAlgorithm", "ListAlgorithms", "DeleteAlgorithm"} <= {
        call.operation for call in received
    }

"""AWS faults on every operation the stack calls: the release ends ready, or failed and
announced; once AWS has recovered a re-run completes; one model package; what is published
is byte-identical.

Each fault is injected at the emulator's endpoint (sandbox/api_faults.py) for the stack's own
calls: ``throttle`` and ``5xx`` ten times in a row (past the SDK's own 8 attempts, so the
pipeline's retries and failure handling answer them), ``lost`` once (the call takes effect,
its answer is lost, and the caller retries something that already happened). The full
matrix runs with ``make faults``; a fast subset runs in ``make test``, in under two minutes:
its throttling is absorbed by the SDK's own retries (``times=3``), and one 5xx fault stays
past them, as in the matrix, for the state machine's retries (the SDK's back-off between its
8 attempts is real time: about 50 s).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tests.fixtures.images import WrittenLayout, write_layout

from sandbox.api_faults import ApiFault
from sandbox.oci import open_layout
from sandbox.runner import ROOT, SAMPLE_VALIDATION_INPUT, RunOptions, Sandbox, load_release, sample_model_data

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "events" / "release.example.yaml"
# Every (service, operation) the stack calls on a release's way to ready (checked below
# against a clean run, so the matrix cannot fall behind the code).
OPERATIONS = [
    ("dynamodb", "DeleteItem"), ("dynamodb", "GetItem"), ("dynamodb", "PutItem"),
    ("ecr", "BatchCheckLayerAvailability"), ("ecr", "BatchGetImage"), ("ecr", "CompleteLayerUpload"),
    ("ecr", "CreateRepository"), ("ecr", "DescribeImageScanFindings"), ("ecr", "DescribeImages"),
    ("ecr", "DescribeRepositories"), ("ecr", "GetAuthorizationToken"), ("ecr", "GetDownloadUrlForLayer"),
    ("ecr", "InitiateLayerUpload"),
    ("ecr", "PutImage"), ("ecr", "StartImageScan"), ("ecr", "UploadLayerPart"), ("events", "PutEvents"),
    ("events", "PutRule"), ("events", "PutTargets"),
    ("lambda", "Invoke"), ("s3", "CopyObject"), ("s3", "CreateBucket"), ("s3", "GetBucketPolicy"),
    ("s3", "PutBucketPolicy"), ("s3", "GetObject"), ("s3", "HeadBucket"), ("s3", "ListObjectsV2"), ("s3", "PutObject"),
    ("s3", "HeadObject"), ("s3", "PutBucketEncryption"), ("s3", "PutBucketLifecycleConfiguration"),
    ("s3", "PutBucketTagging"), ("s3", "PutPublicAccessBlock"), ("sagemaker", "CreateModelPackage"),
    ("sagemaker", "DescribeModelPackage"), ("sns", "Publish"), ("states", "DescribeExecution"),
    ("states", "SendTaskSuccess"), ("states", "StartExecution"), ("sts", "GetCallerIdentity"),
]  # fmt: skip
TIMES = {"throttle": 10, "5xx": 10, "lost": 1}
FAST = [
    "lost:sagemaker:CreateModelPackage",
    "5xx:s3:CopyObject",
    "throttle:ecr:PutImage:times=3",
    "lost:states:StartExecution",
    "lost:ecr:CompleteLayerUpload",
    "5xx:sns:Publish",
]
MATRIX = [f"{kind}:{service}:{operation}" for service, operation in OPERATIONS for kind in TIMES]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> WrittenLayout:
    return write_layout(tmp_path_factory.mktemp("image"), "docker-v2", tag="1.2.0")


def test_given_a_clean_release_then_the_fault_matrix_covers_every_operation_the_stack_calls(
    image: WrittenLayout, tmp_path: Path
) -> None:
    sandbox = Sandbox(
        load_release(EXAMPLE), RunOptions(release=EXAMPLE, validation="completed", log_file=tmp_path / "lambda.log")
    )
    with sandbox.running():
        sandbox.seed_and_trigger(open_layout(image.path))

    assert sorted(sandbox.audit.operations) == sorted(OPERATIONS), set(sandbox.audit.operations) ^ set(OPERATIONS)


def released_under(fault: str, image: WrittenLayout, log_file: Path) -> None:
    """Run the example release with ``fault``, then once more, and check what it left."""
    kind = fault.split(":", maxsplit=1)[0]
    api_fault = ApiFault.parse(fault if ":times=" in fault else f"{fault}:times={TIMES[kind]}")
    sandbox = Sandbox(
        load_release(EXAMPLE),
        RunOptions(release=EXAMPLE, validation="completed", log_file=log_file, api_faults=[api_fault]),
    )
    with sandbox.running():
        _, first = sandbox.seed_and_trigger(open_layout(image.path))
        announced = [event["detail-type"] for event in sandbox.drain("events")]
        notified = [note.get("Subject", "") for note in sandbox.drain("notifications")]
        sandbox.api_faults.recover()
        again = sandbox.redeliver()
        region = sandbox.publishing_region
        packages = sandbox.aws("sagemaker", region).list_model_packages()["ModelPackageSummaryList"]
        repository = sandbox.spec.containers[0].image_ref.repository
        images = sandbox.aws("ecr", region).describe_images(repositoryName=repository)["imageDetails"]
        s3 = sandbox.aws("s3", region)
        bucket = f"mlpublish-{sandbox.account_id}-{region}"
        artifacts = [
            hashlib.sha256(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()).hexdigest()
            for item in s3.list_objects_v2(Bucket=bucket, Prefix="artifacts/").get("Contents", [])
        ]

    assert api_fault.fired >= 1, f"{fault} never fired: the operation was not called"
    if first.status != "SUCCEEDED":  # what happened reached a person, on one channel or the other
        assert announced or notified, fault
    assert again.status == "SUCCEEDED", fault
    assert len(packages) == 1, fault
    assert [detail["imageDigest"] for detail in images] == [image.top_digest], fault
    assert sorted(artifacts) == sorted(
        hashlib.sha256(data).hexdigest() for data in (sample_model_data(), SAMPLE_VALIDATION_INPUT)
    ), fault


@pytest.mark.parametrize("fault", FAST)
def test_given_an_aws_fault_when_released_then_ready_or_announced_and_a_rerun_publishes_exactly_once(
    fault: str, image: WrittenLayout, tmp_path: Path
) -> None:
    released_under(fault, image, tmp_path / "lambda.log")


@pytest.mark.faults
@pytest.mark.parametrize("fault", [fault for fault in MATRIX if fault not in FAST])
def test_given_any_aws_fault_on_any_operation_then_ready_or_announced_and_a_rerun_publishes_exactly_once(
    fault: str, image: WrittenLayout, tmp_path: Path
) -> None:
    released_under(fault, image, tmp_path / "lambda.log")

"""The sandbox's moto extensions behave as the real services do, against boto3 clients."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
    WaitFunction,
)

from sandbox.clock import VirtualClock
from sandbox.ext_ecr import FAULT_CORRUPT_BLOB, UNSUPPORTED_IMAGE, EcrExtension, ScanOutcome
from sandbox.ext_sagemaker import SageMakerValidation, ValidationOutcome

pytestmark = pytest.mark.integration

REGION = "us-east-1"
ACCOUNT = "123456789012"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

# One session for every test: moto resets boto3's default session per mock, and loading
# service models again for each test's clients would dominate the run time.
SESSION = boto3.session.Session(region_name=REGION)


@functools.cache
def client(service: str) -> Any:
    return SESSION.client(service)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------- fixtures


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


@pytest.fixture
def clock(aws: None) -> Iterator[VirtualClock]:
    with VirtualClock() as installed:
        yield installed


@pytest.fixture
def ecr_ext(clock: VirtualClock) -> Iterator[EcrExtension]:
    with EcrExtension(clock) as installed:
        yield installed


@pytest.fixture
def role_arn(aws: None) -> str:
    iam = client("iam")
    return str(iam.create_role(RoleName="sandbox", AssumeRolePolicyDocument="{}")["Role"]["Arn"])


def run_state_machine(definition: dict[str, Any], role_arn: str, payload: Any = None) -> dict[str, Any]:
    sfn = client("stepfunctions")
    machine = sfn.create_state_machine(name="machine", definition=json.dumps(definition), roleArn=role_arn)
    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input=json.dumps(payload or {}))[
        "executionArn"
    ]
    # Generous for a loaded machine: a wait that slept for real would take an hour.
    deadline = time.monotonic() + 60
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution did not finish within 60 real seconds"
        time.sleep(0.01)
    return dict(described)


def upload_blob(ecr: Any, repository: str, data: bytes, declared: str) -> dict[str, Any]:
    upload = ecr.initiate_layer_upload(repositoryName=repository)
    ecr.upload_layer_part(
        repositoryName=repository,
        uploadId=upload["uploadId"],
        partFirstByte=0,
        partLastByte=len(data) - 1,
        layerPartBlob=data,
    )
    return dict(
        ecr.complete_layer_upload(repositoryName=repository, uploadId=upload["uploadId"], layerDigests=[declared])
    )


def image_manifest(config: bytes, layers: list[bytes]) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_V2,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": sha256(config),
            },
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(x), "digest": sha256(x)}
                for x in layers
            ],
        },
        indent=3,
    )


@pytest.fixture
def pushed_image(ecr_ext: EcrExtension) -> dict[str, Any]:
    """A repository holding one image: a config blob and two layers, the second the larger."""
    ecr = client("ecr")
    ecr.create_repository(repositoryName="source")
    config, small, large = b'{"os": "linux"}', b"small layer" * 10, bytes(range(256)) * 400
    for blob in (config, small, large):
        upload_blob(ecr, "source", blob, sha256(blob))
    manifest = image_manifest(config, [small, large])
    ecr.put_image(repositoryName="source", imageManifest=manifest, imageTag="v1")
    return {"manifest": manifest, "config": config, "small": small, "large": large}


# ------------------------------------------------------------------- clock


def test_given_wait_of_an_hour_when_executed_then_finishes_at_once_and_clock_counts_it(
    clock: VirtualClock, role_arn: str
) -> None:
    definition = {
        "StartAt": "Wait",
        "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "Next": "Done"}, "Done": {"Type": "Succeed"}},
    }
    started = time.monotonic()

    result = run_state_machine(definition, role_arn)

    assert result["status"] == "SUCCEEDED"
    assert time.monotonic() - started < 60  # not the hour
    assert clock.virtual_seconds == 3600
    assert clock.stats().wait_states == 1


def token_task(queue_url: str, timeout: int) -> dict[str, Any]:
    return {
        "StartAt": "Await",
        "States": {
            "Await": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue_url, "MessageBody": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": timeout,
                "End": True,
            }
        },
    }


def test_given_a_task_token_nobody_answers_then_it_times_out_in_virtual_time(
    clock: VirtualClock, role_arn: str
) -> None:
    queue = client("sqs").create_queue(QueueName="tokens")["QueueUrl"]

    result = run_state_machine(token_task(queue, 1800), role_arn)

    assert result["status"] == "FAILED"
    history = client("stepfunctions").get_execution_history(executionArn=result["executionArn"])["events"]
    assert any(event.get("executionFailedEventDetails", {}).get("error") == "States.Timeout" for event in history)
    assert clock.virtual_seconds == 1800
    assert clock.stats().token_waits == 1


def test_given_a_task_token_answered_by_a_timer_then_virtual_time_jumps_to_it_and_no_further(
    clock: VirtualClock, role_arn: str
) -> None:
    sqs, sfn = client("sqs"), client("stepfunctions")
    queue = sqs.create_queue(QueueName="tokens")["QueueUrl"]

    def answer() -> None:  # what a state-change event's consumer does, 10 virtual minutes in
        [message] = sqs.receive_message(QueueUrl=queue)["Messages"]
        sfn.send_task_success(taskToken=json.loads(message["Body"])["token"], output=json.dumps({"done": True}))

    clock.schedule(clock.now() + dt.timedelta(minutes=10), answer)
    result = run_state_machine(token_task(queue, 1800), role_arn)

    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"done": True}
    assert clock.virtual_seconds == 600
    assert clock.stats().timers_fired == 1


def test_given_timestamp_wait_when_executed_then_waits_until_that_virtual_time(
    clock: VirtualClock, role_arn: str
) -> None:
    target = (clock.now() + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    definition = {
        "StartAt": "Until",
        "States": {"Until": {"Type": "Wait", "TimestampPath": "$.until", "End": True}},
    }

    result = run_state_machine(definition, role_arn, {"until": target})

    assert result["status"] == "SUCCEEDED"
    assert 7198 <= clock.virtual_seconds <= 7200


def test_given_clock_uninstalled_then_moto_waits_are_restored(aws: None) -> None:
    original = WaitFunction._wait_interval
    clock = VirtualClock()

    undo = clock.install()
    patched = WaitFunction._wait_interval
    undo()

    assert patched is not original
    assert WaitFunction._wait_interval is original


# ------------------------------------------------------------------- ecr blobs and manifests


def test_given_upload_with_wrong_digest_when_completed_then_rejected_and_right_digest_stored(
    ecr_ext: EcrExtension,
) -> None:
    ecr = client("ecr")
    ecr.create_repository(repositoryName="target")
    blob = b"layer bytes" * 100

    with pytest.raises(ClientError) as wrong:
        upload_blob(ecr, "target", blob, sha256(b"something else"))
    stored = upload_blob(ecr, "target", blob, sha256(blob))
    with pytest.raises(ClientError) as again:
        upload_blob(ecr, "target", blob, sha256(blob))

    assert wrong.value.response["Error"]["Code"] == "InvalidLayerException"
    assert stored["layerDigest"] == sha256(blob)
    assert again.value.response["Error"]["Code"] == "LayerAlreadyExistsException"
    assert ecr_ext.blob_path(sha256(blob)).read_bytes() == blob
    available = ecr.batch_check_layer_availability(repositoryName="target", layerDigests=[sha256(blob)])
    assert available["layers"][0]["layerSize"] == len(blob)


def test_given_parts_out_of_order_or_too_small_when_uploaded_then_rejected(ecr_ext: EcrExtension) -> None:
    ecr = client("ecr")
    ecr.create_repository(repositoryName="target")
    upload_id = ecr.initiate_layer_upload(repositoryName="target")["uploadId"]
    ecr.upload_layer_part(
        repositoryName="target", uploadId=upload_id, partFirstByte=0, partLastByte=2, layerPartBlob=b"abc"
    )

    with pytest.raises(ClientError) as gap:
        ecr.upload_layer_part(
            repositoryName="target", uploadId=upload_id, partFirstByte=5, partLastByte=7, layerPartBlob=b"def"
        )
    ecr.upload_layer_part(
        repositoryName="target", uploadId=upload_id, partFirstByte=3, partLastByte=5, layerPartBlob=b"def"
    )
    with pytest.raises(ClientError) as small:
        ecr.complete_layer_upload(repositoryName="target", uploadId=upload_id, layerDigests=[sha256(b"abcdef")])

    assert gap.value.response["Error"]["Code"] == "InvalidLayerPartException"
    assert small.value.response["Error"]["Code"] == "LayerPartTooSmallException"


def test_given_manifest_with_missing_blob_when_put_then_rejected(ecr_ext: EcrExtension) -> None:
    ecr = client("ecr")
    ecr.create_repository(repositoryName="target")
    config, layer = b"{}", b"layer"
    upload_blob(ecr, "target", layer, sha256(layer))

    with pytest.raises(ClientError) as missing:
        ecr.put_image(repositoryName="target", imageManifest=image_manifest(config, [layer]), imageTag="v1")

    assert missing.value.response["Error"]["Code"] == "LayersNotFoundException"
    assert sha256(config) in missing.value.response["Error"]["Message"]


def test_given_complete_image_when_put_then_digest_is_sha256_of_exact_manifest_bytes(
    pushed_image: dict[str, Any],
) -> None:
    ecr = client("ecr")

    described = ecr.describe_images(repositoryName="source")["imageDetails"][0]
    with pytest.raises(ClientError) as mismatch:
        ecr.put_image(
            repositoryName="source",
            imageManifest=pushed_image["manifest"],
            imageTag="v2",
            imageDigest=sha256(b"not the manifest"),
        )

    assert described["imageDigest"] == sha256(pushed_image["manifest"].encode())
    assert mismatch.value.response["Error"]["Code"] == "ImageDigestDoesNotMatchException"


def test_given_index_with_missing_child_when_put_then_rejected_until_child_exists(
    pushed_image: dict[str, Any],
) -> None:
    ecr = client("ecr")
    child = {"mediaType": DOCKER_V2, "size": 1, "digest": sha256(b"absent")}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child]}

    with pytest.raises(ClientError) as missing:
        ecr.put_image(repositoryName="source", imageManifest=json.dumps(index), imageTag="multi")
    child["digest"] = sha256(pushed_image["manifest"].encode())
    accepted = ecr.put_image(repositoryName="source", imageManifest=json.dumps(index), imageTag="multi")

    assert missing.value.response["Error"]["Code"] == "ReferencedImagesNotFoundException"
    assert accepted["image"]["imageId"]["imageDigest"] == sha256(json.dumps(index).encode())


# ------------------------------------------------------------------- ecr downloads and faults


def test_given_stored_layer_when_download_url_fetched_then_streams_exact_bytes(
    pushed_image: dict[str, Any],
) -> None:
    ecr = client("ecr")
    large = pushed_image["large"]

    answer = ecr.get_download_url_for_layer(repositoryName="source", layerDigest=sha256(large))
    whole = requests.get(answer["downloadUrl"], timeout=5)
    part = requests.get(answer["downloadUrl"], headers={"Range": "bytes=100-199"}, timeout=5)

    assert answer["layerDigest"] == sha256(large)
    assert answer["downloadUrl"].startswith("http://127.0.0.1:")
    assert whole.content == large
    assert (part.status_code, part.content) == (206, large[100:200])


def test_given_unknown_or_unreferenced_layer_when_download_url_requested_then_ecr_errors(
    pushed_image: dict[str, Any],
) -> None:
    ecr = client("ecr")
    orphan = b"uploaded but in no image"
    upload_blob(ecr, "source", orphan, sha256(orphan))

    with pytest.raises(ClientError) as unknown:
        ecr.get_download_url_for_layer(repositoryName="source", layerDigest=sha256(b"never uploaded"))
    with pytest.raises(ClientError) as unreferenced:
        ecr.get_download_url_for_layer(repositoryName="source", layerDigest=sha256(orphan))

    assert unknown.value.response["Error"]["Code"] == "LayersNotFoundException"
    assert unreferenced.value.response["Error"]["Code"] == "LayerInaccessibleException"


def test_given_corrupt_blob_fault_when_largest_layer_downloaded_then_exactly_one_byte_differs(
    pushed_image: dict[str, Any], ecr_ext: EcrExtension
) -> None:
    ecr = client("ecr")
    large, small = pushed_image["large"], pushed_image["small"]

    target = ecr_ext.corrupt_blob()
    served = requests.get(
        ecr.get_download_url_for_layer(repositoryName="source", layerDigest=sha256(large))["downloadUrl"], timeout=5
    ).content
    intact = requests.get(
        ecr.get_download_url_for_layer(repositoryName="source", layerDigest=sha256(small))["downloadUrl"], timeout=5
    ).content

    assert target == sha256(large)
    assert len(served) == len(large)
    assert sum(a != b for a, b in zip(served, large, strict=True)) == 1
    assert intact == small


def test_given_fault_option_when_first_download_then_largest_layer_of_that_repository_is_corrupted(
    clock: VirtualClock,
) -> None:
    with EcrExtension(clock, fault=FAULT_CORRUPT_BLOB) as ext:
        ecr = client("ecr")
        ecr.create_repository(repositoryName="source")
        config, layer = b"{}", b"x" * 1000
        for blob in (config, layer):
            upload_blob(ecr, "source", blob, sha256(blob))
        ecr.put_image(repositoryName="source", imageManifest=image_manifest(config, [layer]), imageTag="v1")

        url = ecr.get_download_url_for_layer(repositoryName="source", layerDigest=sha256(config))["downloadUrl"]

        assert ext.corrupted_digest == sha256(layer)
        assert requests.get(url, timeout=5).content == config


# ------------------------------------------------------------------- ecr events and scans


def test_given_push_when_image_put_then_ecr_image_action_event_reaches_eventbridge(
    pushed_image: dict[str, Any], ecr_ext: EcrExtension
) -> None:
    sqs, events, ecr = client("sqs"), client("events"), client("ecr")
    queue_url = sqs.create_queue(QueueName="pushes")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="ecr-push", EventPattern=json.dumps({"source": ["aws.ecr"], "detail-type": ["ECR Image Action"]})
    )
    events.put_targets(Rule="ecr-push", Targets=[{"Id": "queue", "Arn": queue_arn}])

    ecr.put_image(repositoryName="source", imageManifest=pushed_image["manifest"], imageTag="v2")

    body = json.loads(sqs.receive_message(QueueUrl=queue_url)["Messages"][0]["Body"])
    assert body["detail"] == {
        "result": "SUCCESS",
        "repository-name": "source",
        "image-digest": sha256(pushed_image["manifest"].encode()),
        "action-type": "PUSH",
        "image-tag": "v2",
    }
    assert (body["source"], body["detail-type"], body["region"]) == ("aws.ecr", "ECR Image Action", REGION)
    assert ecr_ext.event_errors == []


def test_given_default_outcome_when_scanned_then_complete_without_findings_and_once_a_day(
    pushed_image: dict[str, Any], clock: VirtualClock
) -> None:
    # botocore retries LimitExceededException as throttling: one attempt keeps the test fast.
    ecr = SESSION.client("ecr", config=Config(retries={"total_max_attempts": 1}))
    image = {"imageTag": "v1"}

    started = ecr.start_image_scan(repositoryName="source", imageId=image)
    findings = ecr.describe_image_scan_findings(repositoryName="source", imageId=image)
    with pytest.raises(ClientError) as quota:
        ecr.start_image_scan(repositoryName="source", imageId=image)
    clock.advance(24 * 3600)
    ecr.start_image_scan(repositoryName="source", imageId=image)

    assert started["imageScanStatus"]["status"] == "IN_PROGRESS"
    assert findings["imageScanStatus"]["status"] == "COMPLETE"
    assert findings["imageScanFindings"]["findings"] == []
    assert findings["imageScanFindings"]["findingSeverityCounts"] == {}
    assert quota.value.response["Error"]["Code"] == "LimitExceededException"


def test_given_scan_outcome_with_findings_when_described_then_in_progress_until_virtual_time_passes(
    pushed_image: dict[str, Any], ecr_ext: EcrExtension, clock: VirtualClock
) -> None:
    ecr = client("ecr")
    ecr_ext.set_scan_outcome(ScanOutcome(severity_counts={"CRITICAL": 1, "HIGH": 2, "LOW": 0}, duration_seconds=90))
    ecr.start_image_scan(repositoryName="source", imageId={"imageTag": "v1"})

    running = ecr.describe_image_scan_findings(repositoryName="source", imageId={"imageTag": "v1"})
    clock.advance(90)
    done = ecr.describe_image_scan_findings(repositoryName="source", imageId={"imageTag": "v1"})

    assert running["imageScanStatus"]["status"] == "IN_PROGRESS"
    assert "imageScanFindings" not in running
    assert done["imageScanStatus"]["status"] == "COMPLETE"
    assert done["imageScanFindings"]["findingSeverityCounts"] == {"CRITICAL": 1, "HIGH": 2}
    assert len(done["imageScanFindings"]["findings"]) == 3


def test_given_unsupported_image_outcome_when_scanned_then_status_unsupported_image(
    pushed_image: dict[str, Any], ecr_ext: EcrExtension
) -> None:
    ecr = client("ecr")
    ecr_ext.set_scan_outcome(UNSUPPORTED_IMAGE, repository_name="source")

    ecr.start_image_scan(repositoryName="source", imageId={"imageTag": "v1"})
    result = ecr.describe_image_scan_findings(repositoryName="source", imageId={"imageTag": "v1"})

    assert result["imageScanStatus"]["status"] == "UNSUPPORTED_IMAGE"
    assert "UnsupportedImageError" in result["imageScanStatus"]["description"]


# ------------------------------------------------------------------- sagemaker


def model_package_request(name: str, **extra: Any) -> dict[str, Any]:
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/my-model@sha256:{'a' * 64}"
    return {
        "ModelPackageName": name,
        "InferenceSpecification": {
            "Containers": [{"Image": image}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
            "SupportedTransformInstanceTypes": ["ml.m5.large"],
            "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
        },
        "ValidationSpecification": {
            "ValidationRole": f"arn:aws:iam::{ACCOUNT}:role/validation",
            "ValidationProfiles": [
                {
                    "ProfileName": "batch-profile",
                    "TransformJobDefinition": {
                        "TransformInput": {
                            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in"}}
                        },
                        "TransformOutput": {"S3OutputPath": "s3://b/out"},
                        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                    },
                }
            ],
        },
        "CertifyForMarketplace": True,
        **extra,
    }


def test_given_certified_package_when_described_then_in_progress_until_virtual_time_then_failed_with_reasons(
    clock: VirtualClock,
) -> None:
    outcome = ValidationOutcome(
        pending_seconds=60,
        in_progress_seconds=3600,
        validation_failures={"batch-profile": "Transform job failed: ClientError: 400"},
        image_scan_failures={"*": "Image has CRITICAL vulnerabilities"},
    )
    with SageMakerValidation(clock, outcome):
        sagemaker = client("sagemaker")
        arn = sagemaker.create_model_package(**model_package_request("my-model-1-0"))["ModelPackageArn"]

        pending = sagemaker.describe_model_package(ModelPackageName="my-model-1-0")
        clock.advance(60)
        running = sagemaker.describe_model_package(ModelPackageName=arn)
        clock.advance(3599)
        still_running = sagemaker.describe_model_package(ModelPackageName=arn)
        clock.advance(1)
        final = sagemaker.describe_model_package(ModelPackageName=arn)

    assert pending["ModelPackageStatus"] == "Pending"
    assert pending["ModelPackageStatusDetails"]["ValidationStatuses"] == [
        {"Name": "batch-profile", "Status": "NotStarted"}
    ]
    assert running["ModelPackageStatus"] == still_running["ModelPackageStatus"] == "InProgress"
    assert final["ModelPackageStatus"] == "Failed"
    assert final["ModelPackageStatusDetails"] == {
        "ValidationStatuses": [
            {"Name": "batch-profile", "Status": "Failed", "FailureReason": "Transform job failed: ClientError: 400"}
        ],
        "ImageScanStatuses": [
            {"Name": "my-model", "Status": "Failed", "FailureReason": "Image has CRITICAL vulnerabilities"}
        ],
    }


def test_given_default_outcome_when_validation_time_passed_then_completed(clock: VirtualClock) -> None:
    with SageMakerValidation(clock, ValidationOutcome(pending_seconds=0, in_progress_seconds=600)):
        sagemaker = client("sagemaker")
        sagemaker.create_model_package(**model_package_request("ok-model"))
        clock.advance(600)

        final = sagemaker.describe_model_package(ModelPackageName="ok-model")

    assert final["ModelPackageStatus"] == "Completed"
    assert {item["Status"] for item in final["ModelPackageStatusDetails"]["ValidationStatuses"]} == {"Completed"}


def test_given_existing_name_when_created_again_then_conflict_unless_same_client_token(clock: VirtualClock) -> None:
    with SageMakerValidation(clock):
        sagemaker = client("sagemaker")
        arn = sagemaker.create_model_package(**model_package_request("dup", ClientToken="release-r1"))[
            "ModelPackageArn"
        ]

        retried = sagemaker.create_model_package(**model_package_request("dup", ClientToken="release-r1"))
        with pytest.raises(ClientError) as conflict:
            sagemaker.create_model_package(**model_package_request("dup", ClientToken="release-r2"))

    assert retried["ModelPackageArn"] == arn
    assert conflict.value.response["Error"]["Code"] == "ValidationException"
    assert "ModelPackage already exists" in conflict.value.response["Error"]["Message"]


def test_given_package_when_deleted_then_gone_and_name_reusable(clock: VirtualClock) -> None:
    with SageMakerValidation(clock):
        sagemaker = client("sagemaker")
        sagemaker.create_model_package(**model_package_request("to-delete"))

        sagemaker.delete_model_package(ModelPackageName="to-delete")
        with pytest.raises(ClientError) as gone:
            sagemaker.describe_model_package(ModelPackageName="to-delete")
        recreated = sagemaker.create_model_package(**model_package_request("to-delete"))

    assert gone.value.response["Error"]["Code"] == "ValidationException"
    assert recreated["ModelPackageArn"].endswith("model-package/to-delete")


def test_given_uncertified_package_without_validation_then_completed_with_empty_status_lists(
    clock: VirtualClock,
) -> None:
    request = model_package_request("plain")
    del request["ValidationSpecification"], request["CertifyForMarketplace"]
    with SageMakerValidation(clock):
        sagemaker = client("sagemaker")
        sagemaker.create_model_package(**request)

        described = sagemaker.describe_model_package(ModelPackageName="plain")

    assert described["ModelPackageStatus"] == "Completed"
    assert described["ModelPackageStatusDetails"] == {"ValidationStatuses": [], "ImageScanStatuses": []}

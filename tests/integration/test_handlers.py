"""Each Lambda handler, called as Lambda calls it, against moto with the environment the template sets."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import json
import sys
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.ecr.models import ecr_backends
from tests.conftest import FakeLambdaContext
from tests.fixtures.images import base_layer
from tests.fixtures.moto_world import (
    DOCKER_MANIFEST,
    EVENTS,
    PIPELINE_BUCKET,
    RELEASE_KEY,
    create_state_machine,
    image_config,
    manifest,
    push_image,
    sample_event,
    upload_artifacts,
    upload_release,
)
from tests.fixtures.releases import (
    ACCOUNT,
    ARTIFACT_BUCKET,
    INPUT_KEY,
    MODEL_KEY,
    PUBLISHING_REGION,
    REPOSITORY,
    SOURCE_REGION,
    VALIDATION_ROLE_ARN,
    release_document,
)

from mlpublish.aws import client
from mlpublish.errors import InvalidRelease, PipelineError, PreflightFailed, ReleaseNotFound, SourceChanged
from mlpublish.images.registry import EcrRegistry
from mlpublish.preflight import PUBLISHING_REGIONS
from mlpublish.state import Release

pytestmark = pytest.mark.integration

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
RELEASE_URI = f"s3://{PIPELINE_BUCKET}/{RELEASE_KEY}"
EXECUTION = f"arn:aws:states:{SOURCE_REGION}:{ACCOUNT}:execution:mlpublish:acme-sentiment-1-2-0-0123456789ab"
# The stack as samconfig deploys it (template defaults): us-east-1 unless a release names its
# region, as the example release does (PUBLISHING_REGION, us-east-2).
STACK_PUBLISHING_REGION = "us-east-1"
STACK_ALLOWED_REGIONS = ",".join(sorted(PUBLISHING_REGIONS))

Handler = Callable[[dict[str, Any], Any], Any]


@pytest.fixture
def stack_env(monkeypatch: pytest.MonkeyPatch, aws_credentials: None) -> pytest.MonkeyPatch:
    """The environment template.yaml gives every function (STATE_MACHINE_ARN: the trigger's)."""
    environment = {
        "AWS_REGION": SOURCE_REGION,
        "PUBLISHING_REGION": STACK_PUBLISHING_REGION,
        "ALLOWED_PUBLISHING_REGIONS": STACK_ALLOWED_REGIONS,
        "PUBLISHING_BUCKET_NAME": "",
        "PIPELINE_BUCKET": PIPELINE_BUCKET,
        "SOURCE_BUCKETS": ARTIFACT_BUCKET,  # as samconfig.toml deploys it, for the example release
        "VALIDATION_ROLE_ARN": VALIDATION_ROLE_ARN,
        "RELEASE_PREFIX": "releases/",
        "STATE_MACHINE_ARN": f"arn:aws:states:{SOURCE_REGION}:{ACCOUNT}:stateMachine:mlpublish",
        "EVENT_BUS_NAME": "default",
        "EVENT_SOURCE": "mlpublish",
        "POWERTOOLS_SERVICE_NAME": "mlpublish",
        "POWERTOOLS_METRICS_NAMESPACE": "mlpublish",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def load_handler(function: str) -> Handler:
    """Import functions/<function>/app.py as a fresh module (a cold start) and return its handler."""
    name = f"mlpublish_function_{function}"
    spec = importlib.util.spec_from_file_location(name, FUNCTIONS / function / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered like Lambda's own import, so that pydantic resolves the module's annotations.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    handler: Handler = module.lambda_handler
    return handler


@pytest.fixture(autouse=True)
def _forget_handlers() -> Iterator[None]:
    yield
    for name in [name for name in sys.modules if name.startswith("mlpublish_function_")]:
        del sys.modules[name]


def serve_debian_layers(monkeypatch: pytest.MonkeyPatch, configs: dict[str, bytes] | None = None) -> None:
    """moto keeps no layer bytes and has no GetDownloadUrlForLayer: the source registry serves
    the image configs of the fixtures' images (or ``configs``, by digest) and the fixtures'
    Debian base layer for every other blob, so ResolveRelease can tell the image's platform and OS."""
    served = {"sha256:" + hashlib.sha256(image_config(seed)).hexdigest(): image_config(seed) for seed in "12"}
    served.update(configs or {})

    @contextmanager
    def open_blob(
        registry: EcrRegistry, repository: str, digest: str, registry_id: str | None = None
    ) -> Iterator[Iterator[bytes]]:
        yield iter([served.get(digest, base_layer("amd64").blob)])

    monkeypatch.setattr(EcrRegistry, "open_blob", open_blob)


@pytest.fixture
def seller(stack_env: pytest.MonkeyPatch, moto_aws: None, release_yaml: Callable[..., str]) -> dict[str, Any]:
    """The example release uploaded where events/manual-start.json points, its sources in place."""
    serve_debian_layers(stack_env)
    s3 = boto3.client("s3", region_name=SOURCE_REGION)
    etags = upload_artifacts(s3)
    upload_release(s3, release_yaml())
    digest = push_image(boto3.client("ecr", region_name=SOURCE_REGION))
    return {"s3": s3, "etags": etags, "digest": digest, "env": stack_env}


def resolve(event: dict[str, Any], context: FakeLambdaContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """ResolveRelease's output (the summary the state carries) and the resolved release it kept
    in the pipeline bucket, which the later handlers read."""
    summary = load_handler("resolve_release")(event, context)
    bucket, _, key = summary["record"].removeprefix("s3://").partition("/")
    body = boto3.client("s3", region_name=SOURCE_REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    release: dict[str, Any] = json.loads(body)
    assert summary["containers"] == [image["container"] for image in release["images"]]
    return summary, release


def published_images(release: dict[str, Any]) -> list[dict[str, Any]]:
    """What CopyImages returns: the images put into the publishing region's ECR (moto)."""
    ecr = boto3.client("ecr", region_name=PUBLISHING_REGION)
    images = []
    for image in release["images"]:
        digest = push_image(ecr, repository=image["destination_repository"], tag=None)
        assert digest == image["source"]["digest"]  # the same manifest: no conversion needed
        host = f"{ACCOUNT}.dkr.ecr.{PUBLISHING_REGION}.amazonaws.com"
        images.append(
            {
                "container": image["container"],
                "repository": image["destination_repository"],
                "image_uri": f"{host}/{image['destination_repository']}@{digest}",
                "digest": digest,
                "media_type": "application/vnd.docker.distribution.manifest.v2+json",
                "source_digest": digest,
                "selected_digest": digest,
                "conversion": "none",
                "blobs_copied": 2,
                "blobs_skipped": 0,
                "bytes_copied": 300,
            }
        )
    return images


def clean_scan(image: dict[str, Any]) -> None:
    ecr_backends[ACCOUNT][PUBLISHING_REGION].scan_finding_results.append(
        {
            "repositoryName": image["repository"],
            "imageId": {"imageDigest": image["digest"]},
            "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
            "imageScanFindings": {"findingSeverityCounts": {}},
        }
    )


# --- the happy path, handler by handler -------------------------------------------------


def test_given_a_valid_release_then_every_handler_hands_the_next_one_what_it_needs(
    seller: dict[str, Any],
    stack_env: pytest.MonkeyPatch,
    announcement_queue: dict[str, str],
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sns_up(announcement_queue)
    summary, release = resolve(sample_event("manual-start.json"), lambda_context)

    assert Release.model_validate(release).release_uri == RELEASE_URI
    assert release["account_id"] == ACCOUNT
    assert release["publishing_region"] == PUBLISHING_REGION
    assert release["images"][0]["source"]["digest"] == seller["digest"]
    assert release["images"][0]["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert {item["source_bucket"] + "/" + item["source_key"]: item["etag"] for item in release["objects"]} == {
        uri.removeprefix("s3://"): etag for uri, etag in seller["etags"].items()
    }

    artifacts = load_handler("copy_artifacts")(
        {
            "objects": release["objects"],
            "source_region": release["source_region"],
            "publishing_region": release["publishing_region"],
        },
        lambda_context,
    )

    assert [(item["role"], item["copied"]) for item in artifacts] == [("model_data", True), ("validation_input", True)]
    publishing_s3 = boto3.client("s3", region_name=PUBLISHING_REGION)
    for item in release["objects"]:
        head = publishing_s3.head_object(Bucket=item["destination_bucket"], Key=item["destination_key"])
        assert head["Metadata"]["mlpublish-source-etag"] == item["etag"]
    sizes = sum(item["size"] for item in release["objects"])
    assert emitted_metrics(capsys.readouterr().out)[("ObjectBytesCopied", ())] == sizes

    images = published_images(release)
    for image in images:
        clean_scan(image)
    scan = load_handler("scan_images")(
        {"images": images, "attempt": 0, "publishing_region": PUBLISHING_REGION}, lambda_context
    )

    assert scan["complete"] is True

    resource = load_handler("create_model_package")({"release": summary, "images": images}, lambda_context)

    assert (resource["name"], resource["action"]) == (release["resource_name"], "created")

    stack_env.setenv("WAIT_TABLE", "waits")
    stack_env.setenv("FORWARDING_RULE_NAME", "mlpublish-waits-test")
    stack_env.setenv("FORWARDING_ROLE_ARN", f"arn:aws:iam::{ACCOUNT}:role/forwarding")
    boto3.client("dynamodb", region_name=SOURCE_REGION).create_table(
        TableName="waits",
        AttributeDefinitions=[{"AttributeName": "resource", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "resource", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    watched = load_handler("watch")(
        {
            "task_token": "token-of-the-validation-wait",
            "validation": {
                "arn": resource["arn"],
                "attempt": 0,
                "elapsed_seconds": 0,
                "timeout_minutes": release["spec"]["validation"]["timeout_minutes"],
                "publishing_region": PUBLISHING_REGION,
            },
        },
        lambda_context,
    )

    # moto's package is Completed at once: the watch's own look ends the wait.
    validation = watched["outcome"]["output"]
    assert (validation["status"], validation["wait_seconds"]) == ("Completed", 0)
    rules = boto3.client("events", region_name=PUBLISHING_REGION).list_rules(NamePrefix="mlpublish-waits-test")
    assert [rule["Name"] for rule in rules["Rules"]] == ["mlpublish-waits-test"]

    state = {
        **sample_event("manual-start.json"),
        "release": release,
        "copied": {"images": images, "artifacts": artifacts},
        "scan": scan,
        "resource": resource,
        "validation": validation,
    }
    sent = load_handler("build_announcement")(
        {"outcome": "ready", "state": state, "execution": EXECUTION}, lambda_context
    )

    # Sent on both channels: the state keeps the outcome and the subject only.
    [note] = received(announcement_queue["people"])
    [event] = received(announcement_queue["automation"])
    assert sent == {"outcome": "ready", "subject": note["Subject"]}
    assert note["Subject"].startswith("Ready for listing: ")
    assert note["MessageAttributes"]["outcome"]["Value"] == "ready"
    assert event["detail-type"] == "Release Ready For Listing"
    assert event["detail"]["model_package_arn"] == resource["arn"]
    assert event["detail"]["execution"] == EXECUTION
    assert event["resources"] == [EXECUTION]  # as Step Functions' putEvents integration names it
    assert received(announcement_queue["announcements"]) == []


def test_given_an_unchanged_image_when_resolve_runs_again_then_no_layer_is_downloaded_and_the_os_is_remembered(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    opened: list[str] = []
    serve = EcrRegistry.open_blob  # the fixture's source registry

    @contextmanager
    def counted(
        registry: EcrRegistry, repository: str, digest: str, registry_id: str | None = None
    ) -> Iterator[Iterator[bytes]]:
        opened.append(digest)
        with serve(registry, repository, digest, registry_id) as chunks:
            yield chunks

    seller["env"].setattr(EcrRegistry, "open_blob", counted)
    [image] = boto3.client("ecr", region_name=SOURCE_REGION).batch_get_image(
        repositoryName=REPOSITORY, imageIds=[{"imageDigest": seller["digest"]}]
    )["images"]
    layers = {layer["digest"] for layer in json.loads(image["imageManifest"])["layers"]}

    _, first = resolve(sample_event("manual-start.json"), lambda_context)
    read_first = [digest for digest in opened if digest in layers]
    _, again = resolve(sample_event("manual-start.json"), lambda_context)

    assert read_first
    assert [digest for digest in opened if digest in layers] == read_first  # the re-run opened no layer
    assert first["images"][0]["os_bytes_read"] > 0
    assert again["images"][0]["os"] == first["images"][0]["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert (again["images"][0]["os_bytes_read"], again["images"][0]["os_remembered"]) == (0, True)
    record = seller["s3"].get_object(
        Bucket=PIPELINE_BUCKET, Key=f"mlpublish/os-release/v1/{seller['digest'].removeprefix('sha256:')}.json"
    )
    assert json.loads(record["Body"].read())["os"]["id"] == "debian"


def test_given_a_manual_start_with_pins_from_the_trigger_then_resolve_keeps_them(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    # The digest the trigger saw pushed, which is not the one the release's tag names now.
    pinned = push_image(boto3.client("ecr", region_name=SOURCE_REGION), seed="2", tag="1.2.0-rc1")
    assert pinned != seller["digest"]
    event = {"release_uri": RELEASE_URI, "pins": {"images": {"inference": pinned}}, "trigger": {"kind": "ecr-push"}}

    _, release = resolve(event, lambda_context)

    assert release["images"][0]["source"]["digest"] == pinned
    assert release["trigger"] == {"kind": "ecr-push", "ref": ""}


def test_given_an_inline_release_then_resolve_needs_no_release_file(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    _, release = resolve({"release": release_document()}, lambda_context)

    assert release["release_uri"] is None
    assert release["spec"]["product"]["name"] == "acme-sentiment"


# --- a release's publishing region, end to end -------------------------------------------


def uris_in(value: Any) -> list[str]:
    """Every S3 URI and ECR image URI anywhere in a request."""
    if isinstance(value, dict):
        return [uri for item in value.values() for uri in uris_in(item)]
    if isinstance(value, list):
        return [uri for item in value for uri in uris_in(item)]
    if isinstance(value, str) and (value.startswith("s3://") or ".dkr.ecr." in value):
        return [value]
    return []


def bucket_region(bucket: str) -> str:
    location = boto3.client("s3", region_name=SOURCE_REGION).get_bucket_location(Bucket=bucket)
    return str(location["LocationConstraint"] or "us-east-1")


def copy_artifacts(release: dict[str, Any], lambda_context: FakeLambdaContext) -> list[dict[str, Any]]:
    event = {
        "objects": release["objects"],
        "source_region": release["source_region"],
        "publishing_region": release["publishing_region"],
    }
    copied: list[dict[str, Any]] = load_handler("copy_artifacts")(event, lambda_context)
    return copied


def test_given_a_us_east_2_release_on_a_us_east_1_stack_then_its_artifacts_and_model_package_are_all_in_us_east_2(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    assert (STACK_PUBLISHING_REGION, PUBLISHING_REGION) == ("us-east-1", "us-east-2")
    requests: list[dict[str, Any]] = []
    client("sagemaker", PUBLISHING_REGION).meta.events.register(
        "provide-client-params.sagemaker.CreateModelPackage", lambda params, **_: requests.append(params)
    )

    summary, release = resolve(sample_event("manual-start.json"), lambda_context)
    copy_artifacts(release, lambda_context)
    resource = load_handler("create_model_package")(
        {"release": summary, "images": published_images(release)}, lambda_context
    )

    us_east_2_bucket = f"mlpublish-{ACCOUNT}-us-east-2"
    assert (release["publishing_region"], release["publishing_bucket"]) == ("us-east-2", us_east_2_bucket)
    assert bucket_region(us_east_2_bucket) == "us-east-2"
    publishing_s3 = boto3.client("s3", region_name="us-east-2")
    for item in release["objects"]:
        head = publishing_s3.head_object(Bucket=item["destination_bucket"], Key=item["destination_key"])
        assert head["Metadata"]["mlpublish-source-etag"] == item["etag"]
    buckets = {bucket["Name"] for bucket in publishing_s3.list_buckets()["Buckets"]}
    assert f"mlpublish-{ACCOUNT}-us-east-1" not in buckets
    assert resource["arn"].startswith(f"arn:aws:sagemaker:us-east-2:{ACCOUNT}:model-package/")
    [request] = requests
    uris = uris_in(request)
    s3_uris = [uri for uri in uris if uri.startswith("s3://")]
    image_uris = [uri for uri in uris if not uri.startswith("s3://")]
    assert len(s3_uris) == 3  # model data, validation input, validation output
    assert {uri.removeprefix("s3://").split("/", 1)[0] for uri in s3_uris} == {us_east_2_bucket}
    assert image_uris != []
    assert {uri.split(".")[3] for uri in image_uris} == {"us-east-2"}  # ACCOUNT.dkr.ecr.REGION.amazonaws.com/...


def test_given_a_release_naming_no_region_then_it_publishes_to_the_stacks_region_and_bucket(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    _, release = resolve({"release": release_document(publishing_region=None)}, lambda_context)
    copy_artifacts(release, lambda_context)

    assert release["publishing_region"] == "us-east-1"
    assert release["publishing_bucket"] == f"mlpublish-{ACCOUNT}-us-east-1"
    assert bucket_region(release["publishing_bucket"]) == "us-east-1"


def test_given_a_sellers_bucket_in_the_stack_region_and_a_release_for_another_then_resolve_refuses_it(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="acme-marketplace")
    seller["env"].setenv("PUBLISHING_BUCKET_NAME", "acme-marketplace")

    with pytest.raises(PreflightFailed) as caught:
        load_handler("resolve_release")(sample_event("manual-start.json"), lambda_context)

    [reason] = caught.value.reasons
    assert reason.startswith("publishing_region: us-east-2 is not the stack's PublishingRegion us-east-1, the only ")
    assert "PublishingBucketName bucket acme-marketplace" in reason
    assert "publish to us-east-1" in reason
    assert "PublishingBucketName empty" in reason


def test_given_a_sellers_bucket_in_the_release_region_then_artifacts_go_there_and_its_setup_is_kept(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    s3 = boto3.client("s3", region_name=PUBLISHING_REGION)
    s3.create_bucket(Bucket="acme-marketplace", CreateBucketConfiguration={"LocationConstraint": PUBLISHING_REGION})
    seller["env"].setenv("PUBLISHING_REGION", PUBLISHING_REGION)
    seller["env"].setenv("PUBLISHING_BUCKET_NAME", "acme-marketplace")

    _, release = resolve(sample_event("manual-start.json"), lambda_context)
    copy_artifacts(release, lambda_context)

    assert release["publishing_bucket"] == "acme-marketplace"
    assert release["validation_output_uri"].startswith("s3://acme-marketplace/")
    assert {item["destination_bucket"] for item in release["objects"]} == {"acme-marketplace"}
    assert len(s3.list_objects_v2(Bucket="acme-marketplace")["Contents"]) == 2
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchTagSet"):
        s3.get_bucket_tagging(Bucket="acme-marketplace")  # not taken over: the seller's own bucket


def test_given_a_stack_not_allowing_the_release_region_then_resolve_refuses_it_naming_the_parameter(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    seller["env"].setenv("ALLOWED_PUBLISHING_REGIONS", "us-east-1,eu-west-1")

    with pytest.raises(PreflightFailed) as caught:
        load_handler("resolve_release")(sample_event("manual-start.json"), lambda_context)

    assert caught.value.reasons == [
        "publishing_region: us-east-2 is not one of the stack's AllowedPublishingRegions (us-east-1, eu-west-1); "
        "publish to one of those, or add us-east-2 to the AllowedPublishingRegions parameter and redeploy the stack"
    ]


# --- resolve_release failures -----------------------------------------------------------


def test_given_the_invalid_sample_release_then_resolve_fails_with_every_field_at_once(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    upload_release(seller["s3"], (EVENTS / "release.invalid.yaml").read_text())
    handler = load_handler("resolve_release")

    with pytest.raises(InvalidRelease) as caught:
        handler(sample_event("manual-start.json"), lambda_context)

    assert RELEASE_URI in caught.value.message
    assert {reason.split(":", 1)[0] for reason in caught.value.reasons} == {
        "product.name",
        "containers.0.image",
        "containers.0.platform",
        "containers.0.model_data",
        "inference.realtime_instance_types",
        "validation.split_type",
        "validation.max_payload_mb",
        "validation.timeout_minute",
    }


def test_given_an_execution_input_without_a_release_then_resolve_says_how_to_start(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    with pytest.raises(InvalidRelease, match="execution input is invalid"):
        load_handler("resolve_release")({"release_url": RELEASE_URI}, lambda_context)


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (lambda s3: s3.delete_object(Bucket=PIPELINE_BUCKET, Key=RELEASE_KEY), f"release file {RELEASE_URI} cannot"),
        (
            lambda s3: s3.delete_object(Bucket="acme-ml-artifacts", Key="sentiment/1.2.0/model.tar.gz"),
            "containers.0.model_data: s3://acme-ml-artifacts/sentiment/1.2.0/model.tar.gz cannot be read",
        ),
        (
            lambda s3: boto3.client("ecr", region_name=SOURCE_REGION).batch_delete_image(
                repositoryName="acme/sentiment", imageIds=[{"imageTag": "1.2.0"}]
            ),
            "containers.0.image: image acme/sentiment:1.2.0 is not in ECR us-west-2",
        ),
    ],
    ids=["release-file", "model-data", "image"],
)
def test_given_a_missing_source_then_resolve_fails_with_release_not_found_naming_it(
    seller: dict[str, Any], lambda_context: FakeLambdaContext, break_it: Callable[[Any], Any], expected: str
) -> None:
    break_it(seller["s3"])
    handler = load_handler("resolve_release")

    with pytest.raises(ReleaseNotFound) as caught:
        handler(sample_event("manual-start.json"), lambda_context)

    assert caught.value.message.startswith(expected)


def test_given_a_release_breaking_marketplace_rules_then_resolve_fails_with_preflight_failed(
    seller: dict[str, Any], lambda_context: FakeLambdaContext, release_yaml: Callable[..., str]
) -> None:
    upload_release(seller["s3"], release_yaml(publishing_region="ap-east-1"))

    with pytest.raises(PreflightFailed) as caught:
        load_handler("resolve_release")(sample_event("manual-start.json"), lambda_context)

    [reason] = caught.value.reasons
    assert reason.startswith("publishing_region: ap-east-1 is not a Marketplace publishing region")


def test_given_an_arm64_image_then_resolve_refuses_it_from_its_config_naming_the_build_fix(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    config = json.dumps({"architecture": "arm64", "os": "linux", "variant": "v8"}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    document = json.loads(manifest("1"))
    document["config"].update(size=len(config), digest=config_digest)
    body = json.dumps(document)
    boto3.client("ecr", region_name=SOURCE_REGION).put_image(
        repositoryName=REPOSITORY,
        imageManifest=body,
        imageManifestMediaType=DOCKER_MANIFEST,
        imageDigest="sha256:" + hashlib.sha256(body.encode()).hexdigest(),  # as ECR derives it
        imageTag="1.2.0-arm64",
    )
    serve_debian_layers(seller["env"], configs={config_digest: config})
    release = release_document(tag="1.2.0-arm64")

    with pytest.raises(PreflightFailed) as caught:
        load_handler("resolve_release")({"release": release}, lambda_context)

    [reason] = caught.value.reasons
    assert reason.startswith("containers.0.image: ")
    assert f"is built for linux/arm64/v8 (its image config {config_digest} says so)" in reason
    assert "build for linux/amd64: docker buildx build --platform linux/amd64" in reason


def test_given_a_zip_uploaded_as_model_tar_gz_then_resolve_refuses_it_after_reading_only_its_first_bytes(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.json", "{}" * 50_000)
    seller["s3"].put_object(Bucket=ARTIFACT_BUCKET, Key=MODEL_KEY, Body=buffer.getvalue())

    with pytest.raises(PreflightFailed) as caught:
        load_handler("resolve_release")(sample_event("manual-start.json"), lambda_context)

    assert caught.value.reasons == [
        f"containers.0.model_data: s3://{ARTIFACT_BUCKET}/{MODEL_KEY} is a ZIP archive (it starts with PK), but "
        "SageMaker extracts model data as a gzip-compressed tar into /opt/ml/model; make one from the directory "
        "SageMaker should find in /opt/ml/model with `tar czf model.tar.gz -C model .` and upload it there"
    ]


def test_given_model_data_overwritten_after_the_trigger_pinned_it_then_resolve_says_the_source_changed(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    model_uri = f"s3://{ARTIFACT_BUCKET}/{MODEL_KEY}"
    pinned = {"etags": {model_uri: seller["etags"][model_uri]}, "sizes": {model_uri: 100}}
    seller["s3"].put_object(Bucket=ARTIFACT_BUCKET, Key=MODEL_KEY, Body=b"PK\x03\x04 uploaded since")
    event = {"release_uri": RELEASE_URI, "pins": pinned, "trigger": {"kind": "s3-upload"}}

    with pytest.raises(SourceChanged, match=f"{model_uri} was overwritten after the release pinned it"):
        load_handler("resolve_release")(event, lambda_context)


def test_given_an_incomplete_environment_then_the_cold_start_names_what_is_missing(
    stack_env: pytest.MonkeyPatch,
) -> None:
    stack_env.delenv("PIPELINE_BUCKET")
    stack_env.delenv("VALIDATION_ROLE_ARN")

    with pytest.raises(PipelineError) as caught:
        load_handler("resolve_release")

    assert "PIPELINE_BUCKET" in caught.value.message
    assert "VALIDATION_ROLE_ARN" in caught.value.message


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_given_no_state_machine_arn_then_the_trigger_cold_start_fails_naming_it(
    stack_env: pytest.MonkeyPatch, moto_aws: None, value: str | None
) -> None:
    if value is None:
        stack_env.delenv("STATE_MACHINE_ARN")
    else:
        stack_env.setenv("STATE_MACHINE_ARN", value)

    with pytest.raises(PipelineError) as caught:
        load_handler("trigger")

    assert caught.value.message == (
        "Lambda environment is incomplete (STATE_MACHINE_ARN); redeploy the stack with template.yaml"
    )


def test_given_no_state_machine_arn_then_functions_that_start_nothing_still_start(
    stack_env: pytest.MonkeyPatch, moto_aws: None
) -> None:
    stack_env.delenv("STATE_MACHINE_ARN")

    assert callable(load_handler("resolve_release"))


# --- build_announcement failed ----------------------------------------------------------


def test_given_a_failed_resolve_then_the_failure_announcement_names_stage_and_reasons(
    announcement_queue: dict[str, str], lambda_context: FakeLambdaContext
) -> None:
    sns_up(announcement_queue)
    cause = {
        "errorType": "InvalidRelease",
        "errorMessage": f"{RELEASE_URI} is not a valid release specification (2 problem(s)); fix these fields:"
        "\n- product.name: String should match pattern\n- containers.0.image: must be an ECR image URI",
    }
    state = {
        **sample_event("manual-start.json"),
        "error": {"Error": "InvalidRelease", "Cause": json.dumps(cause)},
        "failed_stage": "ResolveRelease",
    }

    sent = load_handler("build_announcement")(
        {"outcome": "failed", "state": state, "execution": EXECUTION}, lambda_context
    )

    [note] = received(announcement_queue["people"])
    [event] = received(announcement_queue["automation"])
    assert sent == {"outcome": "failed", "subject": note["Subject"]}
    assert len(note["Subject"]) < 100
    assert "containers.0.image: must be an ECR image URI" in note["Message"]
    assert event["detail-type"] == "Release Failed"
    assert event["detail"]["stage"] == "ResolveRelease"
    assert event["detail"]["reasons"] == [
        "product.name: String should match pattern",
        "containers.0.image: must be an ECR image URI",
    ]
    assert event["detail"]["release_uri"] == RELEASE_URI
    assert event["detail"]["execution"] == EXECUTION


def emitted_metrics(stdout: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The CloudWatch EMF metrics a handler printed: (name, dimensions) -> value."""
    found = {}
    for line in stdout.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            [dimensions] = directive["Dimensions"]
            key = tuple(sorted((name, blob[name]) for name in dimensions if name != "service"))
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                found[(metric["Name"], key)] = value[0] if isinstance(value, list) else value
    return found


def test_given_a_failed_validation_then_the_announcement_records_outcome_stage_and_each_stages_duration(
    announcement_queue: dict[str, str], lambda_context: FakeLambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    sns_up(announcement_queue)
    state = {
        **sample_event("manual-start.json"),
        "error": {"Error": "ValidationFailed", "Cause": "the transform job failed"},
        "failed_stage": "AwaitValidation",
        "stages": {
            "ResolveRelease": {"entered": "2026-12-02T12:00:00.000Z"},
            "CopyToPublishingRegion": {"entered": "2026-12-02T12:00:02.500Z"},
            "ScanImages": {"Error": "EventBridge.InternalException", "Cause": "down"},
            "AwaitValidation": {"entered": "2026-12-02T12:01:00.000Z"},
        },
    }

    load_handler("build_announcement")(
        {"outcome": "failed", "state": state, "execution": EXECUTION, "finished": "2026-12-02T12:31:00.000Z"},
        lambda_context,
    )

    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics[("ReleasesFailed", ())] == 1
    assert metrics[("ReleasesFailedAt", (("Stage", "AwaitValidation"),))] == 1
    assert metrics[("StageDuration", (("Outcome", "failed"), ("Stage", "ResolveRelease")))] == 2.5
    assert metrics[("StageDuration", (("Outcome", "failed"), ("Stage", "AwaitValidation")))] == 1800
    assert metrics[("StageEventsNotSent", ())] == 1
    assert not [key for key in metrics if key[0] == "StageDuration" and ("Stage", "ScanImages") in key[1]]
    assert ("ReleaseDuration", (("Outcome", "failed"),)) not in metrics  # a stage's time is unknown
    assert ("ReleasesReady", ()) not in metrics


# --- trigger ----------------------------------------------------------------------------


def test_given_a_batch_with_a_malformed_record_then_it_is_refused_with_a_log_line_and_not_retried(
    seller: dict[str, Any], lambda_context: FakeLambdaContext, caplog: pytest.LogCaptureFixture
) -> None:
    sfn = boto3.client("stepfunctions", region_name=SOURCE_REGION)
    arn = create_state_machine(sfn)
    batch = sample_event("sqs-trigger-batch.json")
    malformed = copy.deepcopy(batch["Records"][0])
    malformed["messageId"] = "00000000-0000-4000-8000-00000000bad1"
    malformed["body"] = '{"detail-type": "ECR Image Action", "detail": '
    batch["Records"].insert(1, malformed)

    response = load_handler("trigger")(batch, lambda_context)

    assert response == {"batchItemFailures": []}  # retrying the same bytes cannot help
    [refused] = [record for record in caplog.records if record.getMessage() == "trigger record refused"]
    assert refused.levelname == "ERROR"
    assert refused.message_id == malformed["messageId"]  # type: ignore[attr-defined]
    assert "not an EventBridge event" in refused.reason  # type: ignore[attr-defined]
    executions = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert len(executions) == 2  # the push (sample digest) and the upload (pushed digest) differ in content


def test_given_an_upload_of_a_release_file_deleted_since_then_it_is_refused_naming_it_and_not_retried(
    seller: dict[str, Any], lambda_context: FakeLambdaContext, caplog: pytest.LogCaptureFixture
) -> None:
    create_state_machine(boto3.client("stepfunctions", region_name=SOURCE_REGION))
    batch = sample_event("sqs-trigger-batch.json")
    record = copy.deepcopy(batch["Records"][1])
    body = json.loads(record["body"])
    body["detail"]["bucket"]["name"] = PIPELINE_BUCKET
    body["detail"]["object"]["key"] = "releases/gone.yaml"
    record["body"] = json.dumps(body)

    response = load_handler("trigger")({"Records": [record]}, lambda_context)

    assert response == {"batchItemFailures": []}
    [refused] = [record for record in caplog.records if record.getMessage() == "trigger record refused"]
    assert f"s3://{PIPELINE_BUCKET}/releases/gone.yaml was deleted" in refused.reason  # type: ignore[attr-defined]


def test_given_the_same_batch_delivered_twice_then_no_release_starts_twice(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    sfn = boto3.client("stepfunctions", region_name=SOURCE_REGION)
    arn = create_state_machine(sfn)
    batch = sample_event("sqs-trigger-batch.json")
    handler = load_handler("trigger")

    first = handler(batch, lambda_context)
    second = handler(batch, lambda_context)

    assert first == second == {"batchItemFailures": []}
    assert len(sfn.list_executions(stateMachineArn=arn)["executions"]) == 2


def bus_listener(region: str = SOURCE_REGION) -> Callable[[], list[dict[str, Any]]]:
    """A queue subscribed to the pipeline's events on the default bus; returns a reader."""
    sqs, events = boto3.client("sqs", region_name=region), boto3.client("events", region_name=region)
    url = sqs.create_queue(QueueName="pipeline-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="pipeline-events", EventPattern=json.dumps({"source": ["mlpublish"]}))
    events.put_targets(Rule="pipeline-events", Targets=[{"Id": "queue", "Arn": arn}])

    def read() -> list[dict[str, Any]]:
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        for message in received:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(message["Body"]) for message in received]

    return read


def test_given_a_batch_then_each_execution_it_starts_is_a_release_started_event_and_a_redelivery_says_nothing(
    seller: dict[str, Any], lambda_context: FakeLambdaContext
) -> None:
    sfn = boto3.client("stepfunctions", region_name=SOURCE_REGION)
    arn = create_state_machine(sfn)
    read_events = bus_listener()
    batch = sample_event("sqs-trigger-batch.json")
    handler = load_handler("trigger")

    handler(batch, lambda_context)
    first = read_events()
    handler(batch, lambda_context)

    executions = {execution["executionArn"] for execution in sfn.list_executions(stateMachineArn=arn)["executions"]}
    assert [event["detail-type"] for event in first] == ["Release Started", "Release Started"]
    assert {event["detail"]["execution"] for event in first} == executions
    assert {event["detail"]["release"] for event in first} == {RELEASE_URI}
    assert sorted(event["detail"]["trigger"]["detail-type"] for event in first) == [
        "ECR Image Action",
        "Object Created",
    ]
    assert read_events() == []  # duplicates started nothing, so they say nothing


def test_given_a_push_before_the_artifacts_then_a_release_waiting_event_names_what_is_missing(
    seller: dict[str, Any], lambda_context: FakeLambdaContext, caplog: pytest.LogCaptureFixture
) -> None:
    sfn = boto3.client("stepfunctions", region_name=SOURCE_REGION)
    arn = create_state_machine(sfn)
    read_events = bus_listener()
    seller["s3"].delete_object(Bucket=ARTIFACT_BUCKET, Key=INPUT_KEY)
    batch = sample_event("sqs-trigger-batch.json")

    load_handler("trigger")({"Records": batch["Records"][:1]}, lambda_context)

    [event] = read_events()
    assert event["detail-type"] == "Release Waiting"
    assert event["source"] == "mlpublish"
    assert event["detail"]["release"] == RELEASE_URI
    assert f"validation.input: s3://{ARTIFACT_BUCKET}/{INPUT_KEY} cannot be read" in event["detail"]["missing"]
    assert sfn.list_executions(stateMachineArn=arn)["executions"] == []
    [waiting] = [record for record in caplog.records if record.getMessage() == "release waits for its other sources"]
    assert waiting.release == RELEASE_URI  # type: ignore[attr-defined]


def test_given_eventbridge_refuses_the_progress_events_then_releases_still_start_and_the_loss_is_logged(
    seller: dict[str, Any], lambda_context: FakeLambdaContext, caplog: pytest.LogCaptureFixture
) -> None:
    sfn = boto3.client("stepfunctions", region_name=SOURCE_REGION)
    arn = create_state_machine(sfn)
    seller["env"].setenv("EVENT_BUS_NAME", "no-such-bus")
    batch = sample_event("sqs-trigger-batch.json")

    response = load_handler("trigger")(batch, lambda_context)

    assert response == {"batchItemFailures": []}  # the executions started; retrying would only duplicate
    assert len(sfn.list_executions(stateMachineArn=arn)["executions"]) == 2
    lost = [record for record in caplog.records if record.getMessage() == "progress events not sent"]
    assert [record.levelname for record in lost] == ["ERROR", "ERROR"]  # one per record of the batch
    problems = [problem for record in lost for problem in record.problems]  # type: ignore[attr-defined]
    assert problems == [f"Release Started of {RELEASE_URI}: ResourceNotFoundException"] * 2


# --- deliver announcement -------------------------------------------------------------------

TOPIC = "mlpublish-notifications"
TOPIC_ARN = f"arn:aws:sns:{SOURCE_REGION}:{ACCOUNT}:{TOPIC}"
READY_NOTE = {
    "channel": "sns",
    "outcome": "ready",
    "subject": "Ready for listing: acme-sentiment 1.2.0",
    "message": "acme-sentiment 1.2.0 is ready to list on AWS Marketplace.",
    "message_attributes": {
        name: {"DataType": "String", "StringValue": value}
        for name, value in {
            "outcome": "ready",
            "product": "acme-sentiment",
            "version": "1.2.0",
            "kind": "model_package",
            "region": "us-east-2",
        }.items()
    },
    "execution": EXECUTION,
}
READY_EVENT = {
    "channel": "events",
    "detail_type": "Release Ready For Listing",
    "detail": {"product": "acme-sentiment", "version": "1.2.0", "execution": EXECUTION},
    "execution": EXECUTION,
}


@pytest.fixture
def announcement_queue(stack_env: pytest.MonkeyPatch, moto_aws: None) -> dict[str, str]:
    """The announcement queue, and queues subscribed to the topic's name and to the bus's events,
    as the stack sets them up; the topic itself is made by the test (SNS is "down" until then)."""
    sqs = boto3.client("sqs", region_name=SOURCE_REGION)
    urls = {name: sqs.create_queue(QueueName=name)["QueueUrl"] for name in ("announcements", "people", "automation")}
    arns = {
        name: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for name, url in urls.items()
    }
    events = boto3.client("events", region_name=SOURCE_REGION)
    events.put_rule(Name="automation", EventPattern=json.dumps({"source": ["mlpublish"]}))
    events.put_targets(Rule="automation", Targets=[{"Id": "automation", "Arn": arns["automation"]}])
    stack_env.setenv("NOTIFICATION_TOPIC_ARN", TOPIC_ARN)
    stack_env.setenv("EVENT_BUS_NAME", "default")
    stack_env.setenv("EVENT_SOURCE", "mlpublish")
    stack_env.setenv("ANNOUNCEMENT_QUEUE_URL", urls["announcements"])
    return urls | {"people_arn": arns["people"]}


def sns_up(queues: dict[str, str]) -> None:
    sns = boto3.client("sns", region_name=SOURCE_REGION)
    assert sns.create_topic(Name=TOPIC)["TopicArn"] == TOPIC_ARN
    sns.subscribe(TopicArn=TOPIC_ARN, Protocol="sqs", Endpoint=queues["people_arn"])


def deferred_batch(queue_url: str, *bodies: dict[str, Any]) -> dict[str, Any]:
    """Send ``bodies`` to the queue as the state machine does and receive them as Lambda's poller does."""
    sqs = boto3.client("sqs", region_name=SOURCE_REGION)
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    return sqs_event(queue_url)


def sqs_event(queue_url: str) -> dict[str, Any]:
    sqs = boto3.client("sqs", region_name=SOURCE_REGION)
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
        "Messages", []
    )
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message["Attributes"],
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{SOURCE_REGION}:{ACCOUNT}:announcements",
                "awsRegion": SOURCE_REGION,
            }
            for message in messages
        ]
    }


def received(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=SOURCE_REGION)
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


def failed_release_state() -> dict[str, Any]:
    return {
        **sample_event("manual-start.json"),
        "error": {"Error": "ValidationFailed", "Cause": "the transform job failed"},
        "failed_stage": "AwaitValidation",
    }


def test_given_sns_down_when_an_announcement_is_sent_then_the_notification_waits_in_the_queue_and_the_event_goes(
    announcement_queue: dict[str, str], lambda_context: FakeLambdaContext
) -> None:
    # No topic: SNS answers NotFound, as a topic that is gone or a Publish that keeps failing.
    sent = load_handler("build_announcement")(
        {"outcome": "failed", "state": failed_release_state(), "execution": EXECUTION}, lambda_context
    )

    [queued] = received(announcement_queue["announcements"])
    [event] = received(announcement_queue["automation"])
    assert sent["deferred_notification"]["queue"] == announcement_queue["announcements"]
    assert sent["deferred_notification"]["message_id"]
    assert sent["deferred_notification"]["reason"].startswith(f"SNS did not take the announcement of {EXECUTION}")
    assert "deferred_event" not in sent
    assert "undelivered" not in sent
    assert (queued["channel"], queued["subject"], queued["execution"]) == ("sns", sent["subject"], EXECUTION)
    assert queued["message_attributes"]["outcome"]["StringValue"] == "failed"
    assert event["detail-type"] == "Release Failed"


def test_given_sns_and_the_announcement_queue_down_then_the_notification_is_undelivered_with_both_reasons(
    announcement_queue: dict[str, str], stack_env: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> None:
    stack_env.setenv("ANNOUNCEMENT_QUEUE_URL", announcement_queue["announcements"] + "-gone")

    sent = load_handler("build_announcement")(
        {"outcome": "failed", "state": failed_release_state(), "execution": EXECUTION}, lambda_context
    )

    [undelivered] = sent["undelivered"]
    assert undelivered["channel"] == "sns"
    assert undelivered["reason"].startswith("SNS did not take")
    assert undelivered["queue_error"].startswith("the announcement queue did not take it")
    assert "NonExistentQueue" in undelivered["queue_error"]
    assert "deferred_notification" not in sent
    assert [event["detail-type"] for event in received(announcement_queue["automation"])] == ["Release Failed"]


def test_given_deferred_announcements_when_both_channels_take_them_then_each_is_published_once_to_its_channel(
    announcement_queue: dict[str, str], lambda_context: FakeLambdaContext
) -> None:
    sns_up(announcement_queue)
    batch = deferred_batch(announcement_queue["announcements"], READY_NOTE, READY_EVENT)

    response = load_handler("deliver_announcement")(batch, lambda_context)

    assert response == {"batchItemFailures": []}
    [note] = received(announcement_queue["people"])
    [event] = received(announcement_queue["automation"])
    assert (note["Subject"], note["Message"]) == (READY_NOTE["subject"], READY_NOTE["message"])
    assert {name: attribute["Value"] for name, attribute in note["MessageAttributes"].items()} == {
        name: attribute["StringValue"] for name, attribute in READY_NOTE["message_attributes"].items()
    }
    assert (event["detail-type"], event["source"], event["detail"]) == (
        "Release Ready For Listing",
        "mlpublish",
        READY_EVENT["detail"],
    )


def test_given_sns_down_when_delivered_then_only_its_record_fails_backs_off_and_later_the_event_is_not_repeated(
    announcement_queue: dict[str, str], lambda_context: FakeLambdaContext
) -> None:
    queue = announcement_queue["announcements"]
    batch = deferred_batch(queue, READY_NOTE, READY_EVENT)
    note_id = next(record["messageId"] for record in batch["Records"] if '"sns"' in record["body"])
    handler = load_handler("deliver_announcement")

    down = handler(batch, lambda_context)
    hidden = sqs_event(queue)  # the back-off keeps the failed record out of sight
    sns_up(announcement_queue)
    [receipt] = [record["receiptHandle"] for record in batch["Records"] if record["messageId"] == note_id]
    boto3.client("sqs", region_name=SOURCE_REGION).change_message_visibility(
        QueueUrl=queue, ReceiptHandle=receipt, VisibilityTimeout=0
    )  # the back-off is over
    redelivered = sqs_event(queue)
    up = handler(redelivered, lambda_context)

    assert down == {"batchItemFailures": [{"itemIdentifier": note_id}]}
    assert hidden == {"Records": []}
    assert [record["messageId"] for record in redelivered["Records"]] == [note_id]
    assert up == {"batchItemFailures": []}
    assert [note["Subject"] for note in received(announcement_queue["people"])] == [READY_NOTE["subject"]]
    assert [event["detail-type"] for event in received(announcement_queue["automation"])] == [
        "Release Ready For Listing"
    ]


def test_given_a_record_that_is_not_an_announcement_then_it_fails_and_is_left_to_the_dead_letter_queue(
    announcement_queue: dict[str, str], lambda_context: FakeLambdaContext
) -> None:
    sns_up(announcement_queue)
    batch = deferred_batch(announcement_queue["announcements"], {"channel": "pager", "message": "?"}, READY_EVENT)
    [odd] = [record["messageId"] for record in batch["Records"] if "pager" in record["body"]]

    response = load_handler("deliver_announcement")(batch, lambda_context)

    assert response == {"batchItemFailures": [{"itemIdentifier": odd}]}
    assert received(announcement_queue["people"]) == []
    assert [event["detail-type"] for event in received(announcement_queue["automation"])] == [
        "Release Ready For Listing"
    ]

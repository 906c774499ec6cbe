"""Marketplace rules checked before anything is copied: each broken rule is reported, all at once."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from tests.fixtures.releases import (
    ACCOUNT,
    ARTIFACT_BUCKET,
    INPUT_KEY,
    MODEL_URI,
    PUBLISHING_REGION,
    release_document,
    release_spec,
)

from mlpublish import preflight
from mlpublish.errors import PreflightFailed
from mlpublish.preflight import PUBLISHING_REGIONS, MiB, check_release
from mlpublish.release import ReleaseSpec
from mlpublish.settings import AllowedSources, PublishingConfig
from mlpublish.state import BlobRef, PinnedImage

pytestmark = pytest.mark.unit

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
INPUT_URI = f"s3://{ARTIFACT_BUCKET}/{INPUT_KEY}"
OTHER_ACCOUNT = "111122223333"
EVERY_REGION = tuple(sorted(PUBLISHING_REGIONS))
# The stack as samconfig deploys it: us-east-1 by default, any publishing region allowed, a bucket per region.
STACK = PublishingConfig(default_region="us-east-1", allowed_regions=EVERY_REGION)


def check(
    spec: ReleaseSpec,
    *,
    account_id: str = ACCOUNT,
    publishing_region: str = PUBLISHING_REGION,
    publishing: PublishingConfig = STACK,
    input_size: int | None = 1024,
) -> None:
    sizes = {} if input_size is None else {spec.validation.input: input_size}
    check_release(
        spec, account_id=account_id, publishing_region=publishing_region, publishing=publishing, object_sizes=sizes
    )


def problems(spec: ReleaseSpec, **kwargs: Any) -> list[str]:
    with pytest.raises(PreflightFailed) as caught:
        check(spec, **kwargs)
    return caught.value.reasons


def with_validation(**fields: Any) -> ReleaseSpec:
    document = release_document()
    document["validation"].update(fields)
    return release_spec(document)


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads template.yaml, keeping intrinsic functions (!Ref, !Sub, ...) as plain values."""


_CloudFormationLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_given_the_example_release_in_the_sellers_account_then_every_rule_holds() -> None:
    check(release_spec())


def test_given_the_stacks_publishing_region_choices_then_preflight_accepts_exactly_those() -> None:
    template = yaml.load(TEMPLATE.read_text(), Loader=_CloudFormationLoader)

    assert set(template["Parameters"]["PublishingRegion"]["AllowedValues"]) == PUBLISHING_REGIONS


@pytest.mark.parametrize("region", sorted(PUBLISHING_REGIONS))
def test_given_a_default_enabled_sagemaker_region_then_it_is_a_publishing_region(region: str) -> None:
    check(release_spec(), publishing_region=region)


@pytest.mark.parametrize("region", ["ap-east-1", "me-south-1", "eu-south-1", "af-south-1", "us-gov-west-1", "mars-1"])
def test_given_an_opt_in_or_unknown_region_then_publishing_there_is_refused_with_the_choices(region: str) -> None:
    [reason] = problems(release_spec(), publishing_region=region)

    assert reason.startswith(f"publishing_region: {region} is not a Marketplace publishing region; use one of ")
    assert "us-east-1" in reason
    assert "eu-west-1" in reason


def test_given_the_stacks_default_allowed_regions_then_they_are_every_publishing_region() -> None:
    parameter = yaml.load(TEMPLATE.read_text(), Loader=_CloudFormationLoader)["Parameters"]["AllowedPublishingRegions"]

    assert re.fullmatch(parameter["AllowedPattern"], parameter["Default"])
    assert set(parameter["Default"].split(",")) == PUBLISHING_REGIONS


# --- where this stack may publish --------------------------------------------------------


def test_given_a_release_for_a_region_the_stack_does_not_allow_then_it_is_refused_naming_the_parameter() -> None:
    stack = PublishingConfig(default_region="us-east-1", allowed_regions=("us-east-1", "eu-west-1"))

    assert problems(release_spec(), publishing=stack) == [
        "publishing_region: us-east-2 is not one of the stack's AllowedPublishingRegions (us-east-1, eu-west-1); "
        "publish to one of those, or add us-east-2 to the AllowedPublishingRegions parameter and redeploy the stack"
    ]


def test_given_no_region_in_the_release_and_a_stack_default_it_does_not_allow_then_the_default_is_named() -> None:
    stack = PublishingConfig(default_region="us-east-1", allowed_regions=("eu-west-1",))

    [reason] = problems(release_spec(publishing_region=None), publishing_region="us-east-1", publishing=stack)

    assert reason.startswith(
        "publishing_region: not set, so the stack's PublishingRegion us-east-1 applies, but it is not one of the "
        "stack's AllowedPublishingRegions (eu-west-1); "
    )


def test_given_a_sellers_bucket_and_a_release_for_another_region_then_it_is_refused_with_both_ways_out() -> None:
    stack = PublishingConfig(default_region="us-east-1", allowed_regions=EVERY_REGION, bucket_name="acme-marketplace")

    assert problems(release_spec(), publishing=stack) == [
        "publishing_region: us-east-2 is not the stack's PublishingRegion us-east-1, the only region its "
        "PublishingBucketName bucket acme-marketplace serves (SageMaker reads a model package's artifacts only in "
        "the package's region); publish to us-east-1 (publishing_region: us-east-1, or leave it out), or redeploy "
        "the stack with PublishingBucketName empty so that each region gets its own bucket, mlpublish-ACCOUNT-REGION"
    ]


def test_given_a_sellers_bucket_and_a_release_for_another_region_the_stack_does_not_allow_then_both_are_said() -> None:
    stack = PublishingConfig(default_region="us-east-1", allowed_regions=("us-east-1",), bucket_name="acme-marketplace")

    allowed, bucket = problems(release_spec(), publishing=stack)

    assert allowed.startswith("publishing_region: us-east-2 is not one of the stack's AllowedPublishingRegions")
    assert bucket.startswith("publishing_region: us-east-2 is not the stack's PublishingRegion us-east-1")


@pytest.mark.parametrize("named", [True, False], ids=["named", "stack-default"])
def test_given_a_sellers_bucket_and_a_release_for_its_region_then_it_may_publish(named: bool) -> None:
    stack = PublishingConfig(default_region="us-east-2", allowed_regions=EVERY_REGION, bucket_name="acme-marketplace")

    check(
        release_spec(publishing_region="us-east-2" if named else None), publishing_region="us-east-2", publishing=stack
    )


def test_given_an_image_in_another_account_then_marketplace_ownership_is_explained() -> None:
    spec = release_spec(account=OTHER_ACCOUNT)

    assert problems(spec) == [
        f"containers.0.image: the image is in account {OTHER_ACCOUNT}, but the pipeline publishes from the "
        f"seller account {ACCOUNT} (its stack's), and Marketplace only accepts ECR repositories owned by that "
        "account; push the image to your own ECR first, or deploy the stack in the image's account"
    ]


def test_given_an_image_in_another_account_when_sources_are_checked_then_refused_before_any_read() -> None:
    with pytest.raises(PreflightFailed) as raised:
        preflight.check_sources(release_spec(account=OTHER_ACCOUNT), account_id=ACCOUNT, sources=None)

    assert OTHER_ACCOUNT in raised.value.reasons[0]
    assert ACCOUNT in raised.value.reasons[0]
    preflight.check_sources(release_spec(), account_id=ACCOUNT, sources=None)


@pytest.mark.parametrize("key", ["model.tgz", "model.tar", "model.zip", "model.tar.gz.bak"])
def test_given_model_data_that_is_not_a_tar_gz_then_the_gzipped_tar_rule_is_reported(key: str) -> None:
    document = release_document()
    document["containers"][0]["model_data"] = f"s3://{ARTIFACT_BUCKET}/sentiment/{key}"

    assert problems(release_spec(document)) == [
        "containers.0.model_data: SageMaker extracts model data as a gzipped tar into /opt/ml/model; upload a .tar.gz"
    ]


def test_given_a_container_without_model_data_then_no_model_data_rule_applies() -> None:
    document = release_document()
    del document["containers"][0]["model_data"]

    check(release_spec(document))


def test_given_a_validation_instance_not_offered_for_batch_then_it_must_be_in_the_transform_list() -> None:
    spec = with_validation(instance_type="ml.m5.xlarge")

    assert problems(spec) == [
        "validation.instance_type: ml.m5.xlarge is not in inference.transform_instance_types; "
        "validation must run on a supported instance"
    ]


def test_given_unsplit_input_larger_than_the_payload_limit_then_splitting_or_raising_the_limit_is_advised() -> None:
    spec = with_validation(split_type="None", max_payload_mb=6)

    [reason] = problems(spec, input_size=7 * MiB)

    assert reason == (
        f"validation.input: {INPUT_URI} is 7.0 MiB, sent as one record but max_payload_mb is 6; "
        "split the input (split_type: Line) or raise max_payload_mb (at most 100 for batch)"
    )


@pytest.mark.parametrize(
    ("split_type", "max_payload_mb", "size"),
    [("None", 6, 6 * MiB), ("None", 8, 7 * MiB), ("Line", 6, 7 * MiB), ("Line", 1, 500 * MiB)],
)
def test_given_input_that_fits_one_request_or_is_split_then_the_payload_rule_holds(
    split_type: str, max_payload_mb: int, size: int
) -> None:
    check(with_validation(split_type=split_type, max_payload_mb=max_payload_mb), input_size=size)


@pytest.mark.parametrize("split_type", ["None", "Line"])
def test_given_empty_validation_input_then_sample_data_is_asked_for(split_type: str) -> None:
    spec = with_validation(split_type=split_type)

    assert problems(spec, input_size=0) == [
        f"validation.input: {INPUT_URI} is empty; upload sample input data",
    ]


def test_given_no_known_size_for_the_input_then_the_size_rules_are_left_to_later_steps() -> None:
    check(with_validation(split_type="None"), input_size=None)


# --- sizes the copy cannot carry: S3 objects, ECR layers, the execution's state -----------------


def test_given_the_documented_limits_then_the_constants_give_their_figures() -> None:
    # Amazon S3 User Guide, "Amazon S3 multipart upload limits": 48.8 TiB, 10,000 parts of at most 5 GiB.
    assert round(preflight.S3_MAX_OBJECT_SIZE / preflight.TiB, 1) == 48.8
    # Amazon ECR service quotas: 4,200 parts of at most 10 MiB through the API, layers up to 52,000 MiB.
    assert preflight.ECR_API_MAX_LAYER_SIZE == 42_000 * MiB < preflight.ECR_MAX_LAYER_SIZE
    assert preflight.STEP_FUNCTIONS_PAYLOAD_LIMIT == 262_144


def test_given_botocores_ecr_model_then_a_part_of_the_quotas_largest_size_fits_an_upload_layer_part() -> None:
    model = botocore.session.get_session().get_service_model("ecr")

    assert model.shape_for("LayerPartBlob").metadata["max"] >= preflight.ECR_MAX_LAYER_PART_SIZE


def test_given_model_data_larger_than_an_s3_object_can_be_then_it_is_refused_with_its_size_and_the_limit() -> None:
    spec = release_spec()
    size = preflight.S3_MAX_OBJECT_SIZE + 1
    sizes = {spec.validation.input: 1024, MODEL_URI: size}

    with pytest.raises(PreflightFailed) as caught:
        check_release(
            spec, account_id=ACCOUNT, publishing_region=PUBLISHING_REGION, publishing=STACK, object_sizes=sizes
        )

    assert caught.value.reasons == [
        f"containers.0.model_data: {MODEL_URI} is 48.8 TiB (53,687,091,200,001 bytes), more than the 48.8 TiB "
        "(53,687,091,200,000 bytes) an S3 object can be (10,000 parts of at most 5 GiB), so it cannot be copied into "
        "the publishing bucket; make it smaller (leave out what inference does not read, such as checkpoints and "
        "optimizer state) and upload it again"
    ]


def test_given_validation_input_beyond_the_s3_limit_then_it_is_refused_as_well() -> None:
    [reason] = problems(with_validation(split_type="Line"), input_size=60 * preflight.TiB)

    assert reason.startswith(f"validation.input: {INPUT_URI} is 60.0 TiB (65,970,697,666,560 bytes), more than ")


def test_given_objects_as_large_as_s3_allows_then_the_size_rule_holds() -> None:
    spec = release_spec()
    sizes = {spec.validation.input: 1024, MODEL_URI: preflight.S3_MAX_OBJECT_SIZE}

    check_release(spec, account_id=ACCOUNT, publishing_region=PUBLISHING_REGION, publishing=STACK, object_sizes=sizes)


def test_given_a_layer_larger_than_ecr_takes_then_it_is_refused_with_its_size_and_the_limit() -> None:
    layer = BlobRef(digest="sha256:" + "a" * 64, size=53_000 * MiB, media_type="x")
    # Over the ECR API's 4,200 x 10 MiB, but the registry endpoint the copy pushes through takes it.
    small = BlobRef(digest="sha256:" + "b" * 64, size=preflight.ECR_MAX_LAYER_SIZE, media_type="x")

    assert preflight.layer_size_problems("containers.2.image", "IMAGE", [small, layer]) == [
        f"containers.2.image: IMAGE has a layer of 53,000 MiB (55,574,528,000 bytes, {layer.digest}), more than the "
        "52,000 MiB ECR takes in one layer; rebuild the image with smaller layers (split the large files across "
        "several COPY or RUN steps, or ship model weights as model_data rather than in the image) and push it again"
    ]


def blobs(count: int) -> list[BlobRef]:
    return [BlobRef(digest=f"sha256:{index:064x}", size=10**9, media_type=DOCKER_LAYER) for index in range(count)]


def pinned_image() -> PinnedImage:
    source = release_spec().containers[0].image_ref.model_copy(update={"digest": "sha256:" + "c" * 64})
    return PinnedImage(container="inference", source=source, platform="linux/amd64", destination_repository="acme/x")


def test_given_an_image_of_a_hundred_small_layers_then_its_copy_state_is_that_of_two_batches() -> None:
    small = [blob.model_copy(update={"size": 1024 * 1024}) for blob in blobs(101)]
    two = [blob.model_copy(update={"size": 1024 * 1024}) for blob in blobs(2)]

    size = preflight.image_copy_state_size(pinned_image(), PUBLISHING_REGION, small)

    # 101 blobs of 1 MiB are two batches of at most 64 blobs: the state does not grow per layer.
    assert size - preflight.image_copy_state_size(pinned_image(), PUBLISHING_REGION, two) < 200
    assert size < 2048


def test_given_an_image_of_a_hundred_large_layers_then_its_copy_state_is_well_within_the_budget() -> None:
    size = preflight.image_copy_state_size(pinned_image(), PUBLISHING_REGION, blobs(101))

    assert 5 * 1024 < size < preflight.STATE_BUDGET / 8
    assert (
        preflight.image_state_problem("containers.0.image", "IMAGE", pinned_image(), PUBLISHING_REGION, blobs(101))
        is None
    )


def test_given_an_image_of_so_many_layers_that_its_copy_would_crowd_the_state_then_it_is_refused_saying_so() -> None:
    many = blobs(1500)
    size = preflight.image_copy_state_size(pinned_image(), PUBLISHING_REGION, many)

    problem = preflight.image_state_problem("training.image", "IMAGE", pinned_image(), PUBLISHING_REGION, many)

    assert problem == (
        f"training.image: IMAGE has 1499 layers, and copying it would carry {size / 1024:.0f} KiB of pipeline "
        "state (a result per batch of blobs), more than its budget of 96 KiB (Step Functions caps a state at 256 KiB); "
        "rebuild the image with fewer layers (fewer RUN and COPY steps, or a multi-stage build that copies one "
        "directory into a small base) and push it again"
    )


def test_given_every_rule_broken_then_all_problems_are_reported_in_one_error() -> None:
    document = release_document(account=OTHER_ACCOUNT)
    document["containers"][0]["model_data"] = f"s3://{ARTIFACT_BUCKET}/model.zip"
    document["validation"]["instance_type"] = "ml.m5.xlarge"
    spec = release_spec(document)

    with pytest.raises(PreflightFailed) as caught:
        check(spec, publishing_region="ap-east-1", input_size=0)

    error = caught.value
    assert [reason.split(":", 1)[0] for reason in error.reasons] == [
        "publishing_region",
        "containers.0.image",
        "containers.0.model_data",
        "validation.instance_type",
        "validation.input",
    ]
    assert error.message == "release acme-sentiment 1.2.0 breaks 5 Marketplace rule(s); fix the release file:"


# --- the platform validation runs on -----------------------------------------------------------


def with_platform(platform: str) -> ReleaseSpec:
    document = release_document()
    document["containers"][0]["platform"] = platform
    return release_spec(document)


@pytest.mark.parametrize("platform", ["linux/arm64", "linux/arm64/v8", "linux/arm/v7", "windows/amd64"])
def test_given_a_container_asking_for_a_platform_other_than_linux_amd64_then_it_is_refused_with_the_build_fix(
    platform: str,
) -> None:
    assert problems(with_platform(platform)) == [
        f"containers.0.platform: {platform} cannot run where SageMaker validates the model: validation is a batch "
        "transform job, and batch transform instance types (ml.m5, ml.c5, ml.m6i, ml.p3, ml.g4dn, ml.g5, ...) are "
        "x86-64 only; set platform: linux/amd64 (or leave it out) and build for linux/amd64: docker buildx build "
        "--platform linux/amd64 --provenance=false --sbom=false "
        "--output type=registry,oci-mediatypes=false,compression=gzip,force-compression=true ..."
    ]


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/amd64/v3", "linux/x86_64"])
def test_given_a_container_asking_for_linux_amd64_then_the_platform_rule_holds(platform: str) -> None:
    check(with_platform(platform))


def test_given_botocores_batch_transform_instance_types_then_none_is_a_graviton_arm64_family() -> None:
    # The rule "validation runs on x86-64 only" rests on this enum; a Graviton family for batch
    # transform (c6g, m7g, r8g, ...) would make it wrong, and this test says so first.
    model = botocore.session.get_session().get_service_model("sagemaker")
    transform = model.shape_for("TransformInstanceType").enum
    realtime = model.shape_for("ProductionVariantInstanceType").enum
    graviton = re.compile(r"^ml\.[a-z]+\d+g[a-z]*\.")  # c6g, c6gn, m7g, r8gd: a "g" after the generation

    assert [value for value in transform if graviton.match(value)] == []
    assert any(graviton.match(value) for value in realtime)  # the pattern does find Graviton types


# --- the model artifact's first bytes -------------------------------------------------------------


def test_given_gzip_bytes_too_few_to_reach_the_tar_header_of_a_larger_object_then_nothing_is_concluded() -> None:
    head = gzip.compress(os.urandom(4096), mtime=0)[:40]

    assert preflight.model_data_problem("containers.0.model_data", "s3://b/m.tar.gz", head, 10_000) is None


def test_given_a_small_complete_gzip_of_too_few_bytes_for_a_tar_then_it_is_refused() -> None:
    problem = preflight.model_data_problem("containers.0.model_data", "s3://b/m.tar.gz", gzip.compress(b"x"), 21)

    assert problem is not None
    assert problem.startswith("containers.0.model_data: s3://b/m.tar.gz is gzip-compressed, but what it compresses")


def test_given_an_empty_model_artifact_then_it_is_refused_as_empty() -> None:
    problem = preflight.model_data_problem("containers.0.model_data", "s3://b/m.tar.gz", b"", 0)

    assert problem is not None
    assert problem.startswith("containers.0.model_data: s3://b/m.tar.gz is empty, but SageMaker extracts")


# --- sources the stack allows (SourceBuckets, WatchedBuckets, SourceRepositories) ------------

PIPELINE_BUCKET = "mlpublish-pipelinebucket-1a2b3c"
ALLOWED = AllowedSources(pipeline_bucket=PIPELINE_BUCKET, buckets=(ARTIFACT_BUCKET,))


def source_problems(spec: ReleaseSpec, sources: AllowedSources | None = ALLOWED) -> list[str]:
    return preflight.source_problems(spec, sources, ACCOUNT)


def test_given_sources_in_allowed_buckets_and_the_stacks_account_then_nothing_is_refused() -> None:
    assert source_problems(release_spec()) == []


def test_given_validation_input_in_a_bucket_the_stack_does_not_allow_then_it_is_refused_naming_the_parameter() -> None:
    document = release_document()
    document["validation"]["input"] = "s3://hr-private/payroll/2026.csv"

    [problem] = source_problems(release_spec(document))

    assert problem.startswith("validation.input: s3://hr-private/payroll/2026.csv is in bucket hr-private")
    assert f"(allowed: {PIPELINE_BUCKET}, {ARTIFACT_BUCKET})" in problem
    assert "add it to the stack's SourceBuckets parameter" in problem


def test_given_a_watched_bucket_then_releases_may_read_it() -> None:
    sources = AllowedSources(pipeline_bucket=PIPELINE_BUCKET, watched_buckets=("uploads",))

    assert source_problems(release_spec(bucket="uploads"), sources) == []
    assert len(source_problems(release_spec(bucket="elsewhere"), sources)) == 2  # model data and input


def test_given_source_repositories_then_only_matching_repositories_are_allowed() -> None:
    sources = ALLOWED.model_copy(update={"repositories": (f"arn:aws:ecr:*:{ACCOUNT}:repository/acme/*",)})

    assert source_problems(release_spec(repository="acme/sentiment"), sources) == []
    [problem] = source_problems(release_spec(repository="finance/forecast"), sources)
    assert f"repository arn:aws:ecr:us-west-2:{ACCOUNT}:repository/finance/forecast is not one of" in problem
    assert "SourceRepositories" in problem


def test_given_an_image_of_another_account_named_by_source_repositories_then_it_is_allowed() -> None:
    sources = ALLOWED.model_copy(update={"repositories": (f"arn:aws:ecr:us-west-2:{OTHER_ACCOUNT}:repository/*",)})

    assert source_problems(release_spec(account=OTHER_ACCOUNT), sources) == []


def test_given_an_image_of_another_account_and_no_source_repositories_then_the_refusal_says_how_to_allow_it() -> None:
    [problem] = source_problems(release_spec(account=OTHER_ACCOUNT))

    assert f"the image is in account {OTHER_ACCOUNT}, not the stack's account {ACCOUNT}" in problem
    assert "SourceRepositories parameter names them" in problem
    assert "repository's policy" in problem


def test_given_disallowed_sources_then_check_release_reports_them_with_every_other_rule() -> None:
    document = release_document()
    document["validation"]["input"] = "s3://hr-private/payroll/2026.csv"
    stack = STACK.model_copy(update={"sources": ALLOWED})

    reasons = problems(release_spec(document), publishing=stack)

    assert any(reason.startswith("validation.input: s3://hr-private/") for reason in reasons)


def test_given_disallowed_sources_then_check_sources_refuses_before_anything_is_read() -> None:
    document = release_document()
    document["containers"][0]["model_data"] = "s3://hr-private/model.tar.gz"

    with pytest.raises(PreflightFailed, match="names sources the stack does not allow; nothing was read"):
        preflight.check_sources(release_spec(document), account_id=ACCOUNT, sources=ALLOWED)


# --- sources in another account of the seller's (a development account) ---------------------

DEV_REPOSITORIES = ALLOWED.model_copy(
    update={"repositories": (f"arn:aws:ecr:us-west-2:{OTHER_ACCOUNT}:repository/acme/*",)}
)


def test_given_a_dev_account_image_named_by_source_repositories_then_every_rule_holds_for_the_stack() -> None:
    stack = STACK.model_copy(update={"sources": DEV_REPOSITORIES})

    check(release_spec(account=OTHER_ACCOUNT), publishing=stack)


def test_given_source_repositories_of_a_dev_account_then_another_accounts_image_is_still_refused() -> None:
    [problem] = source_problems(release_spec(account="444455556666"), DEV_REPOSITORIES)

    assert problem.startswith("containers.0.image: repository arn:aws:ecr:us-west-2:444455556666:repository/")
    assert "is not one of the stack's SourceRepositories" in problem


def test_given_source_repositories_of_a_dev_account_then_the_stacks_own_repositories_need_naming_too() -> None:
    [problem] = source_problems(release_spec(), DEV_REPOSITORIES)

    assert f"repository arn:aws:ecr:us-west-2:{ACCOUNT}:repository/" in problem


def test_given_a_dev_account_image_without_source_repositories_then_the_refusal_gives_the_deploy_command() -> None:
    [problem] = source_problems(release_spec(account=OTHER_ACCOUNT))

    arn = f"arn:aws:ecr:us-west-2:{OTHER_ACCOUNT}:repository/acme/sentiment"
    assert f"sam deploy --parameter-overrides SourceRepositories={arn}" in problem
    assert f"SourceAccounts={OTHER_ACCOUNT}" in problem
    assert f"The published copy is always in {ACCOUNT}" in problem


def test_given_a_dev_account_bucket_named_by_source_buckets_then_it_is_allowed_whatever_its_account() -> None:
    # Bucket names are global: SourceBuckets names a bucket, not an account, as IAM's ARNs do.
    assert source_problems(release_spec(account=OTHER_ACCOUNT, bucket=ARTIFACT_BUCKET), DEV_REPOSITORIES) == []

"""Marketplace rules checked before anything is copied or created.

Validation takes hours; a rule that can be checked up front is checked here, and every
broken rule is reported at once so a seller fixes the release in one round.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from botocore.exceptions import ClientError

from mlpublish.aws import error_code, transient_errors
from mlpublish.errors import PreflightFailed, ReleaseNotFound
from mlpublish.images.copy import batches_of
from mlpublish.images.manifests import BUILD_HINT
from mlpublish.images.osinfo import ImagePlatform
from mlpublish.images.registry_api import CHUNK_SIZE, MAX_LAYER_SIZE, MAX_PARTS
from mlpublish.objects import S3_MAX_OBJECT_SIZE, S3_MAX_PART_SIZE, S3_MAX_PARTS
from mlpublish.release import TRAINING_IMAGE, ReleaseSpec, value_problem
from mlpublish.settings import AllowedSources, PublishingConfig
from mlpublish.state import DOCKER_V2_MANIFEST, BatchCopied, BlobRef, CopyTarget, ImagePlan, PinnedImage, Release

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

# Step Functions: a state's input or output is at most 262,144 bytes of UTF-8 (Step Functions
# Developer Guide, "Step Functions service quotas"; StateEnteredEventDetails.input in the API
# reference); a larger one fails the execution with States.DataLimitExceeded, hours in.
STEP_FUNCTIONS_PAYLOAD_LIMIT = 256 * KiB
# The state holds the resolved release and, next to it, the copy results (a few hundred bytes
# per image and object) and the model package's ARN; the release gets well under half of the
# cap. An image's copy (its plan and a result per blob) gets the same budget.
STATE_BUDGET = 96 * KiB

# ECR (Amazon ECR User Guide, "Amazon ECR service quotas", none adjustable): no layer over
# 52,000 MiB; through the ECR API's UploadLayerPart, at most 4,200 parts of 5 to 10 MiB, which
# would bind first (42,000 MiB). The copy pushes through the registry endpoint instead
# (images/registry_api.py), as docker push does, where the 52,000 MiB layer limit binds.
ECR_MAX_LAYER_PARTS = MAX_PARTS
ECR_MAX_LAYER_PART_SIZE = CHUNK_SIZE
ECR_MAX_LAYER_SIZE = MAX_LAYER_SIZE
ECR_API_MAX_LAYER_SIZE = min(ECR_MAX_LAYER_SIZE, ECR_MAX_LAYER_PARTS * ECR_MAX_LAYER_PART_SIZE)


# SageMaker regions that are enabled by default (no opt-in): the only ones Marketplace
# publishes from (Seller Guide, "Supported AWS Regions for publishing").
PUBLISHING_REGIONS = frozenset(
    {
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "ca-central-1",
        "sa-east-1",
        "eu-central-1",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "eu-north-1",
        "ap-south-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-southeast-1",
        "ap-southeast-2",
    }
)

BATCH_PAYLOAD_LIMIT_MB = 100

# SageMaker validates a model package with a batch transform job on validation.instance_type,
# one of SupportedTransformInstanceTypes. Every family of botocore's TransformInstanceType
# enum (m4 c4 p2 p3 c5 m5 m6i c6i r6i m7i c7i r7i g4dn g5 g6 g6e trn1 inf2: marketplace-facts
# §2, from botocore 1.44.5's SageMaker model) is an x86-64 (Intel or AMD) instance; the
# Graviton families (c6g, m7g, ...) are offered for real-time inference only. So the image
# that is validated must be linux/amd64. test_preflight checks the enum for Graviton families.
VALIDATION_PLATFORM = "linux/amd64"
TRANSFORM_FAMILIES = "ml.m5, ml.c5, ml.m6i, ml.p3, ml.g4dn, ml.g5, ..."
_AMD64 = frozenset({"amd64", "x86_64", "x86-64"})

# What a model artifact is, told from its first bytes. SageMaker extracts ModelDataUrl as a
# gzip-compressed tar into /opt/ml/model (marketplace-facts §7); a few KiB of it are enough
# to tell, so only the first MODEL_DATA_PEEK bytes are read, never the whole object.
MODEL_DATA_PEEK = 64 * KiB
GZIP_MAGIC = b"\x1f\x8b"
TAR_MAGIC_OFFSET = 257  # "ustar" in a POSIX or GNU tar header (the first member's)
TAR_HEADER = 512
MODEL_DATA_FIX = (
    "make one from the directory SageMaker should find in /opt/ml/model with `tar czf model.tar.gz -C model .` "
    "and upload it there"
)
_NOT_GZIP = (
    (b"PK\x03\x04", "a ZIP archive (it starts with PK)"),
    (b"PK\x05\x06", "an empty ZIP archive (it starts with PK)"),
    (b"BZh", "a bzip2 file (it starts with BZh)"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"\x28\xb5\x2f\xfd", "a zstd file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x93NUMPY", "a NumPy array"),
    (b"\x89HDF", "an HDF5 file"),
)


def image_account_problems(spec: ReleaseSpec, account_id: str) -> list[str]:
    """Images outside the stack's account, where no stack says which other accounts it may read
    (tools and tests): Marketplace takes only the seller's own repositories."""
    return [
        f"{field}: the image is in account {ref.registry_id}, but the "
        f"pipeline publishes from the seller account {account_id} (its stack's), and Marketplace only "
        "accepts ECR repositories owned by that account; push the image to your own ECR first, or "
        "deploy the stack in the image's account"
        for _, field, _, ref in spec.images()
        if ref.registry_id != account_id
    ]


def source_problems(spec: ReleaseSpec, sources: AllowedSources | None, account_id: str) -> list[str]:
    """Images and objects outside what the stack lets releases read (its Source* parameters).

    A release file names what the pipeline copies into the seller's listing, where validation
    data may become public: naming a bucket or repository the seller did not allow (another
    team's data, say) must fail before anything is read, not after it is published.

    Sources may be in another account of the seller's (a development account) when the stack
    allows them: Marketplace requires the model package's ECR repositories to be owned by the
    seller account (Seller Guide, "Service restrictions and quotas": marketplace-facts.md §1,
    [SG-limits]), and that is the published copy's, always in the stack's account; where the
    pipeline copies from is the seller's to allow.
    """
    if sources is None:
        return image_account_problems(spec, account_id)
    problems = []
    for _, field, _, ref in spec.images():
        arn = f"arn:aws:ecr:{ref.region}:{ref.registry_id}:repository/{ref.repository}"
        if sources.allows_repository(arn, account_id=account_id):
            continue
        if sources.repositories:
            problems.append(
                f"{field}: repository {arn} is not one of the stack's SourceRepositories "
                f"({', '.join(sources.repositories)}); add it (IAM wildcards work, e.g. "
                f"arn:aws:ecr:{ref.region}:{ref.registry_id}:repository/{ref.repository.split('/')[0]}/*) with "
                "sam deploy --parameter-overrides SourceRepositories=..., or push the image to an allowed repository"
            )
        else:
            problems.append(
                f"{field}: the image is in account {ref.registry_id}, not the stack's account "
                f"{account_id}; releases read another account's repositories only when the stack's "
                f"SourceRepositories parameter names them (e.g. {arn}) and the repository's policy lets the "
                f"pipeline's roles read it: deploy with sam deploy --parameter-overrides SourceRepositories={arn} "
                f"(and SourceAccounts={ref.registry_id} for its pushes to start releases), or push the image to "
                f"a repository of {account_id}. The published copy is always in {account_id}, as Marketplace "
                "requires (ECR repositories owned by the seller account)"
            )
    for _, _, field, uri in spec.objects():
        bucket = uri.removeprefix("s3://").split("/", 1)[0]
        if sources.allows_bucket(bucket):
            continue
        problems.append(
            f"{field}: {uri} is in bucket {bucket}, which the stack does not let releases read (allowed: "
            f"{', '.join(sources.bucket_names)}); if releases may read it, add it to the stack's SourceBuckets "
            "parameter (sam deploy --parameter-overrides SourceBuckets=...), or move the object to an allowed bucket"
        )
    return problems


def check_sources(spec: ReleaseSpec, *, account_id: str, sources: AllowedSources | None) -> None:
    """Raise PreflightFailed, before anything is read, when the release names what it may not read."""
    problems = source_problems(spec, sources, account_id)
    if problems:
        raise PreflightFailed(
            f"release {spec.product.name} {spec.product.version} names sources the stack does not allow; "
            "nothing was read:",
            reasons=problems,
        )


def check_release(
    spec: ReleaseSpec,
    *,
    account_id: str,
    publishing_region: str,
    publishing: PublishingConfig,
    object_sizes: dict[str, int],
) -> None:
    """Raise PreflightFailed listing every broken rule; return quietly when all hold.

    ``publishing`` is what the stack allows; ``object_sizes`` maps each s3:// URI the
    release names to its size in bytes.
    """
    problems = region_problems(spec, publishing_region, publishing)
    problems += source_problems(spec, publishing.sources, account_id)
    problems += platform_problems(spec)
    problems += object_size_problems(spec, object_sizes)
    for index, container in enumerate(spec.containers):
        if container.model_data is not None and not container.model_data.endswith(".tar.gz"):
            problems.append(
                f"containers.{index}.model_data: SageMaker extracts model data as a gzipped tar "
                "into /opt/ml/model; upload a .tar.gz"
            )
    problems += algorithm_problems(spec)
    problems += source_algorithm_problems(spec, account_id, publishing_region)
    validation = spec.validation
    if spec.inference is not None and validation.instance_type not in spec.inference.transform_instance_types:
        problems.append(
            f"validation.instance_type: {validation.instance_type} is not in "
            "inference.transform_instance_types; validation must run on a supported instance"
        )
    input_size = object_sizes.get(validation.input)
    if input_size is not None:
        if input_size == 0:
            problems.append(f"validation.input: {validation.input} is empty; upload sample input data")
        elif validation.split_type == "None" and input_size > validation.max_payload_mb * MiB:
            problems.append(
                f"validation.input: {validation.input} is {input_size / MiB:.1f} MiB, sent as one "
                f"record but max_payload_mb is {validation.max_payload_mb}; split the input "
                "(split_type: Line) or raise max_payload_mb (at most 100 for batch)"
            )
    if problems:
        raise PreflightFailed(
            f"release {spec.product.name} {spec.product.version} breaks {len(problems)} Marketplace "
            "rule(s); fix the release file:",
            reasons=problems,
        )


def source_algorithm_problems(spec: ReleaseSpec, account_id: str, publishing_region: str) -> list[str]:
    """Where the algorithm of a model package built from one must be. AWS Marketplace does not
    list packages built on AWS's built-in algorithms or on algorithms subscribed to in AWS
    Marketplace (Seller Guide, "Service restrictions and quotas": marketplace-facts.md,
    [SG-limits]); such algorithms live in AWS's or another seller's account, so the algorithm
    must be the seller's own, in the stack's account. SageMaker takes it in the package's own
    region."""
    source = spec.source_algorithm
    if source is None:
        return []
    problems = []
    if source.account != account_id:
        problems.append(
            f"source_algorithm.algorithm: {source.algorithm} is in account {source.account}, not the seller "
            f"account {account_id}; AWS Marketplace does not list model packages built on AWS's built-in "
            "algorithms or on algorithms subscribed to in AWS Marketplace: build the package on your own "
            "algorithm (publish it first with product.kind: algorithm)"
        )
    if source.region != publishing_region:
        problems.append(
            f"source_algorithm.algorithm: {source.algorithm} is in {source.region}, but the package publishes in "
            f"{publishing_region}; SageMaker builds a package from an algorithm of its own region: publish the "
            f"algorithm in {publishing_region} or set publishing_region: {source.region}"
        )
    if not source.model_data.endswith(".tar.gz"):
        problems.append(
            "source_algorithm.model_data: SageMaker extracts model data as a gzipped tar into /opt/ml/model; "
            "upload a .tar.gz (the model.tar.gz the algorithm's training job wrote)"
        )
    return problems


def check_source_algorithm(spec: ReleaseSpec, sagemaker: Any) -> None:
    """The algorithm a model package is built from, as SageMaker describes it now: it exists,
    passed its validation, is certified for Marketplace, and transforms on the validation's
    instance type. Raises PreflightFailed (or ReleaseNotFound) naming the fix."""
    source = spec.source_algorithm
    assert source is not None  # nosec B101  # called for packages built from an algorithm only
    try:
        with transient_errors(f"describing algorithm {source.algorithm}"):
            described = sagemaker.describe_algorithm(AlgorithmName=source.algorithm)
    except ClientError as exc:
        if error_code(exc) in {"ValidationException", "ResourceNotFound", "ResourceNotFoundException"}:
            raise ReleaseNotFound(
                f"source_algorithm.algorithm: {source.algorithm} does not exist ({error_code(exc)}); publish the "
                "algorithm first (product.kind: algorithm) and name the ARN its announcement gives"
            ) from exc
        raise
    problems = []
    status = described.get("AlgorithmStatus")
    if status != "Completed":
        problems.append(
            f"source_algorithm.algorithm: {source.algorithm} is {status}, not validated; a package can be built "
            "on it once its validation completed (its own release announces that): start this release again then"
        )
    if not described.get("CertifyForMarketplace", False):
        problems.append(
            f"source_algorithm.algorithm: {source.algorithm} is not certified for AWS Marketplace; publish the "
            "algorithm with this pipeline (it creates algorithms with CertifyForMarketplace)"
        )
    supported = (described.get("InferenceSpecification") or {}).get("SupportedTransformInstanceTypes") or []
    if spec.validation.instance_type not in supported:
        problems.append(
            f"validation.instance_type: {spec.validation.instance_type} is not one of the algorithm's transform "
            f"instance types ({', '.join(supported) or 'none'}); validate on one of them"
        )
    if problems:
        raise PreflightFailed(
            f"release {spec.product.name} {spec.product.version} cannot be built on {source.algorithm}:",
            reasons=problems,
        )


def channel_compression(uri: str) -> str:
    """The CompressionType a validation training channel's object is sent with: Gzip for a .gz name."""
    return "Gzip" if uri.endswith(".gz") else "None"


def algorithm_problems(spec: ReleaseSpec) -> list[str]:
    """An algorithm's validation training job against what the algorithm declares: SageMaker
    refuses CreateAlgorithm (or fails validation hours later) for each of these."""
    training, job = spec.training, spec.validation.training
    if training is None or job is None:
        return []
    problems = []
    if training.image is not None and any(container.name == TRAINING_IMAGE for container in spec.containers):
        problems.append(
            f"containers: a container named {TRAINING_IMAGE!r} clashes with the separate training image; rename it"
        )
    problems += [
        f"containers.{index}.model_data: an algorithm's inference containers serve the model its training makes; "
        "remove model_data (publish a model package from the algorithm to ship a trained model)"
        for index, container in enumerate(spec.containers)
        if container.model_data is not None
    ]
    if job.instance_type not in training.instance_types:
        problems.append(
            f"validation.training.instance_type: {job.instance_type} is not in training.instance_types "
            f"({', '.join(training.instance_types)}); validation must train on a supported instance"
        )
    if job.instance_count > 1 and not training.distributed:
        problems.append(
            f"validation.training.instance_count: {job.instance_count} instances need training.distributed: true "
            "(SupportsDistributedTraining); use 1, or declare the algorithm distributed"
        )
    channels = {channel.name: channel for channel in training.channels}
    for name in job.channels:
        channel = channels.get(name)
        if channel is None:
            problems.append(
                f"validation.training.channels.{name}: the algorithm declares no channel {name!r} "
                f"(training.channels: {', '.join(channels)}); use a declared channel or declare it"
            )
        else:
            if job.input_mode not in channel.input_modes:
                problems.append(
                    f"validation.training.input_mode: {job.input_mode} is not among channel {name}'s input_modes "
                    f"({', '.join(channel.input_modes)})"
                )
            compression = channel_compression(job.channels[name])
            if compression not in channel.compression:
                problems.append(
                    f"validation.training.channels.{name}: {job.channels[name]} is sent as CompressionType "
                    f"{compression} (a .gz name means Gzip), which channel {name} does not take (compression: "
                    f"{', '.join(channel.compression)}); upload it {'un' if compression == 'Gzip' else ''}compressed "
                    "or declare the compression"
                )
    missing = [name for name, channel in channels.items() if channel.required and name not in job.channels]
    if missing:
        problems.append(
            f"validation.training.channels: the required channel(s) {', '.join(missing)} have no data; give an "
            "s3:// URI for each (or mark the channel required: false)"
        )
    declared = {parameter.name: parameter for parameter in training.hyperparameters}
    for name, value in job.hyperparameters.items():
        parameter = declared.get(name)
        if parameter is None:
            problems.append(
                f"validation.training.hyperparameters.{name}: not a hyperparameter of the algorithm "
                "(training.hyperparameters); declare it or remove it"
            )
            continue
        problem = value_problem(parameter, value)
        if problem:
            problems.append(f"validation.training.hyperparameters.{name}: {problem}")
    unset = [
        name
        for name, parameter in declared.items()
        if parameter.required and parameter.default is None and name not in job.hyperparameters
    ]
    if unset:
        problems.append(
            f"validation.training.hyperparameters: required hyperparameter(s) {', '.join(unset)} have neither a "
            "value nor a default; give one"
        )
    return problems


def object_size_problems(spec: ReleaseSpec, object_sizes: dict[str, int]) -> list[str]:
    """Objects larger than S3 lets the copy into the publishing bucket be (``object_sizes``: the
    pinned sizes, from HeadObject or the trigger's event)."""
    problems = []
    for _, _, field, uri in spec.objects():
        size = object_sizes.get(uri)
        if size is not None and size > S3_MAX_OBJECT_SIZE:
            problems.append(
                f"{field}: {uri} is {size / TiB:,.1f} TiB ({size:,} bytes), more than the "
                f"{S3_MAX_OBJECT_SIZE / TiB:.1f} TiB ({S3_MAX_OBJECT_SIZE:,} bytes) an S3 object can be "
                f"({S3_MAX_PARTS:,} parts of at most {S3_MAX_PART_SIZE // GiB} GiB), so it cannot be copied into the "
                "publishing bucket; make it smaller (leave out what inference does not read, such as checkpoints and "
                "optimizer state) and upload it again"
            )
    return problems


def layer_size_problems(field: str, image: str, layers: list[BlobRef]) -> list[str]:
    """Layers of the image at ``field`` (``image``) larger than ECR takes."""
    return [
        f"{field}: {image} has a layer of {layer.size / MiB:,.0f} MiB ({layer.size:,} bytes, "
        f"{layer.digest}), more than the {ECR_MAX_LAYER_SIZE // MiB:,} MiB ECR takes in one layer; rebuild the "
        "image with smaller layers (split the large files across several COPY or RUN steps, or ship model weights "
        "as model_data rather than in the image) and push it again"
        for layer in layers
        if layer.size > ECR_MAX_LAYER_SIZE
    ]


def image_copy_state_size(image: PinnedImage, publishing_region: str, blobs: list[BlobRef]) -> int:
    """Bytes of the largest state an image's copy carries: CopyImages' iteration once its blobs
    are copied (statemachine/publish.asl.json), which holds the image, its plan (a number per
    batch of blobs, ``batches_of``) and a result per batch."""
    target = CopyTarget(
        container=image.container,
        source=image.source,
        platform=image.platform,
        destination_region=publishing_region,
        destination_repository=image.destination_repository,
    )
    digest = blobs[0].digest  # as long as the manifests' digests the plan holds
    batches = batches_of(blobs)
    plan = ImagePlan(
        target=target,
        source_media_type=DOCKER_V2_MANIFEST,
        selected_digest=digest,
        published_digest=digest,
        conversion="oci-to-docker",
        blobs=len(blobs),
        blobs_to_copy=len(blobs),
        bytes_to_copy=sum(blob.size for blob in blobs),
        batches=list(range(len(batches))),
    )
    results = [
        BatchCopied(batch=number, blobs_copied=len(batch), bytes_copied=sum(blob.size for blob in batch))
        for number, batch in enumerate(batches)
    ]
    state = {
        "image": image.model_dump(mode="json"),
        "publishing_region": publishing_region,
        "plan": plan.model_dump(mode="json"),
        "blobs": [result.model_dump(mode="json", exclude_none=True) for result in results],
    }
    return len(json.dumps(state, separators=(",", ":")).encode())


def image_state_problem(
    field: str, image: str, pinned: PinnedImage, publishing_region: str, blobs: list[BlobRef]
) -> str | None:
    """Whether copying the image at ``field`` (``image``) would carry more state than its budget."""
    size = image_copy_state_size(pinned, publishing_region, blobs)
    if size <= STATE_BUDGET:
        return None
    return (
        f"{field}: {image} has {len(blobs) - 1} layers, and copying it would carry "
        f"{size / KiB:.0f} KiB of pipeline state (a result per batch of blobs), more than its budget of "
        f"{STATE_BUDGET // KiB} KiB (Step Functions caps a state at {STEP_FUNCTIONS_PAYLOAD_LIMIT // KiB} KiB); "
        "rebuild the image with fewer layers (fewer RUN and COPY steps, or a multi-stage build that copies one "
        "directory into a small base) and push it again"
    )


def platform_problems(spec: ReleaseSpec) -> list[str]:
    """Containers asking for a platform other than the one SageMaker validates on."""
    problems = []
    for index, container in enumerate(spec.containers):
        if not _is_validation_platform(*container.platform.lower().split("/")[:2]):
            problems.append(
                f"containers.{index}.platform: {container.platform} cannot run where SageMaker validates the "
                f"model: validation is a batch transform job, and batch transform instance types "
                f"({TRANSFORM_FAMILIES}) are x86-64 only; set platform: {VALIDATION_PLATFORM} (or leave it out) "
                f"and build for {VALIDATION_PLATFORM}: {BUILD_HINT.format(platform=VALIDATION_PLATFORM)}"
            )
    return problems


def image_platform_problem(spec: ReleaseSpec, field: str, image: str, config: str, found: ImagePlatform) -> str | None:
    """Whether the image config of the image at ``field`` (``image``, config digest ``config``)
    declares a platform validation can run; an image config that names none is let through."""
    if not (found.os or found.architecture) or _is_validation_platform(found.os, found.architecture):
        return None
    if field == "training.image":
        assert spec.validation.training is not None  # nosec B101  # an algorithm release has it (release.py)
        job = f"a training job on {spec.validation.training.instance_type}, and training"
    else:
        job = f"a batch transform job on {spec.validation.instance_type}, and batch transform"
    return (
        f"{field}: {image} is built for {found} (its image config {config} says so), but "
        f"SageMaker validates it with {job} "
        f"instance types ({TRANSFORM_FAMILIES}) are x86-64 only, so it must be {VALIDATION_PLATFORM}; "
        f"build for {VALIDATION_PLATFORM}: {BUILD_HINT.format(platform=VALIDATION_PLATFORM)}, and push it again"
    )


def _is_validation_platform(os_name: str, architecture: str = "") -> bool:
    return os_name.lower() == "linux" and architecture.lower() in _AMD64


def model_data_problem(field: str, uri: str, head: bytes, size: int) -> str | None:
    """Whether ``head``, the first bytes of the ``size``-byte object at ``uri``, starts a
    gzip-compressed tar; ``field`` is the release's field path. None when it does, or when
    the bytes read cannot tell."""
    what = _not_a_gzipped_tar(head, complete=len(head) >= size)
    if what is None:
        return None
    return (
        f"{field}: {uri} is {what}, but SageMaker extracts model data as a gzip-compressed tar into "
        f"/opt/ml/model; {MODEL_DATA_FIX}"
    )


def _not_a_gzipped_tar(head: bytes, *, complete: bool) -> str | None:
    if not head:
        return "empty"
    if not head.startswith(GZIP_MAGIC):
        if head[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + 5] == b"ustar":
            return "an uncompressed tar"
        for magic, name in _NOT_GZIP:
            if head.startswith(magic):
                return name
        return f"not gzip-compressed (it starts with {head[:4].hex(' ')}, not the gzip magic 1f 8b)"
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
    try:
        tar = inflater.decompress(head, TAR_HEADER)
    except zlib.error as exc:
        return f"a broken gzip stream ({exc})"
    if len(tar) < TAR_HEADER:
        if not complete and not inflater.eof:
            return None  # too few bytes read to tell
        return f"gzip-compressed, but what it compresses is {len(tar)} bytes, too short for a tar"
    if tar[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + 5] != b"ustar":
        return "gzip-compressed, but what it compresses is not a tar (no ustar header)"
    return None


def region_problems(spec: ReleaseSpec, publishing_region: str, publishing: PublishingConfig) -> list[str]:
    """Whether this stack can publish in ``publishing_region``: a Marketplace region, one of
    the stack's AllowedPublishingRegions (its IAM policies cover only those), and, when the
    seller fixed PublishingBucketName, that bucket's region (the stack's PublishingRegion)."""
    if publishing_region not in PUBLISHING_REGIONS:
        return [
            f"publishing_region: {publishing_region} is not a Marketplace publishing region; "
            f"use one of {', '.join(sorted(PUBLISHING_REGIONS))}"
        ]
    problems = []
    default = publishing.default_region
    chosen = (
        f"publishing_region: {publishing_region}"
        if spec.publishing_region
        else f"publishing_region: not set, so the stack's PublishingRegion {publishing_region} applies, but it"
    )
    if publishing_region not in publishing.allowed_regions:
        problems.append(
            f"{chosen} is not one of the stack's AllowedPublishingRegions "
            f"({', '.join(publishing.allowed_regions)}); publish to one of those, or add {publishing_region} to "
            "the AllowedPublishingRegions parameter and redeploy the stack"
        )
    if publishing.bucket_name and publishing_region != default:
        problems.append(
            f"{chosen} is not the stack's PublishingRegion {default}, the only region its PublishingBucketName "
            f"bucket {publishing.bucket_name} serves (SageMaker reads a model package's artifacts only in the "
            f"package's region); publish to {default} (publishing_region: {default}, or leave it out), or "
            "redeploy the stack with PublishingBucketName empty so that each region gets its own bucket, "
            "mlpublish-ACCOUNT-REGION"
        )
    return problems


def check_state_size(release: Release) -> None:
    """Raise PreflightFailed when the release would crowd the execution's 256 KiB state.

    Checked before anything is copied: hours later, a state over the cap fails the
    execution (States.DataLimitExceeded) without saying which part of the release is large.
    """
    size = len(release.model_dump_json())
    if size <= STATE_BUDGET:
        return
    spec = release.spec
    variables = sum(len(container.environment) for container in spec.containers)
    environment = sum(len(k) + len(v) for container in spec.containers for k, v in container.environment.items())
    parts = [
        (
            environment,
            f"containers.*.environment: {variables} variable(s) hold {environment / KiB:.0f} KiB; keep long "
            "values (configuration, vocabularies, prompts) in a file inside model_data or the image and pass "
            "only its path",
        ),
        (
            size - environment,
            f"containers: {len(spec.containers)} container(s) take {(size - environment) / KiB:.0f} KiB besides "
            "their environment (names, image URIs, S3 keys, once in the spec and once pinned); use shorter "
            "S3 keys or fewer containers",
        ),
    ]
    raise PreflightFailed(
        f"release {spec.product.name} {spec.product.version} takes {size / KiB:.0f} KiB of pipeline state, "
        f"more than its budget of {STATE_BUDGET // KiB} KiB (Step Functions caps an execution's state at "
        f"{STEP_FUNCTIONS_PAYLOAD_LIMIT // KiB} KiB, and the state holds the release and the copy results); "
        "make it smaller, largest part first:",
        reasons=[reason for _, reason in sorted(parts, key=lambda part: part[0], reverse=True)],
    )

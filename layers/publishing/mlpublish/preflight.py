"""Marketplace rules checked before anything is copied or created.

Validation takes hours; a rule that can be checked up front is checked here, and every
broken rule is reported at once so a seller fixes the release in one round.
"""

from __future__ import annotations

from mlpublish.errors import PreflightFailed
from mlpublish.release import ReleaseSpec

MiB = 1024 * 1024

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


def check_release(
    spec: ReleaseSpec,
    *,
    account_id: str,
    publishing_region: str,
    object_sizes: dict[str, int],
) -> None:
    """Raise PreflightFailed listing every broken rule; return quietly when all hold.

    ``object_sizes`` maps each s3:// URI the release names to its size in bytes.
    """
    problems: list[str] = []
    if publishing_region not in PUBLISHING_REGIONS:
        problems.append(
            f"publishing_region: {publishing_region} is not a Marketplace publishing region; "
            f"use one of {', '.join(sorted(PUBLISHING_REGIONS))}"
        )
    for index, container in enumerate(spec.containers):
        ref = container.image_ref
        if ref.registry_id != account_id:
            problems.append(
                f"containers.{index}.image: the image is in account {ref.registry_id}, but Marketplace "
                f"only accepts ECR repositories owned by the seller account {account_id}; push the "
                "image to your own ECR first"
            )
        if container.model_data is not None and not container.model_data.endswith(".tar.gz"):
            problems.append(
                f"containers.{index}.model_data: SageMaker extracts model data as a gzipped tar "
                "into /opt/ml/model; upload a .tar.gz"
            )
    validation = spec.validation
    if validation.instance_type not in spec.inference.transform_instance_types:
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

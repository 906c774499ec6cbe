"""A release built in the seller's development account, published from the seller account's stack.

Two accounts in one sandbox: the image is pushed and the artifacts uploaded in the development
account, whose repository and bucket policies let the stack's account read and whose forwarding
rules (templates/source-account.yaml) bring the push to the stack's bus. Everything published
is in the stack's account. Without the repository policy the stack's roles cannot read the image,
as on AWS, and the release fails announcing it.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.cli_runs import CliRun
from tests.fixtures.images import WrittenLayout, write_layout

from sandbox.oci import open_layout
from sandbox.report import delivery_report
from sandbox.runner import ROOT, RunOptions, Sandbox, load_release

pytestmark = pytest.mark.e2e

STACK_ACCOUNT, DEV_ACCOUNT = "123456789012", "210987654321"
REPOSITORY = "acme/sentiment"
DEV_REPOSITORY_ARN = f"arn:aws:ecr:us-west-2:{DEV_ACCOUNT}:repository/{REPOSITORY}"


def dev_release(document: dict[str, Any]) -> None:
    container = document["containers"][0]
    container["image"] = container["image"].replace(STACK_ACCOUNT, DEV_ACCOUNT)


@dataclass(frozen=True)
class TwoAccountRun:
    report: dict[str, Any]
    stack_repositories: list[str]  # ECR repositories of the stack's account in the publishing region
    dev_repositories: list[str]  # ... and of the development account
    dev_buckets: list[str]  # buckets of the development account
    published_bucket_owner: str  # the account owning the publishing bucket


def owner_of(bucket: str) -> str:
    from moto.s3.models import s3_backends

    return str(s3_backends.bucket_accounts[bucket][1])


@pytest.fixture(scope="module")
def two_accounts(tmp_path_factory: pytest.TempPathFactory, release_file: Callable[..., Path]) -> TwoAccountRun:
    work = tmp_path_factory.mktemp("source-account")
    release = release_file("dev-account", dev_release)
    written = write_layout(work / "image", "docker-v2", tag="1.2.0")
    options = RunOptions(
        release=release, validation="completed", source_account=DEV_ACCOUNT, log_file=work / "lambda.log"
    )
    sandbox = Sandbox(load_release(release), options)
    with contextlib.redirect_stdout(io.StringIO()), sandbox.running():
        digest, delivery = sandbox.seed_and_trigger(open_layout(written.path))
        report = delivery_report(sandbox, delivery, source_digest=digest)
        region = sandbox.publishing_region

        def repositories(account: str) -> list[str]:
            found = sandbox.aws("ecr", region, account=account).describe_repositories()["repositories"]
            return sorted(item["repositoryName"] for item in found)

        dev_buckets = sorted(b["Name"] for b in sandbox.aws("s3", account=DEV_ACCOUNT).list_buckets()["Buckets"])
        return TwoAccountRun(
            report=report,
            stack_repositories=repositories(STACK_ACCOUNT),
            dev_repositories=repositories(DEV_ACCOUNT),
            dev_buckets=dev_buckets,
            published_bucket_owner=owner_of(f"mlpublish-{STACK_ACCOUNT}-{region}"),
        )


def test_given_a_release_in_the_dev_account_then_its_push_there_makes_it_ready_for_listing(
    two_accounts: TwoAccountRun,
) -> None:
    report = two_accounts.report

    assert report["status"] == "SUCCEEDED", report["failure"]
    [ready] = [event for event in report["events"] if event["detail-type"] == "Release Ready For Listing"]
    assert ready["detail"]["trigger"]["kind"] == "ecr-push"  # forwarded from the dev account, not started by hand
    assert report["notices"] == []
    assert report["stack"]["parameters"]["SourceAccounts"] == DEV_ACCOUNT


def test_given_a_release_in_the_dev_account_then_everything_published_is_in_the_stacks_account(
    two_accounts: TwoAccountRun,
) -> None:
    report = two_accounts.report
    [container] = report["model_package"]["InferenceSpecification"]["Containers"]

    assert container["Image"].startswith(f"{STACK_ACCOUNT}.dkr.ecr.{report['publishing_region']}.amazonaws.com/")
    assert container["ModelDataUrl"].startswith(f"s3://mlpublish-{STACK_ACCOUNT}-")
    assert report["model_package_arn"].split(":")[4] == STACK_ACCOUNT
    assert all(item["uri"].startswith(f"s3://mlpublish-{STACK_ACCOUNT}-") for item in report["published_objects"])
    assert two_accounts.published_bucket_owner == STACK_ACCOUNT
    assert two_accounts.stack_repositories == [REPOSITORY]
    assert two_accounts.dev_repositories == []  # nothing published into the dev account's publishing region
    assert two_accounts.dev_buckets == ["acme-ml-artifacts"]  # its own source bucket only
    assert report["published_image_digest"] == report["source_image_digest"]


@pytest.fixture(scope="module")
def no_repository_policy(
    publish: Callable[..., CliRun], image: Callable[[str], WrittenLayout], release_file: Callable[..., Path]
) -> CliRun:
    return publish(
        "--release",
        release_file("dev-account", dev_release),
        "--image",
        image("docker-v2").path,
        "--source-account",
        DEV_ACCOUNT,
        "--no-source-policy",
        "repository",
    )


def test_given_a_dev_repository_whose_policy_does_not_grant_the_stack_then_the_release_fails_announced(
    no_repository_policy: CliRun,
) -> None:
    run = no_repository_policy
    failure = run.reported["failure"]
    [note] = run.reported["notifications"]

    assert run.exit_code == 1, run.stderr
    assert failure["stage"] == "ResolveRelease"
    assert "AccessDeniedException" in failure["reason"]
    assert f"on resource: {DEV_REPOSITORY_ARN}" in failure["reason"]
    assert "repository policy" in failure["reason"]
    assert failure["reason"] in note["message"]


def test_given_a_dev_repository_whose_policy_does_not_grant_the_stack_then_nothing_is_published(
    no_repository_policy: CliRun,
) -> None:
    assert no_repository_policy.reported["model_packages"] == []
    assert no_repository_policy.reported["blobs_copied"] == 0
    assert no_repository_policy.published.images == ()
    assert no_repository_policy.published.artifacts == ()


def test_given_a_source_account_for_a_release_whose_images_are_elsewhere_then_it_is_a_usage_error(
    publish: Callable[..., CliRun], image: Callable[[str], WrittenLayout], release_file: Callable[..., Path]
) -> None:
    run = publish("--release", release_file(), "--image", image("docker-v2").path, "--source-account", DEV_ACCOUNT)

    assert run.exit_code == 2
    assert f"the release's images are in account {STACK_ACCOUNT}" in run.stderr


def test_given_the_readme_then_its_dev_account_policies_are_the_ones_the_sandbox_writes() -> None:
    readme = (ROOT / "README.md").read_text()
    documents = [json.loads(block.split("```", 1)[0]) for block in readme.split("```json\n")[1:]]
    sandbox = Sandbox(None, RunOptions(source_account=DEV_ACCOUNT))

    assert sandbox.source_repository_policy() in documents
    assert sandbox.source_bucket_policy("acme-ml-artifacts") in documents

"""``python -m sandbox check``: what a seller runs before any deploy.

Checks a release on the seller's own files, with the pipeline's own judgement, and deploys
nothing (no stack, no AWS account):

1. the release file, parsed as ResolveRelease parses it (:func:`mlpublish.release.parse_release`);
2. preflight: :func:`mlpublish.resolve.resolve_release`, the function the ResolveRelease
   Lambda calls, run in this process against an in-memory moto that holds the local image
   layouts (pushed as ``docker push`` would, at the release's image URIs) and the model
   artifacts and validation input (at the release's S3 URIs): Marketplace rules, regions,
   image accounts, image config platform, the model artifact's first bytes, the image's OS
   read from its layers;
3. the local validation: the release's validation profile, as the TransformJobDefinition
   :func:`mlpublish.sagemaker.model_package_request` builds for CreateModelPackage, run as
   SageMaker's batch transform job on the image under runc
   (:func:`sandbox.validation_local.run_transform_job`), each request and its outcome shown.

Validation runs even when preflight finds something, so one round shows every problem; the
pipeline itself would stop at preflight.

Exit codes: 0 everything passed (validation ran, or ``--skip-validation`` was given); 1 the
release would fail (each finding printed with its fix), or validation could not run here
(runc missing, not root: "not run: <why>"); 2 bad usage (a missing file, an unreadable
image layout, a bad option), nothing was checked; 130 interrupted (Ctrl-C or SIGTERM; the
containers are removed on the way out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import boto3
import yaml

from mlpublish.errors import InvalidRelease, PipelineError
from mlpublish.release import ImageRef, ReleaseSpec, parse_release, parse_s3_uri
from mlpublish.settings import PublishingConfig
from sandbox import validation_local
from sandbox.cli import EXIT_FAILED, EXIT_OK, _open_images, _usage_error, check_place
from sandbox.ecr_registry import seller_uploads
from sandbox.oci import LayoutError, OciLayout, push_layout
from sandbox.runner import ROOT, SAMPLE_VALIDATION_INPUT, sample_model_data
from sandbox.stack import load_template, parse_parameter_overrides, read_samconfig

EXIT_INTERRUPTED = 130  # as a shell reports a process ended by SIGINT
OUTPUT_PREVIEW_LINES = 5
OUTPUT_PREVIEW_BYTES = 4096
STAGES = {
    "release": "release file",
    "preflight": "preflight (the pipeline's ResolveRelease would stop the release here)",
    "validation": "validation (SageMaker's transform job)",
}
_SCRUBBED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "MOTO_ACCOUNT_ID")


def add_parser(commands: Any) -> None:
    """The ``check`` subcommand, on the CLI's subparsers."""
    check = commands.add_parser(
        "check",
        help="check a release on local files before any deploy: release file, preflight, local validation",
        description="Check a release before any deploy, on your local image layout(s) and files: the release "
        "file, the pipeline's own preflight (ResolveRelease's rules, image platform and OS, model artifact "
        "format), then the validation profile run as SageMaker's batch transform job on the image under runc, "
        "with network isolation. Deploys nothing and needs no AWS account. Each finding is printed with its fix.",
        epilog="Exit codes: 0 all passed; 1 the release would fail (findings), or the validation could not run "
        "here (runc missing or not root: reported as 'not run: <why>'; without it nothing says the container "
        "works, so it is not a pass; give --skip-validation to check the rest only, which exits 0 when that "
        "passes and says the validation was skipped); 2 bad usage (missing file, unreadable image layout, bad "
        "option), nothing checked; 130 interrupted. Validation runs even when preflight finds something, so one "
        "round shows every problem (the pipeline itself would stop at preflight).",
    )
    check.add_argument("--release", type=Path, required=True, help="release file (YAML or JSON)")
    check.add_argument(
        "--image",
        action="append",
        required=True,
        metavar="[CONTAINER=]PATH",
        help="OCI image layout, a directory or a .tar (e.g. skopeo copy … oci:DIR); "
        "repeat as CONTAINER=PATH for a release with several containers",
    )
    check.add_argument(
        "--model-data",
        action="append",
        default=[],
        metavar="[CONTAINER=]FILE",
        help="the model artifact (model.tar.gz) a container's model_data names; repeat as CONTAINER=FILE "
        "for several (default: a tiny sample model.tar.gz)",
    )
    check.add_argument(
        "--validation-input", type=Path, help="the file validation.input names (default: a 3-line sample CSV)"
    )
    check.add_argument(
        "--deadline-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply SageMaker's deadlines (4 min for /ping, 600 s per invocation) by F, e.g. 0.02",
    )
    check.add_argument(
        "--skip-validation",
        action="store_true",
        help="do not run the container: check the release file and preflight only (exit 0 when they pass)",
    )
    stack = check.add_argument_group("the stack the release will be published by (its rules depend on it)")
    stack.add_argument(
        "--account-id",
        help="the account the stack is deployed in (default: the account of the release's first image)",
    )
    stack.add_argument(
        "--config-env", default="default", help="samconfig.toml environment to deploy (default: %(default)s)"
    )
    stack.add_argument(
        "--parameter-overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE ...",
        help="template parameters over the samconfig environment's, as for sam deploy "
        "(PublishingRegion, AllowedPublishingRegions, PublishingBucketName matter here)",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object instead of text")


# ----------------------------------------------------------------------------- the record


@dataclass
class Finding:
    """Something that would make the release fail, with what to do about it."""

    stage: str  # release | preflight | validation
    error: str
    message: str
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "error": self.error, "message": self.message, "reasons": self.reasons}


@dataclass
class CheckReport:
    release: str
    product: str | None = None
    account_id: str | None = None
    publishing_region: str | None = None
    findings: list[Finding] = field(default_factory=list)
    preflight: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        not_run = self.validation.get("mode") == "not run"
        return EXIT_FAILED if self.findings or not_run else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "product": self.product,
            "account_id": self.account_id,
            "publishing_region": self.publishing_region,
            "passed": self.exit_code == EXIT_OK,
            "findings": [finding.as_dict() for finding in self.findings],
            "preflight": self.preflight,
            "validation": self.validation,
            "seconds": round(self.seconds, 2),
        }


# ----------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    spec: ReleaseSpec
    document: dict[str, Any]
    layouts: dict[str, OciLayout]
    model_data: dict[str, tuple[bytes, str]]  # container -> (bytes, where they come from)
    validation_input: tuple[bytes, str]

    def close(self) -> None:
        for layout in self.layouts.values():
            layout.close()


def _model_data(values: list[str], spec: ReleaseSpec) -> dict[str, tuple[bytes, str]]:
    """Each container's model artifact: ``--model-data [CONTAINER=]FILE``, else the sample."""
    wanted = [container.name for container in spec.containers if container.model_data]
    given: dict[str, Path] = {}
    names = [container.name for container in spec.containers]
    for value in values:
        name, sep, path = value.partition("=")
        if sep and name not in names and not Path(value).exists():
            raise ValueError(f"--model-data {value}: {name} is not a container of the release ({', '.join(names)})")
        if not sep or name not in names:
            if len(values) != 1 or len(wanted) != 1:
                raise ValueError(
                    f"--model-data {value}: give one --model-data CONTAINER=FILE per container with model_data "
                    f"({', '.join(wanted) or 'none has'})"
                )
            name, path = wanted[0], value
        if name not in wanted:
            raise ValueError(f"--model-data {value}: container {name} has no model_data in the release")
        given[name] = Path(path)
    found = {}
    for name in wanted:
        file = given.get(name)
        if file is None:
            found[name] = (sample_model_data(), "a sample model.tar.gz (no --model-data given)")
        elif not file.is_file():
            raise ValueError(f"--model-data {file}: no such file")
        else:
            found[name] = (file.read_bytes(), str(file))
    return found


def _read_inputs(args: argparse.Namespace, report: CheckReport) -> Inputs | None:
    """The release, the layouts and the files; None when the release file is invalid (a finding).

    Raises ValueError, LayoutError or OSError for bad usage.
    """
    if not args.release.is_file():
        raise ValueError(f"--release {args.release}: no such file")
    if args.validation_input is not None and not args.validation_input.is_file():
        raise ValueError(f"--validation-input {args.validation_input}: no such file")
    if not 0 < args.deadline_scale <= 1:
        raise ValueError("--deadline-scale must be more than 0 and at most 1")
    text = args.release.read_bytes()
    try:
        spec = parse_release(text, source=str(args.release))
    except InvalidRelease as exc:
        for value in args.image:  # the images cannot be matched to containers, but must exist
            if not Path(value).exists() and not Path(value.partition("=")[2]).exists():
                raise ValueError(f"--image {value}: no such file or directory") from exc
        report.findings.append(_finding("release", exc))
        return None
    report.product = f"{spec.product.name} {spec.product.version}"
    if spec.source_algorithm is not None:
        raise ValueError(
            f"{args.release} builds a model package on {spec.source_algorithm.algorithm}, which check cannot "
            "reach: check the algorithm's own release (its images), then publish both with sandbox run "
            "--release ALGORITHM.yaml --then-package PACKAGE.yaml, or on AWS"
        )
    layouts = _open_images(args.image, [name for name, *_ in spec.images()])
    try:
        model_data = _model_data(args.model_data, spec)
        if args.validation_input is not None:
            validation_input = (args.validation_input.read_bytes(), str(args.validation_input))
        else:
            validation_input = (SAMPLE_VALIDATION_INPUT, "a 3-line sample CSV (no --validation-input given)")
    except BaseException:
        for layout in layouts.values():
            layout.close()
        raise
    return Inputs(spec, dict(yaml.safe_load(text)), layouts, model_data, validation_input)


def _publishing(args: argparse.Namespace) -> PublishingConfig:
    """What the stack allows: the template's defaults, the samconfig environment, the overrides."""
    overrides: dict[str, str] = {}
    for text in args.parameter_overrides:
        overrides.update(parse_parameter_overrides(text))
    parameters = {
        name: str(definition.get("Default", ""))
        for name, definition in load_template(ROOT / "template.yaml")["Parameters"].items()
    }
    parameters.update(read_samconfig(ROOT / "samconfig.toml", args.config_env, overrides).parameters)
    return PublishingConfig(
        default_region=parameters["PublishingRegion"],
        allowed_regions=tuple(
            region.strip() for region in parameters["AllowedPublishingRegions"].split(",") if region.strip()
        ),
        bucket_name=parameters.get("PublishingBucketName", ""),
    )


def _finding(stage: str, exc: PipelineError) -> Finding:
    return Finding(stage, type(exc).__name__, exc.message, list(exc.reasons))


# ----------------------------------------------------------------------------- preflight


class _LocalAws:
    """moto in this process, with the sandbox's ECR (blobs) and S3 extensions; nothing leaves it."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._credentials: dict[str, dict[str, str]] = {}

    @contextlib.contextmanager
    def running(self) -> Iterator[_LocalAws]:
        from moto import mock_aws

        from sandbox.clock import VirtualClock
        from sandbox.ext_ecr import EcrExtension
        from sandbox.ext_s3 import S3Extension

        saved = {key: os.environ.pop(key, None) for key in _SCRUBBED}
        try:
            with (
                warnings.catch_warnings(),
                mock_aws(),
                EcrExtension(VirtualClock(), emit_push_events=False),
                S3Extension(),
            ):
                warnings.simplefilter("ignore")
                yield self
        finally:
            for key, value in saved.items():
                if value is not None:
                    os.environ[key] = value

    def client(self, service: str, region: str, account: str) -> Any:
        """A client in ``account`` (moto tells the account from the credentials)."""
        if account not in self._credentials:
            from moto.sts.models import sts_backends

            role = sts_backends[account]["aws"].assume_role(
                region_name=self.region,
                role_session_name="check",
                role_arn=f"arn:aws:iam::{account}:role/sandbox-check",
                policy="",
                duration=3600,
                external_id="",
            )
            self._credentials[account] = {
                "aws_access_key_id": role.access_key_id,
                "aws_secret_access_key": role.secret_access_key,
                "aws_session_token": role.session_token,
            }
        return boto3.session.Session(**self._credentials[account]).client(service, region_name=region)

    def put(self, uri: str, body: bytes, account: str) -> None:
        bucket, key = parse_s3_uri(uri)
        s3 = self.client("s3", self.region, account)
        if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            create: dict[str, Any] = {"Bucket": bucket}
            if self.region != "us-east-1":
                create["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            s3.create_bucket(**create)
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def preflight(inputs: Inputs, report: CheckReport, account: str, publishing: PublishingConfig) -> None:
    """ResolveRelease on the local files: its findings go into the report."""
    from mlpublish.images.registry import EcrRegistry
    from mlpublish.resolve import resolve_release
    from mlpublish.state import StartInput

    spec = inputs.spec
    first = spec.containers[0].image_ref
    aws = _LocalAws(first.region)
    document = json.loads(json.dumps(inputs.document, default=str))
    started = time.monotonic()
    with aws.running():
        pushed: dict[str, str] = {}
        for name, field, _, ref in spec.images():
            ecr = aws.client("ecr", ref.region, ref.registry_id)
            uploads = seller_uploads(ecr, ref.region)
            digest = push_layout(inputs.layouts[name], ecr, ref.repository, ref.tag or "latest", uploads=uploads).digest
            pushed[name] = digest
            if ref.digest and ref.digest != digest:
                report.findings.append(_digest_mismatch(field, ref, digest, inputs.layouts[name]))
                if field == "training.image":
                    document["training"]["image"] = _with_digest(ref, digest)
                else:
                    document["containers"][int(field.split(".")[1])]["image"] = _with_digest(ref, digest)
        for container in spec.containers:
            if container.model_data:
                aws.put(container.model_data, inputs.model_data[container.name][0], account)
        aws.put(spec.validation.input, inputs.validation_input[0], account)
        for role, _, _, uri in spec.objects():
            if role == "training_input":  # an algorithm's channel data: the validation input stands in for it
                aws.put(uri, inputs.validation_input[0], account)
        try:
            release = resolve_release(
                StartInput(release=document),
                s3=aws.client("s3", aws.region, account),
                ecr_for=lambda region: aws.client("ecr", region, account),
                registry_for=lambda region: EcrRegistry(region, client=aws.client("ecr", region, account)),
                account_id=account,
                source_region=aws.region,
                publishing=publishing,
                validation_role_arn=_validation_role(account),
            )
        except PipelineError as exc:
            report.findings.append(_finding("preflight", exc))
            report.preflight = {"status": "failed", "error": type(exc).__name__, "images": pushed}
        else:
            report.preflight = {
                "status": "passed",
                "images": pushed,
                "os": {image.container: image.os for image in release.images},
                "resource_name": release.resource_name,
            }
    report.preflight["seconds"] = round(time.monotonic() - started, 2)


def _digest_mismatch(field: str, ref: ImageRef, digest: str, layout: OciLayout) -> Finding:
    return Finding(
        "release",
        "DigestMismatch",
        f"{field} pins {ref.digest}, but the image in {layout.path} is {digest}: the release "
        "would publish another image than the one checked here (the rest of the check uses the local image)",
        [f"{field}: pin the digest of the image you push ({ref.host}/{ref.repository}@{digest}), or name it by tag"],
    )


def _with_digest(ref: ImageRef, digest: str) -> str:
    return f"{ref.host}/{ref.repository}{':' + ref.tag if ref.tag else ''}@{digest}"


def _validation_role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/mlpublish-ValidationRole"


# ----------------------------------------------------------------------------- validation


class _Storage:
    """The transform job's S3: the release's URIs, holding the local files."""

    def __init__(self, objects: Mapping[str, bytes]) -> None:
        self.objects = dict(objects)
        self.written: dict[str, bytes] = {}

    def read(self, uri: str) -> bytes:
        if uri not in self.objects:
            raise KeyError(f"{uri}: no such object")
        return self.objects[uri]

    def list(self, uri_prefix: str) -> list[str]:
        # The pipeline copies the validation input alone under its own prefix.
        if uri_prefix in self.objects:
            return [uri_prefix]
        return sorted(uri for uri in self.objects if uri.startswith(uri_prefix))

    def write(self, uri: str, body: bytes) -> None:
        self.written[uri] = body


def transform_definition(spec: ReleaseSpec, account: str, images: Mapping[str, str]) -> dict[str, Any]:
    """The CreateModelPackage request the pipeline would send, its artifacts at the release's URIs."""
    from mlpublish.resolve import release_objects
    from mlpublish.sagemaker import model_package_request
    from mlpublish.state import PinnedImage, PinnedObject, PublishedImage, Release, Trigger

    objects = []
    for role, container, uri in release_objects(spec):
        bucket, key = parse_s3_uri(uri)
        objects.append(
            PinnedObject(
                role=role,
                container=container,
                source_bucket=bucket,
                source_key=key,
                etag="local",
                size=0,
                destination_bucket=bucket,
                destination_key=key,
            )
        )
    region = spec.publishing_region or spec.containers[0].image_ref.region
    release = Release(
        spec=spec,
        release_uri=None,
        trigger=Trigger(kind="manual", ref="sandbox check"),
        fingerprint="0" * 64,
        resource_name="sandbox-check",
        account_id=account,
        source_region=region,
        publishing_region=region,
        publishing_bucket="sandbox-check",
        validation_role_arn=_validation_role(account),
        validation_output_uri="s3://sandbox-check/validation-output/",
        images=[
            PinnedImage(
                container=c.name, source=c.image_ref, platform=c.platform, destination_repository=c.image_ref.repository
            )
            for c in spec.containers
        ],
        objects=objects,
    )
    published = [
        PublishedImage(
            container=c.name,
            repository=c.image_ref.repository,
            image_uri=images[c.name],
            digest=c.image_ref.digest or "sha256:" + "0" * 64,
            media_type="",
            source_digest="",
            selected_digest="",
            conversion="none",
            blobs_copied=0,
            blobs_skipped=0,
            bytes_copied=0,
        )
        for c in spec.containers
    ]
    return model_package_request(release, published)


def validate(inputs: Inputs, report: CheckReport, account: str, deadline_scale: float) -> None:
    """The validation profile, run on the local images as SageMaker runs it."""
    from sandbox.validation_local import ContainerUnderTest, Deadlines, LayoutImage, TransformJob

    spec = inputs.spec
    if spec.is_algorithm:
        report.validation = {
            "mode": "not run",
            "reason": "an algorithm is validated by a training job (its image's `train`, with the channels and "
            "hyperparameters mounted), then a transform job with the model it trained; check does not train: "
            "`sandbox run --release RELEASE --image IMAGE --validation real` runs both jobs on the published image",
        }
        return
    why = validation_local.unavailable()
    if why is not None:
        report.validation = {"mode": "not run", "reason": why}
        return
    names = {c.name: c.image for c in spec.containers}  # the layouts stand in for them
    request = transform_definition(spec, account, names)
    profile = request["ValidationSpecification"]["ValidationProfiles"][0]
    job = TransformJob(profile["ProfileName"], profile["TransformJobDefinition"])
    try:
        containers = []
        for container, definition in zip(spec.containers, request["InferenceSpecification"]["Containers"], strict=True):
            layout = inputs.layouts[container.name]
            descriptor = layout.platform_descriptor(layout.select(), container.platform)
            manifest = json.loads(layout.read_blob(descriptor.digest))
            containers.append(
                ContainerUnderTest(
                    name=container.name,
                    image_uri=names[container.name],
                    image=LayoutImage(manifest, layout.open_blob),
                    environment=dict(definition.get("Environment") or {}),
                    model_data_url=definition.get("ModelDataUrl"),
                )
            )
    except LayoutError as exc:
        report.validation = {"mode": "not run", "reason": f"the image cannot be run: {exc}"}
        return
    objects = {spec.validation.input: inputs.validation_input[0]}
    for container in spec.containers:
        if container.model_data:
            objects[container.model_data] = inputs.model_data[container.name][0]
    storage = _Storage(objects)
    try:
        result = validation_local.run_transform_job(job, containers, storage, Deadlines().scaled(deadline_scale))
    except validation_local.Unsupported as exc:
        report.validation = {"mode": "not run", "reason": f"this sandbox cannot run it: {exc}"}
        return
    outputs = {uri: _preview(body) for uri, body in storage.written.items()}
    report.validation = {"mode": "real", "reason": None, "result": result.as_dict(), "output_preview": outputs}
    if result.failure_reason is not None:
        report.findings.append(
            Finding(
                "validation",
                "ValidationFailed",
                f"validation profile {job.profile_name} failed: SageMaker would mark the model package's "
                "validation Failed (hours after submission) with this FailureReason",
                [result.failure_reason],
            )
        )


def _preview(body: bytes) -> str:
    text = body[:OUTPUT_PREVIEW_BYTES].decode("utf-8", "replace")
    return "\n".join(text.splitlines()[:OUTPUT_PREVIEW_LINES])


# ----------------------------------------------------------------------------- main


def main(args: argparse.Namespace) -> int:
    """Run ``check`` with parsed arguments; returns the exit code."""
    started = time.monotonic()
    report = CheckReport(release=str(args.release))
    try:
        publishing = _publishing(args)
        inputs = _read_inputs(args, report)
        if inputs is not None:
            account = args.account_id or inputs.spec.containers[0].image_ref.registry_id
            check_place(account, inputs.spec.containers[0].image_ref.region)
    except FileNotFoundError as exc:
        return _usage_error(f"{exc.filename or exc}: no such file; check the path")
    except (LayoutError, ValueError) as exc:  # StackConfigError is a ValueError
        return _usage_error(str(exc))
    except OSError as exc:
        return _usage_error(f"{exc.filename or ''}: {exc.strerror or exc}")
    if inputs is None:  # an invalid release file: nothing else can be checked
        report.validation = {"mode": "not run", "reason": "the release file is invalid"}
    else:
        try:
            with _terminated_as_interrupt():
                report.account_id = account
                report.publishing_region = inputs.spec.publishing_region or publishing.default_region
                preflight(inputs, report, account, publishing)
                if args.skip_validation:
                    report.validation = {"mode": "skipped", "reason": "--skip-validation"}
                else:
                    validate(inputs, report, account, args.deadline_scale)
        except LayoutError as exc:
            return _usage_error(str(exc))
        except KeyboardInterrupt:
            # The transform job removed its containers and bundles on the way out.
            print("error: interrupted; the check did not finish (no container is left running)", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            inputs.close()
    report.seconds = time.monotonic() - started
    if args.json:
        json.dump(report.as_dict(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        _print(report, inputs, args, sys.stdout)
    return report.exit_code


@contextlib.contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the check as Ctrl-C does, through every clean-up on the way out."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        saved = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved)


def _print(report: CheckReport, inputs: Inputs | None, args: argparse.Namespace, out: TextIO) -> None:
    def say(text: str) -> None:
        print(text, file=out)

    say(f"check {report.release}" + (f": {report.product}" if report.product else ""))
    if inputs is not None:
        for container in inputs.spec.containers:
            say(f"  container {container.name}: {inputs.layouts[container.name].path} as {container.image}")
            if container.model_data:
                say(f"    model_data {container.model_data} <- {inputs.model_data[container.name][1]}")
        say(f"  validation input {inputs.spec.validation.input} <- {inputs.validation_input[1]}")
        say(
            f"  stack: account {report.account_id}"
            + ("" if args.account_id else " (the images' account; --account-id to change)")
            + f", samconfig {args.config_env}; publishing region {report.publishing_region}"
        )
    release_findings = [f for f in report.findings if f.stage == "release"]
    say("")
    say(f"release file: {'FAILED' if release_findings else 'valid'}")
    if report.preflight:
        status = report.preflight["status"]
        found = ", ".join(
            f"{name}: {os_name or 'OS not known'}" for name, os_name in report.preflight.get("os", {}).items()
        )
        say(
            f"preflight (the pipeline's ResolveRelease): {status.upper() if status != 'passed' else 'passed'}"
            + (f" ({found})" if found else "")
        )
    validation = report.validation
    mode = validation.get("mode")
    if mode == "real":
        result = validation["result"]
        limits = result.get("limits") or {}
        say(
            f"validation (real: profile {result['profile']} as SageMaker's transform job, under runc, "
            f"network isolated; {limits.get('instance_type')} -> {limits.get('cpus')} CPU(s), "
            f"{(limits.get('memory_bytes') or 0) / 1024**3:.1f} GiB): "
            + ("passed" if result["status"] == "Completed" else "FAILED")
            + f" in {result['seconds']:.1f} s"
        )
        for record in result["requests"]:
            tries = f" ({record['tries']} tries)" if record["tries"] > 1 else ""
            outcome = f"{record['outcome']}{tries}, {record['seconds']:.2f} s"
            say(f"    {record['container']}: {record['request']} -> {outcome}")
        for uri, preview in validation.get("output_preview", {}).items():
            say(f"    output {uri}:")
            for line in preview.splitlines():
                say(f"      {line}")
    else:
        say(f"validation: {mode.upper() if mode else 'NOT RUN'}: {validation.get('reason')}")
    for finding in report.findings:
        say("")
        stage = STAGES.get(finding.stage, finding.stage)
        say(f"✗ {stage}: {finding.message}")
        for reason in finding.reasons:
            say(f"    - {reason}")
    say("")
    if report.exit_code == EXIT_OK and mode == "skipped":
        say(
            f"PASSED in {report.seconds:.1f} s: the release file and preflight hold; the validation was skipped "
            "(--skip-validation), so nothing here says the container serves"
        )
    elif report.exit_code == EXIT_OK:
        say(f"PASSED in {report.seconds:.1f} s: the release file, preflight and validation hold")
    elif report.findings:
        say(
            f"FAILED in {report.seconds:.1f} s: {len(report.findings)} finding(s); the release would fail. "
            "Fix them and run check again."
        )
    else:
        say(
            f"NOT PASSED in {report.seconds:.1f} s: no findings, but the validation did not run here "
            f"({validation.get('reason')}); run check where runc can run, or give --skip-validation"
        )

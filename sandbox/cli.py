"""``python -m sandbox run``: publish a release on the embedded local AWS.

Exit codes: 0 the release is ready for listing, 1 the pipeline failed (and announced why),
2 bad usage, an invalid release file or an unreadable image (nothing was run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import boto3

from mlpublish.errors import InvalidRelease
from sandbox.api_faults import KINDS as API_FAULT_KINDS
from sandbox.api_faults import ApiFault
from sandbox.ext_catalog import parse_catalog_product
from sandbox.ext_ecr import FAULT_CORRUPT_BLOB
from sandbox.ext_lambda import Fault
from sandbox.lambda_env import LambdaEnvironmentError
from sandbox.oci import LayoutError, OciLayout, open_layout
from sandbox.report import delivery_report
from sandbox.runner import DEFAULT_ACCOUNT, DEFAULT_REGION, NothingStarted, RunOptions, Sandbox, load_release
from sandbox.stack import StackConfigError, parse_parameter_overrides

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ACCOUNT_PATTERN = re.compile(r"\d{12}")
REGION_PATTERN = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one release end to end on the embedded local AWS")
    run.add_argument("--release", type=Path, required=True, help="release file (YAML or JSON)")
    run.add_argument(
        "--image",
        action="append",
        required=True,
        metavar="[CONTAINER=]PATH",
        help="OCI image layout, a directory or a .tar (e.g. skopeo copy … oci:DIR); "
        "repeat as CONTAINER=PATH for a release with several containers",
    )
    run.add_argument("--trigger", choices=["ecr-push", "s3-upload", "manual"], default="ecr-push")
    run.add_argument(
        "--validation",
        choices=["real", "completed", "failed"],
        default="real",
        help="real (default): SageMaker's validation jobs (a transform job; an algorithm's training job first) "
        "run on the published images with runc (root and `make deb` needed; elsewhere completed, with a notice); "
        "completed / failed: as told",
    )
    run.add_argument(
        "--deadline-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply SageMaker's deadlines (4 min for /ping, 600 s per invocation) by F, e.g. 0.01 in tests",
    )
    run.add_argument(
        "--validation-minutes", type=float, default=45.0, help="virtual minutes SageMaker validation takes"
    )
    run.add_argument("--repeat", action="store_true", help="deliver the same trigger again after the release ends")
    run.add_argument(
        "--then-package",
        type=Path,
        metavar="FILE",
        help="after the release (an algorithm) is ready, publish FILE, a model package built on it "
        "(its source_algorithm.algorithm is set to the algorithm just published)",
    )
    run.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="FAULT",
        help=f"inject a fault: {FAULT_CORRUPT_BLOB} (the source registry serves a corrupt blob), "
        "crash:FUNCTION[:after=N] (an execution environment dies after N AWS calls), "
        "timeout:FUNCTION (one invocation overruns its Timeout); FUNCTION e.g. CopyBlob; "
        "throttle|5xx|lost:SERVICE:OPERATION[:times=N] (AWS throttles, fails, or loses the answer of the next "
        "N calls the stack makes, e.g. lost:sagemaker:CreateModelPackage); repeatable",
    )
    stack = add_stack_arguments(run)
    stack.add_argument(
        "--source-account",
        metavar="ACCOUNT",
        help="the seller's development account holding the release's images (their URIs name it) and objects: "
        "the sandbox creates them there with a repository and a bucket policy letting the stack's account read, "
        "deploys templates/source-account.yaml there, and the stack with SourceAccounts=ACCOUNT and (unless given) "
        "SourceRepositories=arn:aws:ecr:REGION:ACCOUNT:repository/*",
    )
    stack.add_argument(
        "--no-source-policy",
        action="append",
        choices=["repository", "bucket"],
        default=[],
        help="with --source-account: write no repository (or bucket) policy there, to see the release fail as it "
        "would on AWS; repeatable",
    )
    stack.add_argument(
        "--lambda-concurrency",
        type=int,
        metavar="N",
        help="at most N Lambda invocations at once (default: as many as Map and Parallel start)",
    )
    stack.add_argument(
        "--lambda-timeout",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="set a function's Timeout over the template's, e.g. CopyBlob=20 (a large blob's or artifact's copy then "
        "spans more invocations); repeatable",
    )
    run.add_argument(
        "--bandwidth-mib-s",
        type=float,
        metavar="N",
        help="ECR blob transfers (downloads, registry pushes) and S3 copies (CopyObject, UploadPartCopy) move at "
        "most N MiB/s each, in real time (default: at once)",
    )
    run.add_argument("--model-data", type=Path, help="model.tar.gz to upload (default: a tiny sample)")
    run.add_argument("--validation-input", type=Path, help="validation input to upload (default: sample CSV)")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of progress")
    add_catalog_arguments(run)
    add_log_arguments(run)
    from sandbox import check, serve, status  # serve.py and check.py import this module

    serve.add_parser(commands)
    check.add_parser(commands)
    status.add_parser(commands)
    return parser


def add_stack_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """--region, --account-id, --config-env, --parameter-overrides: the stack as a seller deploys it."""
    stack = parser.add_argument_group("the stack, deployed as a seller deploys it")
    stack.add_argument("--region", default=DEFAULT_REGION, help="the stack's region (default: %(default)s)")
    stack.add_argument("--account-id", default=DEFAULT_ACCOUNT, help="the seller's AWS account (default: %(default)s)")
    stack.add_argument(
        "--config-env", default="default", help="samconfig.toml environment to deploy (default: %(default)s)"
    )
    stack.add_argument(
        "--parameter-overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE ...",
        help="template parameters over the samconfig environment's, as for sam deploy",
    )
    return stack


def add_catalog_arguments(parser: argparse.ArgumentParser) -> None:
    """--catalog-product, --catalog-minutes: the Marketplace Catalog API's seeded products."""
    catalog = parser.add_argument_group("the Marketplace Catalog API (us-east-1)")
    catalog.add_argument(
        "--catalog-product",
        action="append",
        default=[],
        metavar="ID[=TYPE,TYPE...]",
        help="seed a MachineLearningProduct with this id in the seller's account, its public offer pricing these "
        "instance types for batch transform and real-time inference, or these dimension keys (e.g. "
        "prod-abc123=ml.m5.large,ml.m5.xlarge.a.t); repeatable",
    )
    catalog.add_argument(
        "--catalog-minutes", type=float, default=10.0, help="virtual minutes a change set takes (default: %(default)s)"
    )
    parser.add_argument(
        "--service-events",
        choices=["delivered", "lost"],
        default="delivered",
        help="AWS's state-change events for validation and change sets: delivered (as on AWS) or lost (every wait "
        "then ends at its 30-minute fallback look) (default: %(default)s)",
    )


def catalog_options(args: argparse.Namespace) -> dict[str, Any]:
    """RunOptions' catalog fields from parsed arguments; raises ValueError for a bad value."""
    if args.catalog_minutes < 0:
        raise ValueError("--catalog-minutes must be zero or more")
    return {
        "catalog_products": dict(parse_catalog_product(text) for text in args.catalog_product),
        "catalog_minutes": args.catalog_minutes,
        "service_events": args.service_events,
    }


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-file",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mlpublish-sandbox.log",
        help="where the Lambdas' logs go (default: %(default)s)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="the sandbox's own logs on stderr (the Lambdas' stay in --log-file)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        from sandbox import serve

        return serve.main(args)
    if args.command == "check":
        from sandbox import check

        return check.main(args)
    if args.command == "status":
        from sandbox import status

        return status.main(args)
    out = sys.stdout
    try:
        _check_files(args)
        spec = load_release(args.release)
        package = _package_after(args.then_package, spec)
        layouts = _open_images(args.image, [name for name, *_ in spec.images()])
    except FileNotFoundError as exc:
        return _usage_error(f"{exc.filename or exc}: no such file; check the path")
    except (InvalidRelease, LayoutError, ValueError) as exc:
        return _usage_error(str(exc))
    except OSError as exc:
        return _usage_error(f"{exc.filename or ''}: {exc.strerror or exc}")
    if args.validation_minutes < 0:
        return _usage_error("--validation-minutes must be zero or more")
    if not 0 < args.deadline_scale <= 1:
        return _usage_error("--deadline-scale must be more than 0 and at most 1")
    try:
        registry_faults = [fault for fault in args.fault if fault == FAULT_CORRUPT_BLOB]
        api_faults = [ApiFault.parse(fault) for fault in args.fault if fault.partition(":")[0] in API_FAULT_KINDS]
        lambda_faults = [
            Fault.parse(fault)
            for fault in args.fault
            if fault != FAULT_CORRUPT_BLOB and fault.partition(":")[0] not in API_FAULT_KINDS
        ]
        overrides: dict[str, str] = {}
        for text in args.parameter_overrides:
            overrides.update(parse_parameter_overrides(text))
        _check_stack_options(args)
        _check_source_account(args.source_account, spec)
        catalog = catalog_options(args)
        timeouts = dict(parse_lambda_timeout(text) for text in args.lambda_timeout)
        if args.bandwidth_mib_s is not None and args.bandwidth_mib_s <= 0:
            raise ValueError("--bandwidth-mib-s must be more than 0")
    except ValueError as exc:
        return _usage_error(str(exc))
    options = RunOptions(
        release=args.release,
        trigger=args.trigger,
        validation=args.validation,
        validation_minutes=args.validation_minutes,
        deadline_scale=args.deadline_scale,
        repeat=args.repeat,
        fault=registry_faults[0] if registry_faults else None,
        model_data=args.model_data,
        validation_input=args.validation_input,
        region=args.region,
        account_id=args.account_id,
        config_env=args.config_env,
        parameter_overrides=overrides,
        source_account=args.source_account,
        source_policies=tuple(kind for kind in ("repository", "bucket") if kind not in args.no_source_policy),
        lambda_concurrency=args.lambda_concurrency,
        lambda_timeouts=timeouts,
        lambda_faults=lambda_faults,
        api_faults=api_faults,
        log_file=args.log_file,
        bandwidth_mib_s=args.bandwidth_mib_s,
        **catalog,
    )
    progress = _Progress(enabled=not args.json)
    try:
        progress.say(f"Lambda logs: {args.log_file}")
        with _quiet(None if args.verbose else args.log_file):
            report = run(spec, options, layouts, progress, package)
    except LayoutError as exc:
        return _usage_error(f"{exc}; nothing was published")
    except (StackConfigError, LambdaEnvironmentError) as exc:
        return _usage_error(str(exc))
    except NothingStarted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # a sandbox defect: say so plainly, with where to look
        print(
            f"error: the sandbox failed ({type(exc).__name__}: {exc}); this is a sandbox bug, "
            f"please report it with the log {args.log_file}",
            file=sys.stderr,
        )
        logging.getLogger("sandbox").debug("sandbox failure", exc_info=True)
        return EXIT_FAILED
    # With --repeat, the release's state is what the last delivery left (a deduplicated
    # delivery left it as the first one did).
    repeat = report.get("repeat")
    final = repeat if repeat is not None and not repeat["deduplicated"] else report
    if args.json:
        json.dump(report, out, indent=2, default=str)
        out.write("\n")
    else:
        progress.summary(final)
    return EXIT_OK if final["status"] == "SUCCEEDED" else EXIT_FAILED


def check_place(account_id: str, region: str) -> None:
    """The account and region a stack is deployed in are real ones."""
    if not ACCOUNT_PATTERN.fullmatch(account_id):
        raise ValueError(f"--account-id {account_id}: an AWS account id is 12 digits")
    regions = boto3.session.Session().get_available_regions("cloudformation")
    if not REGION_PATTERN.fullmatch(region) or region not in regions:
        raise ValueError(f"--region {region}: not an AWS region; use one of {', '.join(regions)}")


def parse_lambda_timeout(text: str) -> tuple[str, int]:
    """``NAME=SECONDS`` (1 to 900, Lambda's range) -> (NAME, SECONDS)."""
    name, _, seconds = text.partition("=")
    if not name or not seconds.isdigit() or not 1 <= int(seconds) <= 900:
        raise ValueError(f"--lambda-timeout {text}: use NAME=SECONDS with 1 to 900 seconds, e.g. CopyBlob=20")
    return name, int(seconds)


def check_log_file(path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"--log-file {path}: is a directory; name a file")
    if not path.parent.is_dir():
        raise ValueError(f"--log-file {path}: directory {path.parent} does not exist")


def _check_stack_options(args: argparse.Namespace) -> None:
    check_place(args.account_id, args.region)
    if args.lambda_concurrency is not None and args.lambda_concurrency < 1:
        raise ValueError("--lambda-concurrency must be 1 or more")
    if args.source_account is not None:
        if not ACCOUNT_PATTERN.fullmatch(args.source_account):
            raise ValueError(f"--source-account {args.source_account}: an account id is 12 digits")
        if args.source_account == args.account_id:
            raise ValueError("--source-account must be another account than the stack's (--account-id)")
    elif args.no_source_policy:
        raise ValueError("--no-source-policy needs --source-account")


def _check_source_account(account: str | None, spec: Any) -> None:
    """With --source-account, the release's images are in that account, as their URIs say."""
    if account is None:
        return
    elsewhere = sorted({c.image_ref.registry_id for c in spec.containers} - {account})
    if elsewhere:
        raise ValueError(
            f"--source-account {account}: the release's images are in account {', '.join(elsewhere)}; name "
            f"{account} in their URIs ({account}.dkr.ecr.REGION.amazonaws.com/REPO:TAG)"
        )


def _package_after(path: Path | None, spec: Any) -> tuple[Any, bytes] | None:
    """The --then-package release: a model package built from an algorithm, after an algorithm."""
    if path is None:
        return None
    if not spec.is_algorithm:
        raise ValueError(f"--then-package {path}: the release ({spec.product.name}) is not an algorithm to build on")
    text = path.read_bytes()
    package = load_release(path)
    if package.source_algorithm is None:
        raise ValueError(f"--then-package {path}: it has no source_algorithm; it is not built on an algorithm")
    return package, text


def _check_files(args: argparse.Namespace) -> None:
    """Every path the run reads or writes is usable, before anything is deployed."""
    for option, path in (
        ("--release", args.release),
        ("--model-data", args.model_data),
        ("--validation-input", args.validation_input),
        ("--then-package", args.then_package),
    ):
        if path is not None and not path.is_file():
            raise ValueError(f"{option} {path}: no such file")
    check_log_file(args.log_file)


def _open_images(values: list[str], containers: list[str]) -> dict[str, OciLayout]:
    """``PATH`` (a one-image release) or ``NAME=PATH`` for each image: each container's, and an
    algorithm's separate training image (``training``)."""
    paths: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if sep and name not in containers and not Path(value).exists():
            raise ValueError(f"--image {value}: {name} is not an image of the release ({', '.join(containers)})")
        if not sep or name not in containers:
            if len(values) != 1 or len(containers) != 1:
                raise ValueError(
                    f"--image {value}: give one --image CONTAINER=PATH per container ({', '.join(containers)})"
                )
            name, path = containers[0], value
        paths[name] = path
    missing = [name for name in containers if name not in paths]
    if missing:
        raise ValueError(f"no --image for container(s) {', '.join(missing)}; add --image NAME=PATH for each")
    layouts = {}
    for name, path in paths.items():
        layout = open_layout(path)
        layout.load(layout.select())  # structure and blob presence; digests are checked on push
        layouts[name] = layout
    return layouts


def run(
    spec: Any,
    options: RunOptions,
    layouts: dict[str, OciLayout],
    progress: _Progress,
    package: tuple[Any, bytes] | None = None,
) -> dict[str, Any]:
    """Run the release; with ``package`` (its spec and release file), then a model package built
    on the algorithm the release published."""
    sandbox = Sandbox(spec, options)
    with sandbox.running():
        assert sandbox.stack is not None
        stack = sandbox.stack
        progress.say(
            f"deployed template.yaml as stack {stack.name} (samconfig {options.config_env}) in account "
            f"{stack.account_id}, region {stack.region}; releases publish to {sandbox.publishing_region}"
        )
        progress.say("parameters: " + " ".join(f"{key}={value}" for key, value in sorted(stack.parameters.items())))
        sandbox.check_faults()
        unwatched = sandbox.unwatched_upload()
        if unwatched:
            raise StackConfigError(unwatched)
        for notice in sandbox.notices():
            progress.say(f"note: {notice}")
        progress.say(f"trigger: {sandbox.effective_trigger()}")
        digest, delivery = sandbox.seed_and_trigger(layouts)
        report = delivery_report(sandbox, delivery, source_digest=digest)
        progress.delivery("release", report)
        if package is not None:
            arn = report["model_package_arn"]
            if report["status"] != "SUCCEEDED" or not arn or ":algorithm/" not in str(arn):
                raise StackConfigError("--then-package: the release published no algorithm to build the package on")
            progress.say(f"then: {package[0].product.name} {package[0].product.version} built on {arn}")
            then = delivery_report(sandbox, sandbox.publish_package_on(arn, *package), source_digest="")
            progress.delivery("package", then)
            report["package"] = then
        if options.repeat:
            sandbox.ecr.clear_faults()
            repeat = delivery_report(sandbox, sandbox.redeliver(), source_digest=digest)
            progress.delivery("repeat", repeat)
            report["repeat"] = repeat
            report["model_packages"] = repeat["model_packages"]  # what the region holds at the end
            report["algorithms"] = repeat["algorithms"]
    return report


class _Progress:
    def __init__(self, *, enabled: bool) -> None:
        # Bound now: while the run goes on, sys.stdout is redirected to the log.
        self.enabled, self.stream = enabled, sys.stdout

    def say(self, text: str) -> None:
        if self.enabled:
            print(f"• {text}", file=self.stream, flush=True)

    def delivery(self, label: str, report: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if report.get("deduplicated"):
            self.say(
                f"{label}: no new execution: the trigger recognised content it has published already "
                f"({report['execution_arn']}, {report['status']})"
            )
            return
        validation = report.get("validation") or {}
        for job in validation.get("jobs", []):
            self.say(
                f"validation ({validation['mode']}, runc): profile {job['profile']}, {job['job']} job {job['status']}"
            )
            for request in job["requests"]:
                tries = f" ({request['tries']} tries)" if request["tries"] > 1 else ""
                print(
                    f"    {request['container']}: {request['request']} → {request['outcome']}{tries}, "
                    f"{request['seconds']:.2f} s",
                    file=self.stream,
                )
        self.say(
            f"{label}: {report['status']} after {report['state_transitions']} state transitions, "
            f"{report['virtual_seconds'] / 60:.1f} virtual minutes; blobs copied {report['blobs_copied']}, "
            f"skipped {report['blobs_skipped']} ({report['bytes_copied']} bytes)"
        )
        for note in report["notifications"]:
            print(f"\n  ── SNS: {note['subject']}", file=self.stream)
            for line in str(note["message"]).splitlines():
                print(f"  │ {line}", file=self.stream)
        print(file=self.stream)

    def summary(self, report: dict[str, Any]) -> None:
        if report["algorithms"]:
            self.say(f"algorithms in {report['publishing_region']}: {len(report['algorithms'])}")
        else:
            self.say(f"model packages in {report['publishing_region']}: {len(report['model_packages'])}")
        if report["status"] == "SUCCEEDED":
            self.say(f"ready for listing: {report['model_package_arn']}")
        else:
            self.say(f"failed: {json.dumps(report['failure'])}")


@contextlib.contextmanager
def _quiet(log_file: Path | None) -> Iterator[None]:
    """moto's and the sandbox's chatter go to the log file (or stderr with --verbose); the Lambda
    workers write their own logs to the log file.

    stdout carries only progress or the JSON report.
    """
    if log_file is not None:
        log_file.write_text("")  # a fresh log; appended to, as the workers append to it too
    stream: TextIO = sys.stderr if log_file is None else log_file.open("a")
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    saved = root.handlers[:], root.level
    root.handlers, root.level = [handler], logging.WARNING
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(stream):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.handlers, root.level = saved
        if stream is not sys.stderr:
            stream.close()


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE

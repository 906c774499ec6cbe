"""Run a release end to end in the sandbox: deploy, seed, trigger, wait, report.

The order of what a seller does decides which event starts the release; the runner plays
the seller so that the chosen trigger is the one that fires:

* ``ecr-push``:  artifacts and the release file are in S3 first (the trigger waits for the
  image), then the image push starts the release.
* ``s3-upload``: image, validation input and release file first (the trigger waits for the
  model artifact), then the model artifact upload starts it.
* ``manual``:    everything is in place (the release file outside the watched prefix), then
  ``StartExecution`` is called the way ``aws stepfunctions start-execution`` would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import json
import os
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
import yaml
from boto3.s3.transfer import TransferConfig

from mlpublish.release import ReleaseSpec, parse_release, parse_s3_uri
from sandbox import validation_local
from sandbox.api_faults import ApiFault, ApiFaults
from sandbox.audit import ApiAudit
from sandbox.clock import VirtualClock
from sandbox.ecr_registry import seller_uploads
from sandbox.ext_accounts import CrossAccountAccess
from sandbox.ext_catalog import CatalogExtension, ChangeSetOutcome
from sandbox.ext_ecr import EcrExtension, ScanOutcome
from sandbox.ext_events import WholeEventTargets
from sandbox.ext_lambda import Fault, LambdaWorkers
from sandbox.ext_s3 import S3Extension
from sandbox.ext_sagemaker import EVERY, SageMakerValidation, ValidationOutcome
from sandbox.ext_sqs import EventSourcePoller
from sandbox.ext_stepfunctions import ParsedDefinitions, StateMachineCredentials, TaskFailureCause
from sandbox.lambda_env import ensure_environment
from sandbox.oci import OciLayout, push_layout
from sandbox.server import EmulatorServer
from sandbox.stack import DeployedStack, StackConfigError, deploy, load_template, read_samconfig
from sandbox.validate_published import PublishedValidator

_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

Trigger = Literal["ecr-push", "s3-upload", "manual"]
Layouts = OciLayout | Mapping[str, OciLayout]
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REGION = "us-west-2"
DEFAULT_ACCOUNT = "123456789012"
VALIDATION_FAILURE = (
    "ClientError: Transform job validation failed: the container returned HTTP 500 for "
    "POST /invocations on 3 of 3 records (see /aws/sagemaker/TransformJobs)"
)
# An algorithm's profile trains first: a training container that exits with 1 and writes no
# /opt/ml/output/failure is reported by SageMaker as "AlgorithmError: , exit code: 1".
ALGORITHM_VALIDATION_FAILURE = (
    "Training job validation failed: AlgorithmError: , exit code: 1 (see /aws/sagemaker/TrainingJobs)"
)
_SELLER_UPLOAD = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=16 * 1024 * 1024)
IMAGE_SCAN_FAILURE = "Image scan found 1 HIGH vulnerability in the inference image"


@dataclass
class RunOptions:
    release: Path | None = None  # None for a sandbox that only serves (sandbox serve)
    trigger: Trigger = "ecr-push"
    # real: the profile's jobs (its transform job; an algorithm's training job first) run on the
    # published images with runc (where runc can run; elsewhere completed, with a notice);
    # completed / failed: the outcome, as told.
    validation: Literal["real", "completed", "failed"] = "real"
    validation_minutes: float = 45.0
    deadline_scale: float = 1.0  # SageMaker's deadlines (ping, invocations) times this
    repeat: bool = False
    fault: str | None = None  # a fault of the source registry (corrupt-blob)
    model_data: Path | None = None
    validation_input: Path | None = None
    scan: ScanOutcome = field(default_factory=ScanOutcome)
    # The stack, as a seller deploys it: their region and account, a samconfig environment.
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT
    config_env: str = "default"
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    # The seller's development account, where the release's images and objects are (None: the
    # stack's account), and the policies the seller wrote there letting the stack's roles read.
    source_account: str | None = None
    source_policies: tuple[str, ...] = ("repository", "bucket")
    # The Lambda service.
    lambda_concurrency: int | None = None
    # Timeout (seconds) per function short name (CopyBlob, CopyArtifactParts), over the template's: as a
    # seller would set it on the deployed function (UpdateFunctionConfiguration).
    lambda_timeouts: dict[str, int] = field(default_factory=dict)
    lambda_faults: list[Fault] = field(default_factory=list)
    api_faults: list[ApiFault] = field(default_factory=list)
    log_file: Path | None = None
    # ECR's blob transfers and S3's copies, per request, in MiB/s; None: at once.
    bandwidth_mib_s: float | None = None
    # Marketplace Catalog API: MachineLearningProduct ids seeded in the stack's account, each
    # with the instance types it has prices for; the virtual minutes a change set takes.
    catalog_products: dict[str, tuple[str, ...]] = field(default_factory=dict)
    catalog_minutes: float = 10.0
    # SageMaker's and the Catalog's state-change events: delivered, or lost (the waits' fallback).
    service_events: Literal["delivered", "lost"] = "delivered"


class NothingStarted(RuntimeError):
    """A delivery started no execution (the trigger waits, or refused it); the message says why."""


@dataclass
class Delivery:
    """What one trigger delivery led to."""

    execution_arn: str
    status: str
    clock_before: float
    clock_after: float
    deduplicated: bool = False


def sample_model_data() -> bytes:
    """A tiny model.tar.gz for releases run without --model-data."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as archive:
        payload = json.dumps({"weights": [0.25, -0.5, 1.0], "bias": 0.1}).encode()
        info = tarfile.TarInfo("model.json")
        info.size, info.mtime = len(payload), 0
        archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()  # byte-identical on every run, like a real artifact re-uploaded


SAMPLE_VALIDATION_INPUT = b"0.1,0.2,0.3\n0.4,0.5,0.6\n0.7,0.8,0.9\n"


class Sandbox:
    """The local AWS: moto plus the sandbox's extensions, with the stack deployed."""

    def __init__(self, spec: ReleaseSpec | None, options: RunOptions, *, port: int = 0) -> None:
        """``spec`` None: a sandbox with no release of its own (``sandbox serve``)."""
        self._spec, self.options = spec, options
        self.account_id = options.account_id
        self.source_region = options.region
        self.deploy_config = read_samconfig(ROOT / "samconfig.toml", options.config_env, options.parameter_overrides)
        if options.source_account:
            # As a seller deploys a stack publishing from a development account: its pushes and
            # uploads forwarded (SourceAccounts), its repositories allowed (unless said otherwise).
            parameters = self.deploy_config.parameters
            parameters.setdefault("SourceAccounts", options.source_account)
            parameters.setdefault(
                "SourceRepositories", f"arn:aws:ecr:{options.region}:{options.source_account}:repository/*"
            )
        self.cross_account = CrossAccountAccess()
        self.clock = VirtualClock()
        self.audit = ApiAudit()
        self.server = EmulatorServer(port)
        # Faults of AWS hit the stack's calls only (a principal the audit knows), not the seller's.
        self.api_faults = ApiFaults(options.api_faults, is_ours=lambda key: self.audit.principal(key) is not None)
        self.lambda_log = options.log_file or Path(tempfile.gettempdir()) / "mlpublish-sandbox.log"
        self.lambdas: LambdaWorkers | None = None
        self.ecr = EcrExtension(
            self.clock,
            scan_outcome=options.scan,
            fault=options.fault,
            observers=self.server.observers,
            bandwidth_mib_s=options.bandwidth_mib_s,
        )
        failures = {EVERY: VALIDATION_FAILURE} if options.validation == "failed" else {}
        algorithm_failures = {EVERY: ALGORITHM_VALIDATION_FAILURE} if options.validation == "failed" else {}
        scan_failures = {EVERY: IMAGE_SCAN_FAILURE} if options.validation == "failed" else {}
        self.validation_not_run = validation_local.unavailable() if options.validation == "real" else None
        self.validation_mode = "completed" if self.validation_not_run else options.validation
        stopping = threading.Event()
        local = (
            PublishedValidator(self.ecr, validation_local.Deadlines().scaled(options.deadline_scale), stopping)
            if self.validation_mode == "real"
            else None
        )
        self.sagemaker = SageMakerValidation(
            self.clock,
            ValidationOutcome(
                pending_seconds=60.0,
                in_progress_seconds=max(options.validation_minutes * 60.0 - 60.0, 0.0),
                validation_failures=failures,
                image_scan_failures=scan_failures,
                algorithm_validation_failures=algorithm_failures,
            ),
            local=local,
            stopping=stopping,
            emit_events=options.service_events == "delivered",
        )
        self.catalog = CatalogExtension(
            self.clock,
            ChangeSetOutcome(minutes=options.catalog_minutes),
            sagemaker=self.sagemaker,
            emit_events=options.service_events == "delivered",
        )
        self.events = WholeEventTargets()
        self.poller = EventSourcePoller()
        self.stack: DeployedStack | None = None
        self._capture: dict[str, str] = {}
        self._credentials: dict[str, dict[str, str]] = {}

    @property
    def spec(self) -> ReleaseSpec:
        """The release this sandbox runs."""
        if self._spec is None:
            raise RuntimeError("this sandbox was started without a release")
        return self._spec

    def use_release(self, path: Path) -> ReleaseSpec:
        """Run the release in ``path`` next, in this same sandbox (as a seller publishes one product
        after another into one stack): what earlier releases published stays."""
        self._spec = load_release(path)
        self.options = dataclasses.replace(self.options, release=path)
        return self._spec

    @property
    def publishing_region(self) -> str:
        """The release's region, else the stack's PublishingRegion parameter."""
        if self._spec is not None and self._spec.publishing_region:
            return self._spec.publishing_region
        return (
            self.stack.parameters["PublishingRegion"]
            if self.stack
            else self.deploy_config.parameters.get("PublishingRegion", "us-east-1")
        )

    # --------------------------------------------------------------- lifecycle
    @contextlib.contextmanager
    def running(self) -> Iterator[Sandbox]:
        """Deploy the stack and keep the sandbox up for the duration of the block."""
        from moto import mock_aws

        lambda_environment = ensure_environment()
        env = {
            "AWS_DEFAULT_REGION": self.source_region,
            "AWS_REGION": self.source_region,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "mlpublish",
        }
        # Accounts come from each request's credentials, never from the process environment.
        scrubbed = ["MOTO_ACCOUNT_ID", "AWS_ENDPOINT_URL", "AWS_PROFILE"]
        saved = {key: os.environ.get(key) for key in [*env, *scrubbed, *_CREDENTIAL_VARIABLES]}
        for key in scrubbed:
            os.environ.pop(key, None)
        os.environ.update(env)
        from mlpublish.aws import forget_clients

        forget_clients()  # a Session and clients bound to an earlier sandbox's credentials
        try:
            with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), contextlib.ExitStack() as stack:
                os.environ.update(self.credentials(self.account_id))
                self.server.observers[:] = [self.audit.record]
                self.server.meters[:] = [self.audit.meter]
                self.server.start()
                stack.callback(self.server.stop)
                self.lambdas = LambdaWorkers(
                    lambda_environment,
                    endpoint=lambda: self.server.endpoint,
                    audit=self.audit,
                    log_path=self.lambda_log,
                    concurrency=self.options.lambda_concurrency,
                    faults=self.options.lambda_faults,
                )
                self.server.observers += [self.lambdas.observe, self.api_faults.observe]
                # A task-token wait lets virtual time jump only while nothing else works.
                workers = self.lambdas
                self.clock.busy[:] = [
                    lambda: workers.in_flight > 0,
                    self.poller.busy,
                    lambda: any(not run.done.is_set() for run in list(self.sagemaker.local_runs.values())),
                ]
                for extension in (
                    self.clock,
                    self.lambdas,
                    self.poller,
                    self.ecr,
                    self.sagemaker,
                    self.catalog,
                    self.events,
                    S3Extension(self.options.bandwidth_mib_s),
                    TaskFailureCause(),
                    ParsedDefinitions(),
                    self.cross_account,
                ):
                    stack.enter_context(extension)
                for product_id, priced in self.options.catalog_products.items():
                    self.catalog.seed_product(self.account_id, product_id, instance_types=priced)
                self.stack = deploy(
                    ROOT,
                    region=self.source_region,
                    account_id=self.account_id,
                    stack_name=self.deploy_config.stack_name,
                    parameters=self.deploy_config.parameters,
                )
                role = self._state_machine_role()
                machine = self.credentials(self.account_id, role_arn=role, session="states")
                self.audit.register(machine["AWS_ACCESS_KEY_ID"], "StateMachine")
                stack.enter_context(
                    StateMachineCredentials(
                        machine["AWS_ACCESS_KEY_ID"],
                        machine["AWS_SECRET_ACCESS_KEY"],
                        machine["AWS_SESSION_TOKEN"],
                        endpoint=self.server.endpoint,
                    )
                )
                for function_name, code_dir in self.stack.code_dirs.items():
                    self.lambdas.register(function_name, self.stack.short_names[function_name], code_dir)
                self._set_timeouts(self.options.lambda_timeouts)
                self._subscribe_capture()
                yield self
        finally:
            forget_clients()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def credentials(self, account: str, *, role_arn: str | None = None, session: str = "seller") -> dict[str, str]:
        """Temporary credentials in ``account`` (an STS session, as a seller's CLI would have)."""
        role_arn = role_arn or f"arn:aws:iam::{account}:role/sandbox-seller"
        if role_arn not in self._credentials:
            from moto.sts.models import sts_backends

            role = sts_backends[account]["aws"].assume_role(
                region_name=self.source_region,
                role_session_name=session,
                role_arn=role_arn,
                policy="",
                duration=43200,
                external_id="",
            )
            self._credentials[role_arn] = {
                "AWS_ACCESS_KEY_ID": role.access_key_id,
                "AWS_SECRET_ACCESS_KEY": role.secret_access_key,
                "AWS_SESSION_TOKEN": role.session_token,
            }
        return self._credentials[role_arn]

    def _set_timeouts(self, timeouts: Mapping[str, int]) -> None:
        """Set deployed functions' Timeout, by short name (CopyBlob) or logical id."""
        assert self.stack is not None
        names = {short: name for name, short in self.stack.short_names.items()}
        for function, seconds in timeouts.items():
            name = names.get(function) or names.get(function.removesuffix("Function"))
            if name is None:
                raise StackConfigError(
                    f"--lambda-timeout {function}={seconds}: the stack has no such function; it has "
                    f"{', '.join(sorted(names))}"
                )
            self.aws("lambda").update_function_configuration(FunctionName=name, Timeout=seconds)

    def _state_machine_role(self) -> str:
        assert self.stack is not None
        described = self.aws("stepfunctions").describe_state_machine(stateMachineArn=self.stack.state_machine_arn)
        return str(described["roleArn"])

    def artifact_buckets(self) -> list[str]:
        return sorted({parse_s3_uri(uri)[0] for *_, uri in self.spec.objects()})

    def aws(self, service: str, region: str | None = None, account: str | None = None) -> Any:
        """A client in the stack's account (or ``account``), as the seller's own CLI would be."""
        creds = self.credentials(account or self.account_id)
        return boto3.client(
            service,
            region_name=region or self.source_region,
            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=creds["AWS_SESSION_TOKEN"],
        )

    def _subscribe_capture(self) -> None:
        """A subscriber queue on the topic and a rule copying the pipeline's events."""
        assert self.stack is not None
        sqs = self.aws("sqs")
        notifications = sqs.create_queue(QueueName="sandbox-notifications")["QueueUrl"]
        events_queue = sqs.create_queue(QueueName="sandbox-events")["QueueUrl"]

        def arn_of(url: str) -> str:
            return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])

        self.aws("sns").subscribe(
            TopicArn=self.stack.outputs["NotificationTopicArn"], Protocol="sqs", Endpoint=arn_of(notifications)
        )
        events = self.aws("events")
        events.put_rule(Name="sandbox-capture", EventPattern=json.dumps({"source": ["mlpublish"]}))
        events.put_targets(Rule="sandbox-capture", Targets=[{"Id": "capture", "Arn": arn_of(events_queue)}])
        self._capture = {"notifications": notifications, "events": events_queue}

    # ------------------------------------------------------------------ seeding
    def _put(self, uri: str, body: bytes, *, eventbridge: bool = False) -> None:
        bucket, key = parse_s3_uri(uri)
        # The release's objects are in the development account, if there is one; release files
        # are in the stack's pipeline bucket.
        owner = self.options.source_account if bucket in self.artifact_buckets() else None
        s3 = self.aws("s3", account=owner)
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            create: dict[str, Any] = {"Bucket": bucket}
            if self.source_region != "us-east-1":
                create["CreateBucketConfiguration"] = {"LocationConstraint": self.source_region}
            s3.create_bucket(**create)
            if owner and "bucket" in self.options.source_policies:
                s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(self.source_bucket_policy(bucket)))
        if eventbridge:
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        # As `aws s3 cp` uploads: in parts above a threshold (so a large artifact has a multipart
        # ETag, as a seller's would); moto also takes a large single PUT slowly (26 s for 160 MiB).
        s3.upload_fileobj(io.BytesIO(body), bucket, key, Config=_SELLER_UPLOAD)
        self.poller.wait_idle()  # a seller's steps are apart in time: each event is handled before the next

    def _model_data(self) -> bytes:
        path = self.options.model_data
        return path.read_bytes() if path else sample_model_data()

    def _validation_input(self) -> bytes:
        path = self.options.validation_input
        return path.read_bytes() if path else SAMPLE_VALIDATION_INPUT

    def release_uri(self, prefix: str = "releases/") -> str:
        assert self.stack is not None
        return f"s3://{self.stack.outputs['PipelineBucketName']}/{prefix}{self.spec.product.name}.yaml"

    def layouts_by_container(self, layouts: Layouts) -> dict[str, OciLayout]:
        """One layout per container; a single layout serves a one-container release."""
        names = [name for name, *_ in self.spec.images()]
        if isinstance(layouts, OciLayout):
            if len(names) != 1:
                raise ValueError(f"the release has {len(names)} images ({', '.join(names)}); give an image for each")
            return {names[0]: layouts}
        missing = [name for name in names if name not in layouts]
        unknown = sorted(set(layouts) - set(names))
        if missing or unknown:
            raise ValueError(
                f"images are needed for containers {', '.join(names)}"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; not in the release: {', '.join(unknown)}" if unknown else "")
            )
        return dict(layouts)

    def push_images(self, layouts: Layouts) -> str:
        """Push every image (each container's, an algorithm's training image), in release order;
        returns the first one's digest."""
        digests = []
        for name, _, _, ref in self.spec.images():
            layout = self.layouts_by_container(layouts)[name]
            ecr = self.aws("ecr", ref.region, account=ref.registry_id)
            with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
                ecr.create_repository(repositoryName=ref.repository)
                if ref.registry_id == self.options.source_account and "repository" in self.options.source_policies:
                    ecr.set_repository_policy(
                        repositoryName=ref.repository, policyText=json.dumps(self.source_repository_policy())
                    )
            uploads = seller_uploads(ecr, ref.region)
            digests.append(push_layout(layout, ecr, ref.repository, ref.tag or "latest", uploads=uploads).digest)
            self.poller.wait_idle()
        return digests[0]

    # ------------------------------------------------------- the development account
    def source_repository_policy(self) -> dict[str, Any]:
        """What the seller writes on a development account's repository: the stack's account may
        read its images (the stack's roles' own policies say which of them may)."""
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "MlpublishReadsImages",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{self.account_id}:root"},
                    "Action": [
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:DescribeImages",
                    ],
                }
            ],
        }

    def source_bucket_policy(self, bucket: str) -> dict[str, Any]:
        """What the seller writes on a development account's bucket: the stack's account may read its objects."""
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "MlpublishReadsObjects",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{self.account_id}:root"},
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }

    def deploy_source_account(self) -> None:
        """Deploy templates/source-account.yaml in the development account, as the seller does:
        its pushes to the release's repositories and uploads to its buckets go to the stack's bus."""
        account = self.options.source_account
        assert account is not None
        repositories = sorted(
            {c.image_ref.repository for c in self.spec.containers if c.image_ref.registry_id == account}
        )
        template = load_template(ROOT / "templates" / "source-account.yaml")
        parameters = {
            "SellerAccountId": self.account_id,
            "RepositoryNames": ",".join(repositories),
            "BucketNames": ",".join(self.artifact_buckets()),
        }
        self.aws("cloudformation", account=account).create_stack(
            StackName="mlpublish-source-account",
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
            Capabilities=["CAPABILITY_IAM"],
        )

    def seed_and_trigger(self, layouts: Layouts) -> tuple[str, Delivery]:
        """Put everything in place in the order that makes the chosen trigger fire; the last
        image pushed, the last artifact uploaded or the manual start fires it."""
        assert self.options.release is not None, "seeding needs a release file"
        trigger, release_text = self.effective_trigger(), self.options.release.read_bytes()
        if self.options.source_account:
            self.deploy_source_account()
        model_uris = [c.model_data for c in self.spec.containers if c.model_data]
        if self.spec.package is not None:  # the model an algorithm release builds its package with
            model_uris.append(self.spec.package.model_data)
        validation_uri = self.spec.validation.input
        # An algorithm's training channels: the sample validation input stands in for their data.
        data_uris = [validation_uri, *(uri for role, *_, uri in self.spec.objects() if role == "training_input")]
        before = self.clock.virtual_seconds
        known = self._executions()
        if trigger == "ecr-push":
            for uri in model_uris:
                self._put(uri, self._model_data())
            for uri in data_uris:
                self._put(uri, self._validation_input())
            self._put(self.release_uri(), release_text)
            digest = self.push_images(layouts)
        elif trigger == "s3-upload":
            digest = self.push_images(layouts)
            for uri in data_uris:
                self._put(uri, self._validation_input())
            self._put(self.release_uri(), release_text)
            for uri in model_uris or [validation_uri]:
                self._put(uri, self._model_data() if model_uris else self._validation_input(), eventbridge=True)
        else:
            digest = self.push_images(layouts)
            for uri in model_uris:
                self._put(uri, self._model_data())
            for uri in data_uris:
                self._put(uri, self._validation_input())
            self._put(self.release_uri("manual/"), release_text)
            self.start_manually()
        return digest, self._await_new(known, before)

    def redeliver(self) -> Delivery:
        """Deliver the same trigger once more (a duplicate event or a second start)."""
        before, known = self.clock.virtual_seconds, self._executions()
        trigger = self.effective_trigger()
        if trigger == "ecr-push":
            ref = self.spec.containers[0].image_ref
            from sandbox.ext_ecr import emit_image_push_event

            digest = self.aws("ecr", ref.region, account=ref.registry_id).describe_images(
                repositoryName=ref.repository, imageIds=[{"imageTag": ref.tag or "latest"}]
            )["imageDetails"][0]["imageDigest"]
            emit_image_push_event(ref.registry_id, ref.region, ref.repository, digest, ref.tag)
        elif trigger == "s3-upload":
            model_uris = [c.model_data for c in self.spec.containers if c.model_data]
            uri = model_uris[0] if model_uris else self.spec.validation.input
            self._put(uri, self._model_data() if model_uris else self._validation_input(), eventbridge=True)
        else:
            self.start_manually()
        return self._await_new(known, before, allow_none=True)

    def foreign_accounts(self) -> list[str]:
        """Accounts of the release's images other than the stack's and the development account,
        whose pushes the sandbox forwards to the stack's bus as the seller does."""
        forwarded = {self.account_id, self.options.source_account}
        return sorted({ref.registry_id for *_, ref in self.spec.images()} - forwarded)

    def foreign_regions(self) -> list[str]:
        """Regions of the release's images other than the stack's."""
        return sorted({ref.region for *_, ref in self.spec.images()} - {self.source_region})

    def effective_trigger(self) -> Trigger:
        """The chosen trigger, unless its event cannot reach the stack: a push in another account
        or region raises no event on the stack's bus, so the release is started by hand and the
        pipeline judges it, as it would on AWS."""
        if self.options.trigger == "ecr-push" and (self.foreign_accounts() or self.foreign_regions()):
            return "manual"
        return self.options.trigger

    def notices(self) -> list[str]:
        """What the run does differently from what was asked, and why."""
        found = []
        if self.effective_trigger() != self.options.trigger:
            where = [
                *(f"account {account}" for account in self.foreign_accounts()),
                *(f"region {region}" for region in self.foreign_regions()),
            ]
            found.append(
                f"the images are in {', '.join(where)}, not the stack's account {self.account_id} and region "
                f"{self.source_region}: their push events do not reach the stack's event bus (forward them with "
                "a rule there), so the release is started by hand"
            )
        if self.validation_not_run:
            found.append(f"validation: container not run: {self.validation_not_run}; validation is reported completed")
        for run in self.sagemaker.local_runs.values():
            if run.done.is_set() and run.not_run:
                found.append(f"validation of {run.package_arn}: {run.not_run}; its virtual outcome was reported")
        found += [f"event forwarding: {error}" for error in self.cross_account.forward_errors]
        for fault in self.lambdas.unfired if self.lambdas else []:
            found.append(f"--fault {fault.kind}:{fault.function} did not fire: no invocation of it made enough calls")
        return found

    def check_faults(self) -> None:
        """Every Lambda fault names a function of the stack."""
        assert self.stack is not None
        names = sorted(self.stack.short_names.values())
        for fault in self.options.lambda_faults:
            if not any(fault.matches(name) for name in names):
                raise StackConfigError(
                    f"--fault {fault.kind}:{fault.function}: the stack has no such function; use one of "
                    f"{', '.join(names)} (or their logical ids, e.g. {names[0]}Function)"
                )

    def unwatched_upload(self) -> str | None:
        """Why an s3-upload run could not start anything, or None."""
        if self.options.trigger != "s3-upload" or self.stack is None:
            return None
        model_uris = [c.model_data for c in self.spec.containers if c.model_data] or [self.spec.validation.input]
        bucket = parse_s3_uri(model_uris[0])[0]
        watched = {b.strip() for b in self.stack.parameters.get("WatchedBuckets", "").split(",") if b.strip()}
        if bucket in watched or bucket == self.stack.outputs.get("PipelineBucketName"):
            return None
        return (
            f"--trigger s3-upload: the stack does not watch uploads to {bucket} (WatchedBuckets="
            f"{','.join(sorted(watched)) or '(empty)'}); deploy it as a seller would, with "
            f"--parameter-overrides WatchedBuckets={bucket}"
        )

    def publish_package_on(self, algorithm_arn: str, package: ReleaseSpec, text: bytes) -> Delivery:
        """Publish ``package`` (a model package built from an algorithm, its release file
        ``text``) on the algorithm this run just published: the seller copies the ARN the
        algorithm's announcement gives into the package's release file, uploads its model data
        and validation input, and starts it by hand."""
        assert self.stack is not None
        if package.source_algorithm is None:
            raise ValueError(f"{package.product.name}: has no source_algorithm; it is not built on an algorithm")
        document = yaml.safe_load(text)
        document["source_algorithm"]["algorithm"] = algorithm_arn
        before, known = self.clock.virtual_seconds, self._executions()
        self._put(package.source_algorithm.model_data, self._model_data())
        self._put(package.validation.input, self._validation_input())
        uri = f"s3://{self.stack.outputs['PipelineBucketName']}/manual/{package.product.name}.yaml"
        self._put(uri, yaml.safe_dump(document, sort_keys=False).encode())
        self.start_manually(uri)
        return self._await_new(known, before)

    def start_manually(self, release_uri: str | None = None) -> str:
        assert self.stack is not None
        uri = release_uri or self.release_uri("manual/")
        body = json.dumps({"release_uri": uri, "trigger": {"kind": "manual", "ref": "cli"}})
        # AWS names an unnamed execution with a UUID; moto 5.2.5 names it "None", so name it here.
        arn: str = self.aws("stepfunctions").start_execution(
            stateMachineArn=self.stack.state_machine_arn, name=str(uuid.uuid4()), input=body
        )["executionArn"]
        return arn

    # ------------------------------------------------------------------ waiting
    def _executions(self) -> set[str]:
        assert self.stack is not None
        pages = self.aws("stepfunctions").list_executions(stateMachineArn=self.stack.state_machine_arn)
        return {item["executionArn"] for item in pages["executions"]}

    def _await_new(self, known: set[str], clock_before: float, *, allow_none: bool = False) -> Delivery:
        self.poller.wait_idle()  # the trigger has handled every event the seeding raised
        new = sorted(self._executions() - known)
        if not new:
            if not allow_none or not known:
                failed = self.lambdas.last_errors.get("Trigger") if self.lambdas else None
                if failed:
                    raise NothingStarted(f"the trigger failed ({failed}); see its log in {self.lambda_log}")
                raise NothingStarted(
                    f"the trigger started no execution: on AWS the release would wait for a source it "
                    f"cannot find; see the trigger's log in {self.lambda_log}"
                )
            # The trigger recognised content it has published (or is publishing) already.
            latest = self._latest_execution()
            return Delivery(latest, self.wait(latest), clock_before, self.clock.virtual_seconds, deduplicated=True)
        status = self.wait(new[-1])
        return Delivery(new[-1], status, clock_before, self.clock.virtual_seconds)

    def _latest_execution(self) -> str:
        assert self.stack is not None
        items = self.aws("stepfunctions").list_executions(stateMachineArn=self.stack.state_machine_arn)["executions"]
        return str(max(items, key=lambda item: item["startDate"])["executionArn"])

    def wait(self, execution_arn: str, timeout: float = 600.0) -> str:
        sfn = self.aws("stepfunctions")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = str(sfn.describe_execution(executionArn=execution_arn)["status"])
            if status != "RUNNING":
                return status
            time.sleep(0.02)
        raise TimeoutError(f"{execution_arn} still running after {timeout} s of real time")

    # ------------------------------------------------------------------ reading
    def drain(self, which: str) -> list[dict[str, Any]]:
        sqs = self.aws("sqs")
        messages: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=self._capture[which], MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                messages.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self._capture[which], ReceiptHandle=message["ReceiptHandle"])


def load_release(path: Path) -> ReleaseSpec:
    return parse_release(path.read_bytes(), source=str(path))

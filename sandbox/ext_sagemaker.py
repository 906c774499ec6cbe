"""SageMaker model packages and algorithms, validated as the Marketplace pipeline experiences it.

moto 5.2.5 says ``Completed`` for every model package, with a ValidationStatuses and an
ImageScanStatuses item named after the package ARN; it has no DeleteModelPackage and
creates a second unversioned package with an existing name by overwriting the first.
Real SageMaker validates a certified package for minutes to hours (batch transform jobs
plus image scans) and reports every FailureReason. This extension, on the virtual clock:

* makes a package created with a ValidationSpecification (or CertifyForMarketplace)
  ``Pending`` for ``pending_seconds``, ``InProgress`` for ``in_progress_seconds`` and
  then ``Completed`` or ``Failed``: one ValidationStatuses item per validation profile
  and one ImageScanStatuses item per container, each ``NotStarted`` -> ``InProgress`` ->
  ``Completed``/``Failed`` with the configured ``FailureReason``, shaped as
  DescribeModelPackage's ModelPackageStatusDetails; other packages are ``Completed``
  with empty lists, as in the documented EventBridge sample;
* rejects CreateModelPackage for an unversioned name that exists with
  ``ValidationException`` "ModelPackage already exists" (the message the SageMaker
  Python SDK matches to detect an existing package), unless the request repeats the
  existing package's ``ClientToken``: then it returns the existing ARN, the usual AWS
  idempotency contract (moto itself stores ClientToken and ignores it);
* implements DeleteModelPackage (moto raises NotImplementedError).

With a ``local`` validator (``sandbox run --validation real``), the package's validation
profile is also run for real, on the published image, by :mod:`sandbox.validation_local`,
in a background thread started at creation: its FailureReason (or success) decides the
profile's ValidationStatuses item. A describe that finds the virtual validation over while
the real job still runs waits for it (at most ``block_seconds``, then InProgress), so the
state machine polls no more often than it does on AWS.

Algorithms: moto 5.2.5 has no CreateAlgorithm, DescribeAlgorithm, ListAlgorithms or
DeleteAlgorithm. This extension serves them on moto's SageMaker endpoint (handlers added to
``SageMakerResponse``), keeping each account's and region's algorithms on moto's backend for
them, so the account is the one the request's credentials belong to, as for moto's own
resources. Each request is checked server-side (:mod:`sandbox.sagemaker_requests`: every
constraint of botocore's input shape, then ParamValidator, then CreateAlgorithm's documented
rules), whatever the client checked. An algorithm's validation unfolds on the virtual clock
exactly as a package's (``ValidationOutcome``, ``set_outcome``): one ValidationStatuses item
per profile (``algorithm_validation_failures``, else ``validation_failures``, give its
FailureReason) and one ImageScanStatuses item per image (training image, then inference
containers; an image used for both once). With a ``local`` validator the algorithm's profile
is run for real as a package's is: its training job (``train`` in the training image), then
its transform job on the inference containers serving the model that training wrote; a
failed training job's FailureReason (SageMaker's ``AlgorithmError: ..., exit code: N``) is
reported as "Training job validation failed: " + that reason, as the virtual outcome words
it (the prefix is assumed). DescribeAlgorithm has no ProductId (Marketplace sets it
once listed); DeleteAlgorithm removes at once (SageMaker passes through ``Deleting``); Tags
are kept with the request but ListTags does not see them.

State-change events: SageMaker sends "SageMaker Model Package State Change" (documented, with a
sample for a versioned package) and "SageMaker Algorithm State Change" (listed; its detail's
fields are unconfirmed beyond AlgorithmArn, AlgorithmName, AlgorithmDescription,
CertifyForMarketplace) to the default bus of the resource's region. Whether SageMaker sends
them for unversioned (Marketplace) packages is unconfirmed. The sandbox sends both, on the
virtual clock: when validation starts (InProgress) and when it ends, the end twice (EventBridge
may deliver duplicates); a package's detail mirrors DescribeModelPackage as the sample does, an
algorithm's has only the confirmed fields (no status), so a consumer must describe it.
``emit_events=False`` loses them all, as a missing or broken delivery would.

Confirmed for SageMaker: the shapes, enums and limits (botocore 1.44.5); the validation
message format (aws/amazon-sagemaker-examples#4843); "ARN should be scoped to correct region:
REGION" for another region's ARN (aws/amazon-sagemaker-examples#2292); a training container
exiting 1 without a failure file fails its job with "AlgorithmError: , exit code: 1"
(aws-samples/amazon-sagemaker-ml-pipeline-deploy-with-terraform#12). Assumed (no source
found): "Algorithm already exists: ARN" for an existing name (mirrors the model package's),
'Could not find algorithm "ARN".' for a missing one (ValidationException, like SageMaker's
other Describe calls), how an algorithm's status items are named and worded, ListAlgorithms'
page size (10) and a NameContains that ignores case.

Item names (EntityName, ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``) of ImageScanStatuses are
not documented; the sandbox uses the container's hostname, else its repository name.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

from moto.core.responses import ActionResult, EmptyResult
from moto.events.models import events_backends
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import arn_formatter

from sandbox.clock import VirtualClock
from sandbox.extension import Extension
from sandbox.sagemaker_requests import check_create_algorithm, check_request

#: Key of a failure mapping that applies to every profile / container.
EVERY = "*"
#: Attribute of moto's per-account, per-region SageMaker backend holding the sandbox's algorithms.
_STORE = "sandbox_algorithms"


@dataclass(frozen=True)
class ValidationOutcome:
    """How validation of a certified model package or algorithm unfolds, in virtual seconds.

    ``validation_failures`` maps a validation profile name (or ``"*"``) and
    ``image_scan_failures`` a scan item name, an image URI (or ``"*"``) to the
    FailureReason reported for it; any failure makes the package (algorithm) ``Failed``.
    ``algorithm_validation_failures``, when not empty, replaces ``validation_failures`` for
    algorithms, whose profile is a training job (then a transform job) rather than a
    transform job alone.
    """

    pending_seconds: float = 60.0
    in_progress_seconds: float = 3600.0
    validation_failures: Mapping[str, str] = field(default_factory=dict)
    image_scan_failures: Mapping[str, str] = field(default_factory=dict)
    algorithm_validation_failures: Mapping[str, str] = field(default_factory=dict)


@dataclass
class LocalRun:
    """The real validation jobs of one package or algorithm: ``failures`` by profile once
    ``done`` is set.

    ``not_run`` says why no container ran (the sandbox could not run this job); the virtual
    outcome then decides, and the report says so.
    """

    package_arn: str
    done: threading.Event = field(default_factory=threading.Event)
    failures: dict[str, str] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    not_run: str | None = None


@dataclass
class Algorithm:
    """One algorithm as CreateAlgorithm made it: ``request`` is the request as received."""

    name: str
    arn: str
    creation_time: dt.datetime
    request: Mapping[str, Any]
    status: str = "Pending"
    status_details: dict[str, list[dict[str, str]]] = field(
        default_factory=lambda: {"ValidationStatuses": [], "ImageScanStatuses": []}
    )

    def describe(self) -> dict[str, Any]:
        """DescribeAlgorithmOutput (no ProductId: SageMaker sets it once Marketplace lists the algorithm)."""
        described: dict[str, Any] = {
            "AlgorithmName": self.name,
            "AlgorithmArn": self.arn,
            "CreationTime": self.creation_time,
            "TrainingSpecification": copy.deepcopy(self.request["TrainingSpecification"]),
            "AlgorithmStatus": self.status,
            "AlgorithmStatusDetails": copy.deepcopy(self.status_details),
            "CertifyForMarketplace": bool(self.request.get("CertifyForMarketplace", False)),
        }
        for key in ("AlgorithmDescription", "InferenceSpecification", "ValidationSpecification"):
            if self.request.get(key) is not None:
                described[key] = copy.deepcopy(self.request[key])
        return described

    def summary(self) -> dict[str, Any]:
        """AlgorithmSummary, as ListAlgorithms gives it."""
        summary: dict[str, Any] = {
            "AlgorithmName": self.name,
            "AlgorithmArn": self.arn,
            "CreationTime": self.creation_time,
            "AlgorithmStatus": self.status,
        }
        if self.request.get("AlgorithmDescription") is not None:
            summary["AlgorithmDescription"] = self.request["AlgorithmDescription"]
        return summary


@dataclass(frozen=True)
class _Item:
    name: str
    failure_reason: str | None


@dataclass(frozen=True)
class _Tracked:
    created_at: dt.datetime
    outcome: ValidationOutcome
    validations: tuple[_Item, ...]
    image_scans: tuple[_Item, ...]


class SageMakerValidation(Extension):
    """Virtual-time validation, name conflicts and deletion for moto's model packages, and algorithms.

    ``local``, when given, is called (in a thread of its own) with each new certified package
    (moto's object) or :class:`Algorithm` and returns its real validation's :class:`LocalRun`.
    Install with ``undo = ext.install()`` (or ``with ext:``); ``undo()`` restores moto.
    """

    def __init__(
        self,
        clock: VirtualClock,
        default_outcome: ValidationOutcome | None = None,
        *,
        local: Callable[[Any], LocalRun] | None = None,
        block_seconds: float = 20.0,
        stopping: threading.Event | None = None,
        emit_events: bool = True,
    ) -> None:
        self.clock = clock
        self.emit_events = emit_events
        self.default_outcome = default_outcome or ValidationOutcome()
        self.local = local
        self.block_seconds = block_seconds
        self.local_runs: dict[str, LocalRun] = {}
        # Set when the sandbox stops: the local validator's jobs end at their next request.
        self.stopping = stopping or threading.Event()
        self._outcomes: dict[str, ValidationOutcome] = {}
        self._tracked: dict[str, _Tracked] = {}
        #: When a caller first described each resource as ended (virtual time).
        self.known: dict[str, dt.datetime] = {}
        self._lock = threading.Lock()

    def set_outcome(self, model_package_name: str, outcome: ValidationOutcome) -> None:
        """The outcome for packages created later under this name (default: ``default_outcome``)."""
        self._outcomes[model_package_name] = outcome

    def _patch(self, stack: ExitStack) -> None:
        """Patch moto's SageMaker backend and responses."""
        for name, replacement in self._backend_patches().items():
            stack.enter_context(patch.object(SageMakerModelBackend, name, replacement))
        stack.enter_context(
            patch.object(SageMakerResponse, "delete_model_package", self._delete_response(), create=True)
        )
        for name, handler in self._algorithm_responses().items():
            stack.enter_context(patch.object(SageMakerResponse, name, handler, create=True))
        stack.callback(self._finish_local_runs)

    def _finish_local_runs(self, timeout: float = 60.0) -> None:
        """End real jobs still running (they remove their containers) before the sandbox goes."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for run in list(self.local_runs.values()):
            run.done.wait(max(0.0, deadline - time.monotonic()))

    def _backend_patches(self) -> dict[str, Callable[..., Any]]:
        ext = self
        original_create = SageMakerModelBackend.create_model_package
        original_describe = SageMakerModelBackend.describe_model_package
        original_list = SageMakerModelBackend.list_model_packages

        def create_model_package(backend: SageMakerModelBackend, **kwargs: Any) -> str:
            existing = ext._existing_unversioned(backend, kwargs.get("model_package_name"), kwargs)
            if existing is not None:
                return existing
            arn: str = original_create(backend, **kwargs)
            ext._track(backend.model_packages[arn])
            return arn

        def describe_model_package(backend: SageMakerModelBackend, model_package_name: str) -> Any:
            package = original_describe(backend, model_package_name)
            ext._refresh(package)
            ext._seen(package.arn, package.model_package_status)
            return package

        def list_model_packages(backend: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
            for package in list(backend.model_packages.values()):
                ext._refresh(package)
            return original_list(backend, *args, **kwargs)

        return {
            "create_model_package": create_model_package,
            "describe_model_package": describe_model_package,
            "list_model_packages": list_model_packages,
        }

    def _delete_response(self) -> Callable[[SageMakerResponse], EmptyResult]:
        ext = self

        # A plain function: moto dispatches only to functions defined on the response class.
        def delete_model_package(response: SageMakerResponse) -> EmptyResult:
            ext._delete(response.sagemaker_backend, response._get_param("ModelPackageName"))
            return EmptyResult()

        return delete_model_package

    def _algorithm_responses(self) -> dict[str, Callable[[SageMakerResponse], ActionResult]]:
        """CreateAlgorithm, DescribeAlgorithm, ListAlgorithms and DeleteAlgorithm (moto has none)."""
        ext = self

        # Plain functions: moto dispatches only to functions defined on the response class.
        def create_algorithm(response: SageMakerResponse) -> ActionResult:
            return ActionResult({"AlgorithmArn": ext._create_algorithm(response).arn})

        def describe_algorithm(response: SageMakerResponse) -> ActionResult:
            check_request("DescribeAlgorithm", response.params)
            algorithm = ext._find_algorithm(response, response._get_param("AlgorithmName"))
            ext._refresh_algorithm(algorithm)
            ext._seen(algorithm.arn, algorithm.status)
            return ActionResult(algorithm.describe())

        def list_algorithms(response: SageMakerResponse) -> ActionResult:
            check_request("ListAlgorithms", response.params)
            return ActionResult(ext._list_algorithms(response))

        def delete_algorithm(response: SageMakerResponse) -> EmptyResult:
            check_request("DeleteAlgorithm", response.params)
            algorithm = ext._find_algorithm(response, response._get_param("AlgorithmName"))
            with ext._lock:
                _algorithms(response.sagemaker_backend).pop(algorithm.name.lower(), None)
                ext._tracked.pop(algorithm.arn, None)
            ext.local_runs.pop(algorithm.arn, None)
            return EmptyResult()

        return {
            "create_algorithm": create_algorithm,
            "describe_algorithm": describe_algorithm,
            "list_algorithms": list_algorithms,
            "delete_algorithm": delete_algorithm,
        }

    def _create_algorithm(self, response: SageMakerResponse) -> Algorithm:
        request = copy.deepcopy(dict(response.params))
        check_create_algorithm(request)
        name = request["AlgorithmName"]
        backend = response.sagemaker_backend
        arn = arn_formatter("algorithm", name, response.current_account, response.region)
        algorithm = Algorithm(name, arn, self.clock.now(), request)
        with self._lock:
            store = _algorithms(backend)
            existing = store.get(name.lower())
            if existing is not None:
                # SageMaker documents no message for an existing algorithm name: this mirrors the
                # model package's ("ModelPackage already exists: ARN") above.
                raise ValidationError(f"Algorithm already exists: {existing.arn}")
            store[name.lower()] = algorithm
        self._track_algorithm(algorithm)
        return algorithm

    def _find_algorithm(self, response: SageMakerResponse, name_or_arn: str) -> Algorithm:
        """The caller's algorithm of that name or ARN, in the request's account and region.

        An ARN of another region is refused with the message SageMaker gave for one
        (aws/amazon-sagemaker-examples#2292: "ARN should be scoped to correct region: us-west-2").
        A missing algorithm is a ValidationException, as for SageMaker's other Describe calls
        (DescribeAlgorithm declares no error shape); its wording is not documented: "Could not
        find algorithm" follows SageMaker's "Could not find model ..." (unconfirmed).
        """
        region, account = response.region, response.current_account
        name = name_or_arn
        if name_or_arn.startswith("arn:"):
            parts = name_or_arn.split(":", 5)
            if len(parts) == 6 and parts[3] != region:
                raise ValidationError(f"ARN should be scoped to correct region: {region}")
            kind, _, name = parts[-1].partition("/")
            if kind != "algorithm" or parts[4] != account:
                name = ""
        with self._lock:
            algorithm = _algorithms(response.sagemaker_backend).get(name.lower()) if name else None
        if algorithm is None:
            arn = name_or_arn if name_or_arn.startswith("arn:") else arn_formatter("algorithm", name, account, region)
            raise ValidationError(f'Could not find algorithm "{arn}".')
        return algorithm

    def _list_algorithms(self, response: SageMakerResponse) -> dict[str, Any]:
        """ListAlgorithms: filters, sort (default CreationTime, Ascending, as documented) and pages.

        SageMaker does not document its default page size or whether NameContains ignores case:
        the sandbox pages by 10 and ignores case (SageMaker names are unique regardless of case).
        """
        params = response.params
        with self._lock:
            algorithms = list(_algorithms(response.sagemaker_backend).values())
        for algorithm in algorithms:
            self._refresh_algorithm(algorithm)
        contains = (params.get("NameContains") or "").lower()
        after, before = _utc(params.get("CreationTimeAfter")), _utc(params.get("CreationTimeBefore"))
        chosen = [
            a
            for a in algorithms
            if contains in a.name.lower()
            and (after is None or a.creation_time > after)
            and (before is None or a.creation_time < before)
        ]
        if params.get("SortBy") == "Name":
            chosen.sort(key=lambda a: a.name)
        else:
            chosen.sort(key=lambda a: a.creation_time)
        if params.get("SortOrder") == "Descending":
            chosen.reverse()
        token = params.get("NextToken")
        if token and not token.isdigit():
            raise ValidationError(f"Invalid NextToken: {token}")
        start = int(token or 0)
        end = start + int(params.get("MaxResults") or 10)
        page: dict[str, Any] = {"AlgorithmSummaryList": [a.summary() for a in chosen[start:end]]}
        if end < len(chosen):
            page["NextToken"] = str(end)
        return page

    def _track_algorithm(self, algorithm: Algorithm) -> None:
        """Start the virtual validation clock of a new algorithm, as for a model package."""
        request = algorithm.request
        profiles = (request.get("ValidationSpecification") or {}).get("ValidationProfiles") or []
        if not profiles and not request.get("CertifyForMarketplace"):
            algorithm.status = "Completed"
            return
        outcome = self._outcomes.get(algorithm.name, self.default_outcome)
        failures = outcome.algorithm_validation_failures or outcome.validation_failures
        validations = tuple(_Item(p["ProfileName"], _reason(failures, p["ProfileName"])) for p in profiles)
        image_scans = tuple(
            _Item(name, _reason(outcome.image_scan_failures, name, image))
            for name, image in _algorithm_scan_items(request)
        )
        with self._lock:
            self._tracked[algorithm.arn] = _Tracked(algorithm.creation_time, outcome, validations, image_scans)
        if self.local is not None and profiles:
            self._start_local(algorithm.arn, algorithm.name, algorithm)
        self._refresh_algorithm(algorithm)
        detail = self._algorithm_detail(algorithm)
        self._schedule_state_events(algorithm.arn, "SageMaker Algorithm State Change", detail)

    def _refresh_algorithm(self, algorithm: Algorithm) -> None:
        status = self._status(algorithm.arn)
        if status is not None:
            algorithm.status, algorithm.status_details = status

    def _seen(self, arn: str, status: str) -> None:
        """A caller described the resource: the first to see it ended is when it became known."""
        if status in ("Completed", "Failed"):
            with self._lock:
                self.known.setdefault(arn, self.clock.now())

    def known_after(self, arn: str) -> float | None:
        """Virtual seconds between the end of the resource's validation and the first describe
        that saw it (None: not validated on the clock, or nobody looked yet)."""
        with self._lock:
            tracked, known = self._tracked.get(arn), self.known.get(arn)
        if tracked is None or known is None:
            return None
        outcome = tracked.outcome
        ended = tracked.created_at + dt.timedelta(seconds=outcome.pending_seconds + outcome.in_progress_seconds)
        return round((known - ended).total_seconds(), 3)

    # ------------------------------------------------------------ state-change events
    def _schedule_state_events(self, arn: str, detail_type: str, detail: Callable[[], dict[str, Any]]) -> None:
        """SageMaker's events for a tracked resource: when validation starts and when it ends."""
        with self._lock:
            tracked = self._tracked.get(arn)
        if tracked is None or not self.emit_events:
            return
        outcome = tracked.outcome
        starts = tracked.created_at + dt.timedelta(seconds=outcome.pending_seconds)
        ends = starts + dt.timedelta(seconds=outcome.in_progress_seconds)
        self.clock.schedule(starts, lambda: self._emit(arn, detail_type, detail))
        self.clock.schedule(ends, lambda: self._emit_at_end(arn, detail_type, detail))

    def _emit_at_end(self, arn: str, detail_type: str, detail: Callable[[], dict[str, Any]]) -> None:
        local = self.local_runs.get(arn)
        if local is not None and not local.done.is_set():  # SageMaker ends when the real job does

            def later() -> None:
                if local.done.wait(600.0):
                    self._emit_at_end(arn, detail_type, detail)

            threading.Thread(target=later, name=f"events-{arn.rsplit('/', 1)[-1]}", daemon=True).start()
            return
        for _ in range(2):  # EventBridge may deliver an event more than once
            self._emit(arn, detail_type, detail)

    def _emit(self, arn: str, detail_type: str, detail: Callable[[], dict[str, Any]]) -> None:
        _, _, _, region, account, _ = arn.split(":", 5)
        with self._lock:
            if arn not in self._tracked:
                return  # deleted meanwhile
        entry = {"Source": "aws.sagemaker", "DetailType": detail_type, "Resources": [arn], "EventBusName": "default"}
        events_backends[account][region].put_events([{**entry, "Detail": json.dumps(detail(), default=_iso)}])

    def _package_detail(self, package: Any) -> Callable[[], dict[str, Any]]:
        def detail() -> dict[str, Any]:
            self._refresh(package)
            return {
                "ModelPackageName": package.model_package_name,
                "ModelPackageArn": package.arn,
                "CreationTime": _iso(package.creation_time),
                "ModelPackageStatus": package.model_package_status,
                "ModelPackageStatusDetails": copy.deepcopy(package.model_package_status_details),
                "CertifyForMarketplace": bool(package.certify_for_marketplace),
                "LastModifiedTime": _iso(self.clock.now()),
            }

        return detail

    @staticmethod
    def _algorithm_detail(algorithm: Algorithm) -> Callable[[], dict[str, Any]]:
        def detail() -> dict[str, Any]:
            found = {
                "AlgorithmName": algorithm.name,
                "AlgorithmArn": algorithm.arn,
                "CertifyForMarketplace": bool(algorithm.request.get("CertifyForMarketplace", False)),
            }
            if algorithm.request.get("AlgorithmDescription"):
                found["AlgorithmDescription"] = algorithm.request["AlgorithmDescription"]
            return found

        return detail

    def _existing_unversioned(
        self, backend: SageMakerModelBackend, name: str | None, request: Mapping[str, Any]
    ) -> str | None:
        """The existing package's ARN for an idempotent retry; raises for a name conflict."""
        if not name or request.get("model_package_group_name"):
            return None
        for package in backend.model_packages.values():
            if package.model_package_version is None and package.model_package_name.lower() == name.lower():
                token = request.get("client_token")
                if token and token == package.client_token:
                    return str(package.arn)
                raise ValidationError(f"ModelPackage already exists: {package.arn}")
        return None

    def _track(self, package: Any) -> None:
        """Start the virtual validation clock of a new package (creation time on the clock)."""
        package.creation_time = self.clock.now()
        profiles = (package.validation_specification or {}).get("ValidationProfiles") or []
        if not profiles and not package.certify_for_marketplace:
            package.model_package_status = "Completed"
            package.model_package_status_details = {"ValidationStatuses": [], "ImageScanStatuses": []}
            return
        outcome = self._outcomes.get(package.model_package_name, self.default_outcome)
        validations = tuple(
            _Item(p["ProfileName"], _reason(outcome.validation_failures, p["ProfileName"])) for p in profiles
        )
        image_scans = tuple(
            _Item(name, _reason(outcome.image_scan_failures, name, image))
            for name, image in _scan_items(package.inference_specification)
        )
        with self._lock:
            self._tracked[package.arn] = _Tracked(package.creation_time, outcome, validations, image_scans)
        if self.local is not None and profiles:
            self._start_local(package.arn, package.model_package_name, package)
        self._refresh(package)
        self._schedule_state_events(package.arn, "SageMaker Model Package State Change", self._package_detail(package))

    def _start_local(self, arn: str, name: str, resource: Any) -> None:
        """Run the ``local`` validator on a new package (moto's) or :class:`Algorithm`, in the background."""
        assert self.local is not None
        run_job = self.local
        placeholder = LocalRun(arn)
        self.local_runs[arn] = placeholder

        def run() -> None:
            try:
                finished = run_job(resource)
            except Exception as exc:  # the sandbox's own failure: say so, let the virtual outcome decide
                finished = LocalRun(arn, not_run=f"{type(exc).__name__}: {exc}")
            placeholder.failures, placeholder.jobs = finished.failures, finished.jobs
            placeholder.not_run = finished.not_run
            placeholder.done.set()

        threading.Thread(target=run, name=f"validate-{name}", daemon=True).start()

    def _refresh(self, package: Any) -> None:
        """Set the package's status from the virtual time elapsed since its creation."""
        status = self._status(package.arn)
        if status is not None:
            package.model_package_status, package.model_package_status_details = status

    def _status(self, arn: str) -> tuple[str, dict[str, list[dict[str, str]]]] | None:
        """The status and status details of a tracked package or algorithm, now on the virtual clock."""
        with self._lock:
            tracked = self._tracked.get(arn)
        if tracked is None:
            return None
        elapsed = self.clock.seconds_since(tracked.created_at)
        outcome = tracked.outcome
        local = self.local_runs.get(arn)
        over = elapsed >= outcome.pending_seconds + outcome.in_progress_seconds
        if over and local is not None and not local.done.wait(self.block_seconds):
            over = False  # the real job still runs: SageMaker would still say InProgress
        if elapsed < outcome.pending_seconds:
            status, details = "Pending", _details(tracked, "NotStarted")
        elif not over:
            status, details = "InProgress", _details(tracked, "InProgress")
        else:
            if local is not None and local.not_run is None:
                tracked = _with_local_results(tracked, local.failures)
            details = _details(tracked, None)
            failed = any(item.get("Status") == "Failed" for items in details.values() for item in items)
            status = "Failed" if failed else "Completed"
        return status, details

    def _delete(self, backend: SageMakerModelBackend, name_or_arn: str) -> None:
        arn = backend.model_package_name_mapping.get(name_or_arn, name_or_arn)
        package = backend.model_packages.pop(arn, None)
        if package is None:
            raise ValidationError(f"ModelPackage {name_or_arn} does not exist.")
        for key in [k for k, v in backend.model_package_name_mapping.items() if v == arn]:
            del backend.model_package_name_mapping[key]
        with self._lock:
            self._tracked.pop(arn, None)


def _with_local_results(tracked: _Tracked, failures: Mapping[str, str]) -> _Tracked:
    """The profiles' outcomes as the real job decided them (image scans stay as configured)."""
    validations = tuple(_Item(item.name, failures.get(item.name)) for item in tracked.validations)
    return _Tracked(tracked.created_at, tracked.outcome, validations, tracked.image_scans)


def _reason(failures: Mapping[str, str], *keys: str) -> str | None:
    for key in (*keys, EVERY):
        if key in failures:
            return failures[key]
    return None


def _details(tracked: _Tracked, running_status: str | None) -> dict[str, list[dict[str, str]]]:
    """ModelPackageStatusDetails with every item in ``running_status``, or final when None."""

    def item(entry: _Item) -> dict[str, str]:
        if running_status is not None:
            return {"Name": entry.name, "Status": running_status}
        if entry.failure_reason is None:
            return {"Name": entry.name, "Status": "Completed"}
        return {"Name": entry.name, "Status": "Failed", "FailureReason": entry.failure_reason}

    return {
        "ValidationStatuses": [item(e) for e in tracked.validations],
        "ImageScanStatuses": [item(e) for e in tracked.image_scans],
    }


def _scan_items(inference_specification: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(item name, image URI) per container; names are unique EntityNames."""
    items: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, container in enumerate((inference_specification or {}).get("Containers") or [], start=1):
        image = str(container.get("Image") or "")
        base = _entity_name(container.get("ContainerHostname") or _repository_name(image)) or f"container-{index}"
        name = base if base not in seen else _entity_name(f"{base}-{index}")
        seen.add(name)
        items.append((name, image))
    return items


def _algorithm_scan_items(request: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(item name, image URI) per image of an algorithm: its training image, then its inference
    containers' images; an image used for both is scanned once."""
    images = [request["TrainingSpecification"]["TrainingImage"]]
    containers = [{"Image": images[0]}]
    for container in (request.get("InferenceSpecification") or {}).get("Containers") or []:
        if container.get("Image") not in images:
            images.append(container.get("Image"))
            containers.append(container)
    return _scan_items({"Containers": containers})


def _algorithms(backend: SageMakerModelBackend) -> dict[str, Algorithm]:
    """The algorithms of one account and region by lower-case name, kept on moto's backend for
    them, so that they go when moto resets its backends."""
    store: dict[str, Algorithm] = backend.__dict__.setdefault(_STORE, {})
    return store


def _iso(value: Any) -> str:
    """Event times as EventBridge's samples write them (``2021-02-24T17:00:14Z``)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _utc(value: Any) -> dt.datetime | None:
    """A timestamp parameter as an aware datetime (moto parses it naive, in UTC)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(float(value), dt.UTC)


def _repository_name(image: str) -> str:
    """``123.dkr.ecr.r.amazonaws.com/team/model:tag@sha256:..`` -> ``model``."""
    path = image.split("@", 1)[0].split("/", 1)[-1]
    last = path.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def _entity_name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")[:63].rstrip("-")

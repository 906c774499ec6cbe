"""Another account's repositories, buckets and event buses, served through their resource policies.

A release built in a development account is read by the stack's roles in the seller account:
AWS allows that only when the repository's or bucket's own policy grants the calling role (or
its account), and forwards the development account's events only to a bus whose policy lets
that account put events. moto 5.2.5 has none of it:

* ECR answers from the caller's account only: ``registryId`` of another account gives
  RepositoryNotFoundException, and repository policies are stored, never evaluated;
* S3 finds any account's bucket by name and evaluates a bucket policy without its Principal;
* a rule forwarding to another account's bus re-puts the event there as that account's own
  (``account`` and ``region`` replaced), and the bus's policy is not consulted.

This extension makes a request of one account for another's resource behave as on AWS:
ECR calls with another account's ``registryId`` are served from that account's registry
once its repository policy grants the caller the action; S3 object requests (and the copy
source of CopyObject and UploadPartCopy) in another account's bucket, and ListBucket, need
the bucket policy's grant; otherwise both answer AccessDenied naming the caller, the action
and the resource, as AWS does. A forwarded event keeps its account, region, time and id, and
reaches the target bus's rules only when that bus's policy lets the sending account (or the
rule's role) put events; a refused forward is dropped and recorded, as EventBridge counts a
failed invocation. Other bucket-level requests across accounts are left to moto.

Within one account nothing changes: the caller's own IAM policy is what the IAM audit checks.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import logging
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, cast
from unittest.mock import patch
from urllib.parse import parse_qs, unquote, urlparse

from moto.core.exceptions import ServiceException
from moto.ecr.models import ecr_backends
from moto.ecr.responses import ECRResponse
from moto.events.models import Rule, events_backends
from moto.s3.exceptions import S3ClientError
from moto.s3.models import s3_backends
from moto.s3.responses import S3Response

from sandbox.ext_events import targets_of_our_own
from sandbox.ext_s3 import _over_tls
from sandbox.extension import Extension

LOG = logging.getLogger(__name__)


class EcrAccessDenied(ServiceException):
    code = "AccessDeniedException"


class S3AccessDenied(S3ClientError):
    def __init__(self, message: str) -> None:
        super().__init__("AccessDenied", message)


def caller_of(access_key: str, account: str) -> str:
    """The principal ARN of a request: the assumed role whose session signed it, else the account."""
    from moto.sts.models import sts_backends

    for regions in list(sts_backends.values()):
        for backend in list(regions.values()):
            for role in list(backend.assumed_roles):
                if role.access_key_id == access_key:
                    role_name = role.role_arn.rsplit("/", 1)[-1]
                    return f"arn:aws:sts::{role.role_arn.split(':')[4]}:assumed-role/{role_name}/{role.session_name}"
    return f"arn:aws:iam::{account}:root"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _principal_matches(principal: Any, caller: str) -> bool:
    """Whether a statement's Principal names the caller: ``*``, the caller's role (an assumed-role
    session is its role's, whatever the role's path), or its account (root ARN or bare id)."""
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    account = caller.split(":")[4]
    role = caller.split(":assumed-role/", 1)[1].split("/", maxsplit=1)[0] if ":assumed-role/" in caller else None
    for name in (str(item) for item in _as_list(principal.get("AWS", []))):
        if name in {"*", account, f"arn:aws:iam::{account}:root", caller}:
            return True
        if role and name.startswith(f"arn:aws:iam::{account}:role/") and name.rsplit("/", 1)[-1] == role:
            return True
    return False


def grants(policy: str | None, caller: str, action: str, resource: str) -> bool:
    """Whether a resource policy allows ``caller`` ``action`` on ``resource`` (an explicit deny wins).

    Conditions other than aws:SecureTransport cannot be evaluated here: such an Allow is not
    counted and such a Deny is, so the sandbox refuses where AWS might; NotPrincipal, NotAction
    and NotResource likewise.
    """
    if not policy:
        return False
    document = json.loads(policy)
    allowed = False
    for raw in _as_list(document.get("Statement", [])):
        statement = _over_tls(raw)
        if statement is None:
            continue
        deny = statement.get("Effect") == "Deny"
        unknowable = bool(statement.get("Condition")) or any(
            key in statement for key in ("NotPrincipal", "NotAction", "NotResource")
        )
        if unknowable:
            if deny:
                return False
            continue
        if not _principal_matches(statement.get("Principal"), caller):
            continue
        if not any(fnmatch.fnmatchcase(action.lower(), str(a).lower()) for a in _as_list(statement.get("Action", []))):
            continue
        if "Resource" in statement and not any(
            fnmatch.fnmatchcase(resource, str(r)) for r in _as_list(statement["Resource"])
        ):
            continue
        if deny:
            return False
        allowed = True
    return allowed


def denial(caller: str, action: str, resource: str) -> str:
    return (
        f"User: {caller} is not authorized to perform: {action} on resource: {resource} because no "
        f"resource-based policy allows the {action} action"
    )


def _ecr_backend(response: ECRResponse) -> Any:
    """moto's ECRResponse.ecr_backend, for another account's registry once its policy allows the call."""
    registry = response._get_param("registryId")
    if not registry or registry == response.current_account:
        return ecr_backends[response.current_account][response.region]
    backend = ecr_backends[registry][response.region]
    name = response._get_param("repositoryName")
    repository = backend.repositories.get(name) if name else None
    # moto reads ecr_backend more than once per request; the policy is judged once.
    if repository is not None and not response.__dict__.get("_sandbox_cross_account_checked"):
        caller = caller_of(response.access_key, response.current_account)
        action = f"ecr:{response._get_action()}"
        if not grants(repository.policy, caller, action, repository.arn):
            raise EcrAccessDenied(denial(caller, action, repository.arn))
        response.__dict__["_sandbox_cross_account_checked"] = True
    return backend


_OBJECT_ACTIONS = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject", "POST": "s3:PutObject"}


def _check_bucket(response: S3Response, bucket: str, action: str, resource: str) -> None:
    owner = s3_backends.bucket_accounts.get(bucket)
    if owner is None or owner[1] == response.current_account:
        return
    policy = s3_backends[owner[1]][owner[0]].buckets[bucket].policy
    caller = caller_of(response.access_key, response.current_account)
    if not grants(policy.decode() if isinstance(policy, bytes) else policy, caller, action, resource):
        raise S3AccessDenied(denial(caller, action, resource))


def _key_response(original: Callable[..., Any]) -> Callable[..., Any]:
    def checked(self: S3Response, request: Any, full_url: str) -> Any:
        bucket = self.parse_bucket_name_from_url(request, full_url)
        key = self.parse_key_name()
        action = _OBJECT_ACTIONS.get(request.method, f"s3:{request.method.title()}Object")
        _check_bucket(self, bucket, action, f"arn:aws:s3:::{bucket}/{key}")
        source = self.headers.get("x-amz-copy-source")
        if source:
            source = source.decode("utf-8") if isinstance(source, bytes) else source
            source_bucket, _, source_key = unquote(urlparse(source).path).lstrip("/").partition("/")
            _check_bucket(self, source_bucket, "s3:GetObject", f"arn:aws:s3:::{source_bucket}/{source_key}")
        return original(self, request, full_url)

    return checked


_LISTING_QUERY = frozenset(
    {"list-type", "prefix", "delimiter", "continuation-token", "max-keys", "start-after", "encoding-type", "marker"}
)


def _bucket_response(original: Callable[..., Any]) -> Callable[..., Any]:
    def checked(self: S3Response, request: Any, full_url: str) -> Any:
        bucket = self.parse_bucket_name_from_url(request, full_url)
        query = set(parse_qs(urlparse(full_url).query, keep_blank_values=True))
        if bucket and request.method in {"GET", "HEAD"} and query <= _LISTING_QUERY:
            _check_bucket(self, bucket, "s3:ListBucket", f"arn:aws:s3:::{bucket}")
        return original(self, request, full_url)

    return checked


class CrossAccountAccess(Extension):
    """Resource policies decide requests for another account's repositories, buckets and bus.

    Install with ``undo = ext.install()`` (or ``with ext:``); ``undo()`` restores moto.
    ``forward_errors`` lists the forwarded events a bus's policy refused.
    """

    def __init__(self) -> None:
        self.forward_errors: list[str] = []

    def _patch(self, stack: ExitStack) -> None:
        stack.enter_context(patch.object(ECRResponse, "ecr_backend", property(_ecr_backend)))
        stack.enter_context(patch.object(S3Response, "_key_response", _key_response(S3Response._key_response)))
        stack.enter_context(patch.object(S3Response, "_bucket_response", _bucket_response(S3Response._bucket_response)))
        stack.enter_context(patch.object(Rule, "send_to_targets", self._send_to_targets(Rule.send_to_targets)))

    def _send_to_targets(self, original: Callable[..., Any]) -> Callable[..., Any]:
        return targets_of_our_own(original, lambda rule, target: self._other_bus(rule, target["Arn"]), self._forward)

    @staticmethod
    def _other_bus(rule: Rule, arn: str) -> bool:
        parts = arn.split(":")
        return (
            len(parts) == 6
            and parts[2] == "events"
            and parts[5].startswith("event-bus/")
            and (parts[4], parts[3]) != (rule.account_id, rule.region_name)
        )

    def _forward(self, rule: Rule, target: dict[str, Any], event: dict[str, Any]) -> None:
        """Put the event, as it is, on the target bus: its rules see the sender's account and region."""
        arn = target["Arn"]
        _, _, _, region, account, resource = arn.split(":")
        backend = events_backends[account][region]
        bus = backend.event_buses.get(resource.removeprefix("event-bus/"))
        sender = target.get("RoleArn") or f"arn:aws:iam::{rule.account_id}:root"
        caller = (
            f"arn:aws:sts::{rule.account_id}:assumed-role/{sender.rsplit('/', 1)[-1]}/events"
            if ":role/" in sender
            else sender
        )
        # In the rule's own account the target's role decides (the sandbox does not evaluate its
        # policy); another account's bus must grant the sender in its resource policy.
        same_account = account == rule.account_id
        if bus is None or (not same_account and not grants(bus.policy, caller, "events:PutEvents", arn)):
            message = f"rule {rule.arn} could not put an event on {arn}: " + (
                "no such bus" if bus is None else denial(caller, "events:PutEvents", arn)
            )
            LOG.warning("%s", message)
            self.forward_errors.append(message)
            return
        for receiving in list(bus.rules.values()):
            receiving.send_to_targets(cast(Any, copy.deepcopy(event)))

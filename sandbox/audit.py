"""Which AWS API calls each Lambda makes, for checking them against its IAM policy.

moto does not enforce IAM, so a missing permission would only show on AWS. The Lambdas run
in worker processes and reach the emulator over HTTP, each execution environment with its
own credentials for its function's role, so the emulator knows who called: every request is
named (service and operation, read from the request as botocore's service models describe
it) and recorded against the function whose credentials signed it. Tests compare the
recorded actions with the policies template.yaml gives each function.
"""

from __future__ import annotations

import copy
import re
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote

from botocore.loaders import Loader
from botocore.model import ServiceModel

# S3 operations whose IAM action is not s3:<Operation> (Service Authorization Reference).
S3_ACTIONS = {
    "HeadObject": ["s3:GetObject"],
    "HeadBucket": ["s3:ListBucket"],
    "ListObjectsV2": ["s3:ListBucket"],
    "ListObjects": ["s3:ListBucket"],
    "CopyObject": ["s3:GetObject", "s3:PutObject"],
    "UploadPartCopy": ["s3:GetObject", "s3:PutObject"],
    "UploadPart": ["s3:PutObject"],
    "CreateMultipartUpload": ["s3:PutObject"],
    "CompleteMultipartUpload": ["s3:PutObject"],
    "AbortMultipartUpload": ["s3:AbortMultipartUpload"],
    "ListParts": ["s3:ListMultipartUploadParts"],
    "ListMultipartUploads": ["s3:ListBucketMultipartUploads"],
    "PutBucketEncryption": ["s3:PutEncryptionConfiguration"],
    "GetBucketEncryption": ["s3:GetEncryptionConfiguration"],
    "PutPublicAccessBlock": ["s3:PutBucketPublicAccessBlock"],
    "PutBucketLifecycleConfiguration": ["s3:PutLifecycleConfiguration"],
    "GetBucketLifecycleConfiguration": ["s3:GetLifecycleConfiguration"],
    "GetBucketTagging": ["s3:GetBucketTagging"],
    "GetObjectAttributes": ["s3:GetObject", "s3:GetObjectAttributes"],
}
# Calls that need more than their own action, as the pipeline makes them: it tags what it
# creates, and a model package or algorithm with a validation profile passes the validation role.
EXTRA_ACTIONS = {
    "ecr:CreateRepository": ["ecr:TagResource"],
    "sagemaker:CreateModelPackage": ["sagemaker:AddTags", "iam:PassRole"],
    "sagemaker:CreateAlgorithm": ["sagemaker:AddTags", "iam:PassRole"],
    "s3:CreateBucket": [],
}
# Calls that need no permission.
UNAUTHORISED = frozenset({"sts:GetCallerIdentity"})
# The IAM prefix where it differs from the signing name.
IAM_PREFIX = {"monitoring": "cloudwatch"}
# Services the pipeline's functions call, by signing name -> botocore service name.
SERVICES = {
    "s3": "s3",
    "ecr": "ecr",
    "sagemaker": "sagemaker",
    "sts": "sts",
    "dynamodb": "dynamodb",
    "sns": "sns",
    "sqs": "sqs",
    "events": "events",
    "states": "stepfunctions",
    "monitoring": "cloudwatch",
    "lambda": "lambda",
    "logs": "logs",
    "iam": "iam",
    "cloudformation": "cloudformation",
    # Marketplace's metering and entitlement APIs sign as "aws-marketplace" too; the pipeline calls
    # only the Catalog API (IAM actions aws-marketplace:StartChangeSet, …).
    "aws-marketplace": "marketplace-catalog",
}


def iam_actions(service: str, operation: str) -> list[str]:
    """The IAM actions an API call needs (the common rule plus S3's exceptions)."""
    if service == "s3" and operation in S3_ACTIONS:
        return S3_ACTIONS[operation]
    if (service, operation) == ("lambda", "Invoke"):
        return ["lambda:InvokeFunction"]
    action = f"{IAM_PREFIX.get(service, service)}:{operation}"
    return [] if action in UNAUTHORISED else [action, *EXTRA_ACTIONS.get(action, [])]


@dataclass(frozen=True)
class ApiCall:
    """One request the emulator received, named as AWS names it."""

    access_key: str
    service: str  # signing name, e.g. "s3", "states"
    operation: str  # e.g. "CopyObject"
    path: str = field(default="", compare=False)  # a REST request's path, e.g. /BUCKET/KEY

    @property
    def metered_as(self) -> str:
        """The operation its bytes are counted under: an S3 request on the pipeline's own records
        (``mlpublish/`` in its bucket: the resolved release, the OS read) apart from the objects."""
        key = self.path.lstrip("/").partition("/")[2]
        return (
            f"{self.operation} (pipeline record)"
            if self.service == "s3" and key.startswith("mlpublish/")
            else (self.operation)
        )

    @property
    def actions(self) -> list[str]:
        return iam_actions(self.service, self.operation)


_CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/([^/]+)/([^/]+)/")


@dataclass(frozen=True)
class _RestRoute:
    operation: str
    method: str
    path: re.Pattern[str]
    literal_query: frozenset[str]  # keys written into the URI (?encryption, ?uploads)
    required_query: frozenset[str]
    required_headers: frozenset[str]

    def specificity(self) -> int:
        return len(self.literal_query) * 10 + len(self.required_query) + len(self.required_headers) * 2


@cache
def _service_model(service_name: str) -> ServiceModel:
    """The service's model as botocore ships it: from a loader of our own, since a client's
    customisations edit the loaded model in place (S3 clients strip ``/{Bucket}`` from paths)."""
    return ServiceModel(copy.deepcopy(Loader().load_service_model(service_name, "service-2")), service_name)


@cache
def _rest_routes(service_name: str) -> list[_RestRoute]:
    model = _service_model(service_name)
    routes = []
    for name in model.operation_names:
        operation = model.operation_model(name)
        if operation.deprecated:  # e.g. PutBucketLifecycle, which shares its route with its successor
            continue
        uri, _, query = operation.http["requestUri"].partition("?")
        pattern = re.sub(r"\\\{[^}]+\\\+\\\}", ".+", re.escape(uri))
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)
        literal = frozenset(part.partition("=")[0] for part in query.split("&") if part)
        required_query: set[str] = set()
        required_headers: set[str] = set()
        shape = operation.input_shape
        if shape is not None:
            for member in shape.required_members:
                serialization = shape.members[member].serialization
                if serialization.get("location") == "querystring":
                    required_query.add(serialization["name"])
                elif serialization.get("location") == "header":
                    required_headers.add(serialization["name"].lower())
        routes.append(
            _RestRoute(
                name,
                operation.http["method"],
                re.compile(pattern.rstrip("/") + "/?$"),
                literal,
                frozenset(required_query),
                frozenset(required_headers),
            )
        )
    return routes


@cache
def _protocol(service_name: str) -> str:
    return str(_service_model(service_name).protocol)


def protocol_of(signing_name: str) -> str:
    """The wire protocol of a service named by its signing name (json, query, rest-xml, ...)."""
    return _protocol(SERVICES[signing_name])


def name_request(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> ApiCall | None:
    """The signed AWS API call an HTTP request is, or None (unsigned, or a service not known here)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    match = _CREDENTIAL.search(lowered.get("authorization", ""))
    if not match:
        return None
    access_key, _region, signing_name = match.groups()
    service_name = SERVICES.get(signing_name)
    if service_name is None:
        return None
    target = lowered.get("x-amz-target")
    if target:
        return ApiCall(access_key, signing_name, target.rpartition(".")[2])
    if "/operation/" in path:  # smithy RPC v2 (CloudWatch in newer SDKs)
        return ApiCall(access_key, signing_name, path.rstrip("/").rpartition("/")[2])
    protocol = _protocol(service_name)
    if protocol in {"query", "ec2"}:
        params = parse_qs(query) | parse_qs(body.decode("utf-8", "replace"))
        action = params.get("Action", [""])[0]
        return ApiCall(access_key, signing_name, action) if action else None
    present_query = set(parse_qs(query, keep_blank_values=True))
    present_headers = set(lowered)
    decoded_path = unquote(path.partition("?")[0])  # the server's RAW_URI carries the query too
    candidates = [
        route
        for route in _rest_routes(service_name)
        if route.method == method
        and route.path.match(decoded_path)
        and route.literal_query <= present_query
        and route.required_query <= present_query
        and route.required_headers <= present_headers
    ]
    if not candidates:
        return ApiCall(access_key, signing_name, f"{method} {path}")
    return ApiCall(access_key, signing_name, max(candidates, key=_RestRoute.specificity).operation, path=decoded_path)


class ApiAudit:
    """Records ``principal -> IAM actions`` for the requests of known access keys."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._principals: dict[str, str] = {}  # access key -> principal (a function name)
        self.actions: dict[str, set[str]] = defaultdict(set)
        self.calls: dict[str, int] = defaultdict(int)
        self.operations: set[tuple[str, str]] = set()  # (service, operation) the stack called
        # Per (principal, operation): requests, and the bytes of their bodies and their answers'.
        self.requests: dict[tuple[str, str], int] = defaultdict(int)
        self.bytes_in: dict[tuple[str, str], int] = defaultdict(int)
        self.bytes_out: dict[tuple[str, str], int] = defaultdict(int)

    def register(self, access_key: str, principal: str) -> None:
        with self._lock:
            self._principals[access_key] = principal

    def principal(self, access_key: str) -> str | None:
        with self._lock:
            return self._principals.get(access_key)

    def record(self, call: ApiCall) -> None:
        principal = self.principal(call.access_key)
        if principal is None:
            return
        with self._lock:
            self.actions[principal].update(call.actions)
            self.calls[principal] += 1
            self.operations.add((call.service, call.operation))
            self.requests[principal, call.operation] += 1

    def meter(self, call: ApiCall, received: int, sent: int) -> None:
        """Server meter: the bytes a principal sent (request body) and got back (response body)."""
        principal = self.principal(call.access_key)
        if principal is None:
            return
        with self._lock:
            self.bytes_in[principal, call.metered_as] += received
            self.bytes_out[principal, call.metered_as] += sent

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {name: sorted(actions) for name, actions in self.actions.items()}

"""Which AWS API calls each Lambda makes, for checking them against its IAM policy.

moto does not enforce IAM, so a missing permission would only show on AWS. The sandbox
records every call a handler makes (a botocore ``before-call`` hook on every client) and
tests compare them with the policies template.yaml gives each function.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import ExitStack
from typing import Any

from botocore import handlers

from sandbox.ext_lambda import InProcessLambda
from sandbox.extension import Extension

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
    "PutBucketEncryption": ["s3:PutEncryptionConfiguration"],
    "PutPublicAccessBlock": ["s3:PutBucketPublicAccessBlock"],
    "PutBucketLifecycleConfiguration": ["s3:PutLifecycleConfiguration"],
    "GetBucketTagging": ["s3:GetBucketTagging"],
}
# Calls that need more than their own action, as the pipeline makes them: it tags what it
# creates, and a model package with a validation profile passes the validation role.
EXTRA_ACTIONS = {
    "ecr:CreateRepository": ["ecr:TagResource"],
    "sagemaker:CreateModelPackage": ["sagemaker:AddTags", "iam:PassRole"],
    "s3:CreateBucket": [],
}
# Calls that need no permission.
UNAUTHORISED = frozenset({"sts:GetCallerIdentity"})


def iam_actions(service: str, operation: str) -> list[str]:
    """The IAM actions an API call needs (the common rule plus S3's exceptions)."""
    if service == "s3" and operation in S3_ACTIONS:
        return S3_ACTIONS[operation]
    action = f"{service}:{operation}"
    return [] if action in UNAUTHORISED else [action, *EXTRA_ACTIONS.get(action, [])]


class ApiAudit(Extension):
    """Records ``function name -> IAM actions`` for the handlers run by ``lambdas``."""

    def __init__(self, lambdas: InProcessLambda) -> None:
        self.lambdas = lambdas
        self.actions: dict[str, set[str]] = defaultdict(set)

    def _patch(self, stack: ExitStack) -> None:
        entry = ("before-call", self._record)
        handlers.BUILTIN_HANDLERS.append(entry)
        stack.callback(handlers.BUILTIN_HANDLERS.remove, entry)

    def _record(self, model: Any, **_: Any) -> None:
        function = self.lambdas.running_function()
        if function is not None:
            service = model.service_model.signing_name
            self.actions[function].update(iam_actions(service, model.name))

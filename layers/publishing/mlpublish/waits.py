"""Waits driven by events, with polling as the fallback.

SageMaker validation and a Marketplace change set take minutes to hours. The state machine
waits for each in a ``.waitForTaskToken`` task: the watch function stores the task token in
the stack's table under the resource the AWS events name (the model package or algorithm
ARN; the change set ARN), then looks once (the resource may have ended already). When AWS
announces the end (``SageMaker Model Package State Change``, ``SageMaker Algorithm State
Change``, the Catalog's ``Change Set Succeeded|Failed|Cancelled``), the completing function
finds the token, looks at the resource itself (an event may be a duplicate, may not carry the
status, may be about an intermediate state) and, once it has ended, sends the task its
outcome: the same progress (or the same named error, with every reason) the polling
functions return. A task that hears nothing within its timeout (``FALLBACK_SECONDS``) fails
with States.Timeout and the state machine polls once, then waits again: a lost event only
delays the result.

AWS emits these events in the resource's region: SageMaker's in the publishing region, the
Catalog's in us-east-1. A region other than the stack's gets one rule on its default bus
(``forwarding_rule``) that forwards them to the stack region's default bus, where the stack's
rule queues them for the completing function; the watch function makes it on first use.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from mlpublish.aws import error_code, transient_errors
from mlpublish.errors import PipelineError, TransientAwsError
from mlpublish.listing import CATALOG_REGION, follow_change_set
from mlpublish.sagemaker import check_validation
from mlpublish.state import WAIT_FALLBACK_SECONDS, CheckValidationInput, ListingProgress

#: How long a wait listens for its event before it polls once (the task's TimeoutSeconds).
FALLBACK_SECONDS = WAIT_FALLBACK_SECONDS
#: A stored token outlives any wait (DynamoDB's TTL removes what a crash left behind).
TOKEN_TTL_SECONDS = 2 * 86400

#: The events that end a wait, wherever they are emitted.
WAIT_EVENTS: dict[str, list[str]] = {
    "aws.sagemaker": ["SageMaker Model Package State Change", "SageMaker Algorithm State Change"],
    "aws.marketplacecatalog": ["Change Set Succeeded", "Change Set Failed", "Change Set Cancelled"],
}
EVENT_PATTERN: dict[str, Any] = {
    "source": sorted(WAIT_EVENTS),
    "detail-type": sorted(t for types in WAIT_EVENTS.values() for t in types),
}
#: Status fields of SageMaker's events; an event without one (algorithms: unconfirmed) is looked into.
_UNFINISHED = {"Pending", "InProgress"}


class WaitSettings(BaseModel):
    """The watch and completing functions' environment."""

    model_config = ConfigDict(frozen=True)

    region: str = Field(alias="AWS_REGION", description="The stack's region")
    table: str = Field(alias="WAIT_TABLE", min_length=1)
    forwarding_rule: str = Field(alias="FORWARDING_RULE_NAME", min_length=1)
    forwarding_role_arn: str = Field(alias="FORWARDING_ROLE_ARN", pattern=r"^arn:aws[a-z-]*:iam::")


class Watch(BaseModel):
    """What a waiting task asks for: one of ``validation`` or ``listing``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    validation: CheckValidationInput | None = None
    listing: ListingProgress | None = None

    @property
    def resource(self) -> str:
        """The key its events are found by: the SageMaker ARN, or the change set's ARN (else id)."""
        if self.validation is not None:
            return self.validation.arn
        assert self.listing is not None  # nosec B101  # a Watch names one of the two
        key = self.listing.change_set_arn or self.listing.change_set_id
        if not key:
            raise ValueError("a listing wait needs the change set it waits for")
        return key

    @property
    def region(self) -> str:
        """Where AWS emits its events."""
        if self.validation is not None:
            return self.validation.publishing_region
        return CATALOG_REGION


class Outcome(BaseModel):
    """A wait that ended: the task's output, or its error and cause (as a Lambda error reads)."""

    model_config = ConfigDict(frozen=True)

    output: dict[str, Any] | None = None
    error: str | None = None
    cause: str | None = None


def look(watch: Watch, clients: Any) -> Outcome | None:
    """Look at the resource once: its outcome when it ended, else None.

    ``clients(service, region)`` gives a boto3 client."""
    try:
        if watch.validation is not None:
            check = watch.validation
            progress = check_validation(
                clients("sagemaker", check.publishing_region),
                check.arn,
                attempt=check.attempt,
                elapsed_seconds=check.elapsed_seconds,
                timeout_minutes=check.timeout_minutes,
            )
            return Outcome(output=progress.model_dump(mode="json")) if progress.status == "Completed" else None
        assert watch.listing is not None  # nosec B101
        listing = follow_change_set(clients("marketplace-catalog", watch.region), watch.listing)
        return Outcome(output=listing.model_dump(mode="json")) if listing.status == "SUCCEEDED" else None
    except TransientAwsError:
        raise  # the caller's retries (the task's Retry, the queue's redelivery) try again
    except PipelineError as failure:
        name = type(failure).__name__
        return Outcome(error=name, cause=json.dumps({"errorMessage": str(failure), "errorType": name}))


def store(dynamodb: Any, table: str, token: str, watch: Watch, *, now: float | None = None) -> None:
    """Keep the task token under the resource its events name (a later wait replaces it)."""
    expires = int((now if now is not None else time.time()) + TOKEN_TTL_SECONDS)
    item = {
        "resource": {"S": watch.resource},
        "token": {"S": token},
        "watch": {"S": watch.model_dump_json(exclude_none=True)},
        "expires": {"N": str(expires)},
    }
    with transient_errors(f"storing the wait for {watch.resource}"):
        dynamodb.put_item(TableName=table, Item=item)


def finish(sfn: Any, dynamodb: Any, table: str, resource: str, token: str, outcome: Outcome) -> bool:
    """Send the task its outcome and forget the token; False when the task no longer waits
    (it timed out and polled, or a duplicate event ended it already)."""
    sent = True
    with transient_errors(f"ending the wait for {resource}"):
        try:
            if outcome.error is not None:
                sfn.send_task_failure(taskToken=token, error=outcome.error, cause=(outcome.cause or "")[:32768])
            else:
                sfn.send_task_success(taskToken=token, output=json.dumps(outcome.output))
        except ClientError as exc:
            if error_code(exc) not in {"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"}:
                raise
            sent = False
        try:
            dynamodb.delete_item(
                TableName=table,
                Key={"resource": {"S": resource}},
                ConditionExpression="#t = :t",
                ExpressionAttributeNames={"#t": "token"},
                ExpressionAttributeValues={":t": {"S": token}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":  # a newer wait stored its own
                raise
    return sent


def waiting(dynamodb: Any, table: str, resource: str) -> tuple[str, Watch] | None:
    """The token and request of the task waiting for ``resource``, if one is."""
    with transient_errors(f"reading the wait for {resource}"):
        found = dynamodb.get_item(TableName=table, Key={"resource": {"S": resource}}, ConsistentRead=True)
    item = found.get("Item")
    if not item:
        return None
    return item["token"]["S"], Watch.model_validate_json(item["watch"]["S"])


def resources_named(event: Mapping[str, Any]) -> list[str]:
    """The keys an AWS event can be waited on by, most specific first, without repeats."""
    detail = event.get("detail") or {}
    named: Iterable[Any] = [
        *(event.get("resources") or []),
        detail.get("ModelPackageArn"),
        detail.get("AlgorithmArn"),
        detail.get("ChangeSetArn"),
        detail.get("ChangeSetId"),
    ]
    keys: list[str] = []
    for value in named:
        if isinstance(value, str) and value and value not in keys:
            keys.append(value)
    return keys


def unfinished(event: Mapping[str, Any]) -> bool:
    """Whether the event says itself that the resource has not ended (no need to look)."""
    detail = event.get("detail") or {}
    status = detail.get("ModelPackageStatus") or detail.get("AlgorithmStatus")
    return status in _UNFINISHED


def forwarding_rule(events: Any, *, name: str, stack_region: str, account: str, role_arn: str) -> None:
    """Forward the wait events of the client's region to the stack region's default bus (idempotent)."""
    target = f"arn:aws:events:{stack_region}:{account}:event-bus/default"
    if len(name) > 64:  # EventBridge's limit; the stack name makes it long
        name = name[:55] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    with transient_errors(f"forwarding wait events to {stack_region}"):
        events.put_rule(
            Name=name,
            EventPattern=json.dumps(EVENT_PATTERN),
            State="ENABLED",
            Description=f"mlpublish: SageMaker validation and Marketplace change set events, to {stack_region}",
        )
        events.put_targets(Rule=name, Targets=[{"Id": "stack-region", "Arn": target, "RoleArn": role_arn}])

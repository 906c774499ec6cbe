"""AWS clients, made on first use from the container's one boto3 Session, and SDK error translation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from mlpublish.errors import TransientAwsError

# Adaptive retries absorb throttling inside one invocation; what is left surfaces as
# TransientAwsError, which the state machine retries with backoff.
_CONFIG = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=10, read_timeout=60)

# What X-Ray traces in the functions: AWS calls (botocore) and the registries' blob URLs (urllib3
# over http.client). Tracer() alone would patch every library X-Ray supports, importing sqlite3
# and looking for a dozen database drivers at every cold start.
TRACED_MODULES = ("botocore", "httplib")

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServerException",
        "RequestTimeout",
    }
)


# A Session is not thread-safe (its clients are): clients are made one at a time.
_MAKING_CLIENTS = threading.Lock()


@cache
def session() -> boto3.session.Session:
    """The container's one Session: its clients share the credentials it resolves and the SDK
    models and endpoints it has parsed, so a second client costs a fraction of the first."""
    return boto3.session.Session()


@cache
def client(service: str, region: str | None = None, *, max_attempts: int = 8) -> Any:
    """One client per (service, region) for the life of the container, made on first use.
    ``max_attempts``: fewer where something outside retries anyway (an SQS redelivery), so a
    call fails fast."""
    config = _CONFIG.merge(Config(retries={"max_attempts": max_attempts, "mode": "adaptive"}))
    with _MAKING_CLIENTS:
        return session().client(service, region_name=region, config=config)


def forget_clients() -> None:
    """Drop the Session, its clients and the account: the next call starts as a new container
    does (tests, and the sandbox between stacks, whose credentials differ)."""
    for cached in (session, client, account_id):
        cached.cache_clear()


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in TRANSIENT_CODES or int(status) >= 500
    # Connection resets and timeouts are worth retrying; parameter errors are bugs.
    return isinstance(exc, (BotoConnectionError, HTTPClientError))


@contextmanager
def transient_errors(action: str) -> Iterator[None]:
    """Re-raise throttling/5xx/connection errors as TransientAwsError (retried by ASL)."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        if is_transient(exc):
            raise TransientAwsError(f"{action}: AWS is throttling or unavailable ({exc}); retrying") from exc
        raise


@cache
def account_id(region: str | None = None) -> str:
    """The account the functions run in: the seller account that must own every image."""
    with transient_errors("reading the caller identity"):
        return str(client("sts", region).get_caller_identity()["Account"])

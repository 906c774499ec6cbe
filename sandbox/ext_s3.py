"""S3 as S3 behaves for pinned copies and TLS-only bucket policies, where moto 5.2.5 does not.

Copies: moto 5.2.5 checks only ``x-amz-copy-source-if-none-match`` on CopyObject and no condition at
all on UploadPartCopy. S3 answers ``412 PreconditionFailed`` on both when
``x-amz-copy-source-if-match`` names another ETag than the source's, or when the source was
modified after ``x-amz-copy-source-if-unmodified-since`` (unless if-match is given and
holds, which S3 lets win). The pipeline pins every artifact by its ETag at ResolveRelease and
copies with ``CopySourceIfMatch``, so without this a source overwritten mid-release would be
published silently in the sandbox.

Bucket policies: moto 5.2.5 evaluates a bucket's policy on object requests but takes a
statement whose Condition does not hold for an explicit deny, and knows no request context.
A TLS-only policy (Deny where ``aws:SecureTransport`` is false, which the pipeline puts on
its publishing buckets) would therefore deny every request. Every caller here reaches moto
as an SDK reaches AWS over HTTPS: in-process through https URLs, or over the loopback
endpoint that stands in for AWS's TLS endpoints. So a statement conditioned on
``aws:SecureTransport`` applies exactly when its condition accepts ``true``; statements with
other conditions are left to moto as before.

Bandwidth (``bandwidth_mib_s``, ``sandbox run --bandwidth-mib-s``): moto copies an object
in memory at once, where S3 takes time in proportion to the bytes. With a cap, each CopyObject
and UploadPartCopy takes its bytes (the copy-source range, else the whole source) divided by the
cap before it lands, so a large artifact's copy spans several Lambda invocations as it would on
AWS. The cap is per request (S3 copies requests side by side), in real seconds, since Lambda
timeouts are real seconds too.

Part copies: moto 5.2.5's UploadPartCopy reads the whole source object (every byte, into
memory) for each part and then slices the range, so the parts of a 1 GiB artifact read 16 GiB
and hold a whole copy of the object per concurrent request. Here a part copy reads only its
range, under the source key's lock, as S3 does.

All wrap moto's S3 code that serves in-process boto3 (``mock_aws``) and moto's server (the
Lambda workers' endpoint) alike.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any
from unittest.mock import patch
from urllib.parse import parse_qs, unquote, urlparse

from moto.core.utils import str_to_rfc_1123_datetime
from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.exceptions import PreconditionFailed
from moto.s3.models import FakeBucket, FakeKey, S3Backend
from moto.s3.responses import S3Response

from sandbox.extension import Extension

IF_MATCH = "x-amz-copy-source-if-match"
IF_UNMODIFIED_SINCE = "x-amz-copy-source-if-unmodified-since"
SECURE_TRANSPORT = "aws:securetransport"
COPY_SOURCE_RANGE = "x-amz-copy-source-range"
_RANGE = re.compile(r"bytes=(\d+)-(\d+)")
MiB = 1024 * 1024


def _copy_source(response: S3Response) -> Any:
    """The source object a copy request names (None when missing: moto answers NoSuchKey)."""
    copy_source = response.headers.get("x-amz-copy-source")
    if isinstance(copy_source, bytes):
        copy_source = copy_source.decode("utf-8")
    parsed = urlparse(copy_source or "")
    bucket, _, key = unquote(parsed.path).lstrip("/").partition("/")
    version_id = parse_qs(parsed.query).get("versionId", [None])[0]
    return response.backend.get_object(bucket, key, version_id=version_id)


def copied_bytes(response: S3Response) -> int:
    """Bytes a copy request moves: its copy-source range, else the whole source."""
    match = _RANGE.fullmatch(str(response.headers.get(COPY_SOURCE_RANGE) or "").strip())
    if match:
        return int(match.group(2)) - int(match.group(1)) + 1
    source = _copy_source(response)
    return int(source.size) if source is not None else 0


def _check_copy_source(response: S3Response) -> None:
    """Raise PreconditionFailed when the request's copy-source conditions do not hold."""
    if_match = response.headers.get(IF_MATCH)
    if_unmodified_since = response.headers.get(IF_UNMODIFIED_SINCE)
    if not if_match and not if_unmodified_since:
        return
    source = _copy_source(response)
    if source is None:
        return  # moto answers NoSuchKey itself
    if if_match:
        if if_match.strip() != "*" and if_match.strip().strip('"') != source.etag.strip('"'):
            raise PreconditionFailed(failed_condition=IF_MATCH)
        return  # a matching if-match wins over if-unmodified-since, as in S3
    if source.last_modified.replace(microsecond=0) > str_to_rfc_1123_datetime(if_unmodified_since):
        raise PreconditionFailed(failed_condition=IF_UNMODIFIED_SINCE)


def _conditional(handler: Callable[[S3Response], Any], bytes_per_second: float | None) -> Callable[[S3Response], Any]:
    def checked(self: S3Response) -> Any:
        _check_copy_source(self)
        if bytes_per_second:
            time.sleep(copied_bytes(self) / bytes_per_second)
        return handler(self)

    return checked


def _over_tls(statement: dict[str, Any]) -> dict[str, Any] | None:
    """The statement as it applies to a request over TLS: None when its aws:SecureTransport
    condition excludes such a request, else without that condition (moto cannot evaluate it)."""
    condition = statement.get("Condition")
    if not isinstance(condition, dict):
        return statement
    remaining: dict[str, Any] = {}
    for operator, values in condition.items():
        if operator.lower() not in {"bool", "boolifexists"}:
            remaining[operator] = values
            continue
        kept = {}
        for key, expected in values.items():
            accepted = {str(value).lower() for value in (expected if isinstance(expected, list) else [expected])}
            if key.lower() != SECURE_TRANSPORT:
                kept[key] = expected
            elif "true" not in accepted:
                return None
        if kept:
            remaining[operator] = kept
    applied = {name: value for name, value in statement.items() if name != "Condition"}
    return {**applied, "Condition": remaining} if remaining else applied


def _bucket_permission(bucket: FakeBucket, action: str, resource: str) -> Any:
    if bucket.policy is None:
        return PermissionResult.NEUTRAL
    document = json.loads(bucket.policy.decode())
    statements = document.get("Statement", [])
    applicable = [
        applied
        for statement in (statements if isinstance(statements, list) else [statements])
        if (applied := _over_tls(statement)) is not None
    ]
    if not applicable:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps({**document, "Statement": applicable})).is_action_permitted(action, resource)


def _upload_part_copy(
    self: S3Backend,
    dest_bucket_name: str,
    multipart_id: str,
    part_id: int,
    src_bucket_name: str,
    src_key_name: str,
    src_version_id: str | None,
    start_byte: int | None,
    end_byte: int | None,
) -> FakeKey:
    """moto's upload_part_copy, reading only the copy-source range of the source object."""
    multipart = self.get_bucket(dest_bucket_name).multiparts[multipart_id]
    source = self.get_object(src_bucket_name, src_key_name, version_id=src_version_id)
    assert source is not None  # the response checked it exists
    start = start_byte if start_byte is not None else 0
    end = end_byte if end_byte is not None else source.size - 1
    with source.lock:
        source._value_buffer.seek(start)
        value = source._value_buffer.read(max(0, end - start + 1))
    return multipart.set_part(part_id, value)


class S3Extension(Extension):
    """Copies honour the copy-source conditions (412 as in S3) and take time at
    ``bandwidth_mib_s`` (None: at once); bucket policies see TLS requests.

    Install with ``undo = ext.install()`` (or ``with ext:``); ``undo()`` restores moto.
    """

    def __init__(self, bandwidth_mib_s: float | None = None) -> None:
        if bandwidth_mib_s is not None and bandwidth_mib_s <= 0:
            raise ValueError("the bandwidth must be more than 0 MiB/s")
        self.bandwidth_mib_s = bandwidth_mib_s

    def _patch(self, stack: ExitStack) -> None:
        """Wrap the two response handlers that copy from a source object; evaluate bucket policies;
        copy parts by their range."""
        for name in ("copy_object", "upload_part_copy"):
            rate = self.bandwidth_mib_s * MiB if self.bandwidth_mib_s else None
            stack.enter_context(patch.object(S3Response, name, _conditional(getattr(S3Response, name), rate)))
        stack.enter_context(patch.object(FakeBucket, "get_permission", _bucket_permission))
        stack.enter_context(patch.object(S3Backend, "upload_part_copy", _upload_part_copy))

"""Faults of AWS itself, injected at the emulator's endpoint: throttling, server errors and
lost responses on any operation the pipeline calls.

``throttle:SERVICE:OPERATION[:times=N]`` answers the next N calls of that operation with the
service's throttling error, ``5xx:...`` with its internal error, and ``lost:...`` lets the
call take effect and then fails its answer (the caller cannot tell whether it happened).
SERVICE is the signing name (s3, ecr, sagemaker, states, sns, events, sqs, sts, lambda);
the calls counted are those of the stack's functions and state machine, never the sandbox's
own. The SDK retries throttling and 5xx by itself (the pipeline's clients try 8 times), so
``times`` beyond that reaches the pipeline's own retries and failure handling.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.audit import SERVICES, ApiCall, protocol_of
from sandbox.server import Intercept

KINDS = ("throttle", "5xx", "lost")


@dataclass
class ApiFault:
    kind: str
    service: str
    operation: str
    times: int = 1
    fired: int = field(default=0, compare=False)

    @classmethod
    def parse(cls, text: str) -> ApiFault:
        parts = text.split(":")
        if len(parts) not in (3, 4) or parts[0] not in KINDS or parts[1] not in SERVICES or not parts[2]:
            raise ValueError(
                f"--fault {text}: use {'|'.join(KINDS)}:SERVICE:OPERATION[:times=N], SERVICE one of "
                f"{', '.join(sorted(SERVICES))}, e.g. throttle:s3:CopyObject:times=10"
            )
        times = 1
        if len(parts) == 4:
            name, _, value = parts[3].partition("=")
            if name != "times" or not value.isdigit() or int(value) < 1:
                raise ValueError(f"--fault {text}: the option is times=N (N >= 1)")
            times = int(value)
        return cls(parts[0], parts[1], parts[2], times)

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.service}:{self.operation}:times={self.times}"


class ApiFaults:
    """Server observer: fault the calls that match, for callers ``is_ours`` accepts."""

    def __init__(self, faults: list[ApiFault], is_ours: Callable[[str], bool]) -> None:
        self.faults, self.is_ours = faults, is_ours
        self._lock = threading.Lock()

    def observe(self, call: ApiCall) -> None:
        with self._lock:
            fault = next(
                (
                    fault
                    for fault in self.faults
                    if (fault.service, fault.operation) == (call.service, call.operation) and fault.fired < fault.times
                ),
                None,
            )
            if fault is None or not self.is_ours(call.access_key):
                return
            fault.fired += 1
        raise error_for(fault.kind, call.service)

    def recover(self) -> None:
        """AWS is well again: no fault fires any more."""
        with self._lock:
            for fault in self.faults:
                fault.times = fault.fired

    def report(self) -> list[dict[str, object]]:
        with self._lock:
            return [{"fault": fault.label, "fired": fault.fired} for fault in self.faults]


def error_for(kind: str, service: str) -> Intercept:
    """The answer AWS gives for a fault of this kind, in the service's protocol."""
    throttled = kind == "throttle"
    protocol = protocol_of(service)
    if protocol == "rest-xml":  # S3
        code, status = ("SlowDown", "503 Slow Down") if throttled else ("InternalError", "500 Internal Server Error")
        body = f"<Error><Code>{code}</Code><Message>sandbox fault: {kind}</Message></Error>"
        return Intercept(status, body.encode(), "application/xml", after=kind == "lost")
    if protocol in {"query", "ec2"}:
        code = "Throttling" if throttled else "InternalFailure"
        status = "400 Bad Request" if throttled else "500 Internal Server Error"
        body = (
            f"<ErrorResponse><Error><Type>{'Sender' if throttled else 'Receiver'}</Type><Code>{code}</Code>"
            f"<Message>sandbox fault: {kind}</Message></Error><RequestId>sandbox</RequestId></ErrorResponse>"
        )
        return Intercept(status, body.encode(), "text/xml", after=kind == "lost")
    code = "ThrottlingException" if throttled else "InternalServerException"
    if service == "lambda":
        code = "TooManyRequestsException" if throttled else "ServiceException"
    status = (
        ("429 Too Many Requests" if service == "lambda" else "400 Bad Request")
        if throttled
        else "500 Internal Server Error"
    )
    body = json.dumps({"__type": code, "message": f"sandbox fault: {kind}"})
    return Intercept(status, body.encode(), "application/x-amz-json-1.1", after=kind == "lost")

"""In-process Lambda: moto's Lambda backend runs the project's real handlers without Docker.

moto 5.2.5 runs function code only in Docker, in
``moto.awslambda.models.LambdaFunction._invoke_lambda(self, event) -> (payload, errored, logs)``.
Every way in reaches that method: the Invoke API (boto3 and Step Functions Tasks, both
``arn:aws:states:::lambda:invoke`` and a plain function ARN, go through moto's Lambda
Invoke handler) and the SQS event source mapping (``send_sqs_batch`` ->
``LambdaFunction.invoke``). This extension replaces it with a call of the local handler
(``functions/<step>/app.py``).

Which local code belongs to which function: moto keeps the name, handler, ``Code`` dict,
environment and region on ``LambdaFunction``, but CloudFormation-created functions get
generated names (``<stack>-<LogicalId>-<random>``) and no tags. ``CodeRegistry``
therefore resolves code by, in order: an exact function name, a stack + logical id
(the generated-name prefix), or the ``Code.S3Key`` read as a path below a code root (a
template whose ``CodeUri: functions/trigger/`` was rewritten to
``s3://<bucket>/functions/trigger/`` before translation keeps that marker).

Environment: handlers read configuration at cold start and, through boto3, at call time.
``os.environ`` is process-wide, so in the default ``serialize=True`` mode one RLock
serialises every in-process invocation (cold-start import and call) with the function's
environment applied and restored around it; nested invocations in the same thread (a
handler that sends to an SQS queue with an event source mapping) re-enter the lock. A
handler that blocks waiting for another thread's Lambda would deadlock: none in this
project does. With ``serialize=False`` invocations run concurrently (Map iterations in
parallel threads) and the environment is applied only during the cold-start import, so
handlers must read configuration and create clients at cold start.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest.mock import patch

from moto.awslambda.models import LambdaFunction

from sandbox.extension import Extension

#: Set for every in-process invocation: X-Ray is not emulated.
SANDBOX_RUNTIME_ENV: Mapping[str, str] = {"POWERTOOLS_TRACE_DISABLED": "true"}


@dataclass(frozen=True)
class Invocation:
    """One in-process invocation, for statistics."""

    function_name: str
    request_id: str
    started_at: float
    duration_seconds: float
    errored: bool
    error_type: str | None
    exceeded_timeout: bool


@dataclass(frozen=True)
class FunctionStats:
    """Aggregated invocations of one function."""

    invocations: int
    errors: int
    total_seconds: float
    max_seconds: float


class LambdaContext:
    """The Python runtime's context object, as far as handlers and Powertools use it."""

    def __init__(self, function: LambdaFunction, request_id: str) -> None:
        self.function_name: str = function.function_name
        self.function_version: str = str(function.version)
        self.invoked_function_arn: str = function.function_arn
        # The real runtime reads AWS_LAMBDA_FUNCTION_MEMORY_SIZE, hence a string.
        self.memory_limit_in_mb: str = str(function.memory_size)
        self.aws_request_id = request_id
        self.log_group_name: str = function.logs_group_name
        self.log_stream_name = f"sandbox/[{function.version}]{request_id.replace('-', '')}"
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline = time.monotonic() + float(function.timeout)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left of the function's configured timeout (real time)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class CodeRegistry:
    """Maps moto Lambda functions to local code directories (``functions/<step>/``)."""

    def __init__(self) -> None:
        self._by_name: dict[str, Path] = {}
        self._by_prefix: dict[str, Path] = {}
        self._roots: list[Path] = []

    def register(self, function_name: str, code_dir: Path) -> None:
        """Code for the function with exactly this name."""
        self._by_name[function_name] = Path(code_dir)

    def register_logical_id(self, stack_name: str, logical_id: str, code_dir: Path) -> None:
        """Code for the function CloudFormation named ``<stack>-<logical_id>-<random>``."""
        self._by_prefix[f"{stack_name}-{logical_id}-"] = Path(code_dir)

    def add_code_root(self, root: Path) -> None:
        """Resolve ``Code.S3Key`` (e.g. ``functions/trigger/``) as a directory below ``root``."""
        self._roots.append(Path(root))

    def resolve(self, function: LambdaFunction) -> Path | None:
        """The code directory for ``function``, or None when nothing matches."""
        name = function.function_name
        if name in self._by_name:
            return self._by_name[name]
        for prefix, code_dir in self._by_prefix.items():
            if name.startswith(prefix):
                return code_dir
        return self._resolve_code_key(function)

    def _resolve_code_key(self, function: LambdaFunction) -> Path | None:
        key = str(function.code.get("S3Key") or "").strip("/")
        key = key.removesuffix(".zip")
        if not key:
            return None
        for root in self._roots:
            candidate = root / key
            if candidate.is_dir():
                return candidate
        return None


class _HandlerError(Exception):
    """A runtime-level failure (import, missing handler) reported as Lambda reports it."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class InProcessLambda(Extension):
    """Runs moto Lambda functions' handlers in this process.

    Install with ``undo = ext.install()`` (or ``with ext:``); ``undo()`` restores moto and
    forgets the imported handler modules (the next install cold-starts again).
    """

    def __init__(self, registry: CodeRegistry | None = None, *, serialize: bool = True) -> None:
        self.registry = registry or CodeRegistry()
        self.serialize = serialize
        self._lock = threading.RLock()
        self._modules: dict[tuple[str, str, str], ModuleType] = {}
        self._records: list[Invocation] = []
        self._records_lock = threading.Lock()
        self._running: list[tuple[int, str]] = []  # (thread, function) of serialized invocations

    def running_function(self) -> str | None:
        """The function whose handler is running on this thread (or on the worker threads it
        started, e.g. s3transfer's), for attributing AWS calls; None outside invocations.
        Meaningful with ``serialize=True``, where one invocation runs at a time."""
        if not self._running:
            return None
        thread, name = self._running[-1]
        current = threading.current_thread()
        if current.ident == thread or current.name.startswith("ThreadPoolExecutor"):
            return name
        return None

    @property
    def invocations(self) -> list[Invocation]:
        """Every invocation so far, in completion order."""
        with self._records_lock:
            return list(self._records)

    def stats(self) -> dict[str, FunctionStats]:
        """Invocations aggregated per function name."""
        result: dict[str, FunctionStats] = {}
        for record in self.invocations:
            prev = result.get(record.function_name, FunctionStats(0, 0, 0.0, 0.0))
            result[record.function_name] = FunctionStats(
                invocations=prev.invocations + 1,
                errors=prev.errors + int(record.errored),
                total_seconds=prev.total_seconds + record.duration_seconds,
                max_seconds=max(prev.max_seconds, record.duration_seconds),
            )
        return result

    def _patch(self, stack: ExitStack) -> None:
        """Replace ``LambdaFunction._invoke_lambda``; undoing also forgets the handler modules."""
        stack.enter_context(patch.object(LambdaFunction, "_invoke_lambda", self._invoke_patch()))
        stack.callback(self._forget_modules)

    def invoke(self, function: LambdaFunction, event: Any) -> tuple[str, bool, str]:
        """Run ``function``'s handler on ``event``; moto's ``_invoke_lambda`` contract."""
        request_id = str(uuid.uuid4())
        started = time.time()
        t0 = time.perf_counter()
        payload, error_type = self._run(function, _as_event(event), request_id)
        duration = time.perf_counter() - t0
        self._record(
            Invocation(
                function_name=function.function_name,
                request_id=request_id,
                started_at=started,
                duration_seconds=duration,
                errored=error_type is not None,
                error_type=error_type,
                exceeded_timeout=duration > float(function.timeout),
            )
        )
        return payload, error_type is not None, ""

    def _invoke_patch(self) -> Callable[[LambdaFunction, Any], tuple[str, bool, str]]:
        extension = self

        def _invoke_lambda(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            return extension.invoke(function, event)

        return _invoke_lambda

    def _run(self, function: LambdaFunction, event: Any, request_id: str) -> tuple[str, str | None]:
        """Returns (payload JSON, error type or None)."""
        try:
            if self.serialize:
                with self._lock, _environment(_runtime_env(function)):
                    self._running.append((threading.get_ident(), function.function_name))
                    try:
                        handler = self._handler(function)
                        result = handler(event, LambdaContext(function, request_id))
                    finally:
                        self._running.pop()
            else:
                with self._lock, _environment(_runtime_env(function)):
                    handler = self._handler(function)
                result = handler(event, LambdaContext(function, request_id))
        except _HandlerError as exc:
            return _error_payload(exc.error_type, str(exc), request_id, []), exc.error_type
        except Exception as exc:
            trace = traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])
            return _error_payload(type(exc).__name__, str(exc), request_id, trace), type(exc).__name__
        try:
            return json.dumps(result), None
        except (TypeError, ValueError) as exc:
            message = f"Unable to marshal response: {exc}"
            return _error_payload("Runtime.MarshalError", message, request_id, []), "Runtime.MarshalError"

    def _handler(self, function: LambdaFunction) -> Callable[[Any, LambdaContext], Any]:
        """The handler callable, importing its module on first use (the cold start)."""
        code_dir = self.registry.resolve(function)
        if code_dir is None:
            raise _HandlerError(
                "Sandbox.NoLocalCode",
                f"No local code registered for Lambda function {function.function_name!r} "
                f"(handler {function.handler!r}, code {function.code.get('S3Key')!r}); "
                "register it with CodeRegistry",
            )
        module_path, _, attr = str(function.handler or "app.lambda_handler").rpartition(".")
        key = (function.function_arn, str(code_dir), str(function.code_sha_256))
        module = self._modules.get(key) or self._import(key, code_dir, module_path)
        handler = getattr(module, attr, None)
        if not callable(handler):
            raise _HandlerError("Runtime.HandlerNotFound", f"Handler '{attr}' missing on module '{module_path}'")
        return handler  # type: ignore[no-any-return]

    def _import(self, key: tuple[str, str, str], code_dir: Path, module_path: str) -> ModuleType:
        source = code_dir / (module_path.replace(".", "/") + ".py")
        unique = "sandbox_lambda_" + re.sub(r"\W", "_", f"{key[0]}_{len(self._modules)}")
        spec = importlib.util.spec_from_file_location(unique, source)
        if spec is None or spec.loader is None or not source.is_file():
            raise _HandlerError("Runtime.ImportModuleError", f"Unable to import module '{module_path}': {source}")
        module = importlib.util.module_from_spec(spec)
        # Registered so dataclasses/pydantic can resolve the module; the code dir is on
        # sys.path only while importing, for sibling modules of the handler.
        sys.modules[unique] = module
        sys.path.insert(0, str(code_dir))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[unique]
            raise _HandlerError("Runtime.ImportModuleError", f"Unable to import module '{module_path}': {exc}") from exc
        finally:
            sys.path.remove(str(code_dir))
        self._modules[key] = module
        return module

    def _forget_modules(self) -> None:
        """The next install cold-starts new containers: handler modules are imported again and
        the Powertools loggers they configured (whose handlers hold this run's stdout) reset."""
        for module in self._modules.values():
            sys.modules.pop(module.__name__, None)
        self._modules.clear()
        for item in list(logging.root.manager.loggerDict.values()):
            if isinstance(item, logging.Logger) and hasattr(item, "powertools_handler"):
                item.handlers.clear()
                for attribute in ("init", "powertools_handler", "powertools_buffer_config", "powertools_buffer_cache"):
                    item.__dict__.pop(attribute, None)

    def _record(self, record: Invocation) -> None:
        with self._records_lock:
            self._records.append(record)


def _as_event(event: Any) -> Any:
    """moto passes the parsed JSON body, or the string "{}" for an empty body."""
    if isinstance(event, str | bytes):
        try:
            return json.loads(event)
        except ValueError:
            return event
    return {} if event is None else event


def _runtime_env(function: LambdaFunction) -> dict[str, str]:
    """The variables the Lambda Python runtime sets, plus the function's own."""
    env = {
        "AWS_REGION": function.region,
        "AWS_DEFAULT_REGION": function.region,
        "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": str(function.version),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": function.logs_group_name,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.run_time}",
        "_HANDLER": str(function.handler),
        **SANDBOX_RUNTIME_ENV,
    }
    env.update({str(k): str(v) for k, v in (function.environment_vars or {}).items()})
    return env


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Apply ``values`` to os.environ and restore the previous values afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous


def _error_payload(error_type: str, message: str, request_id: str, trace: list[str]) -> str:
    """The Python runtime's error document; Step Functions reads ``errorType`` as the error name."""
    return json.dumps({"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": trace})

"""Lambda execution environments: moto's Lambda runs each function in worker processes, as
Lambda runs it, instead of in Docker.

moto 5.2.5 runs function code only in Docker, in
``moto.awslambda.models.LambdaFunction._invoke_lambda(self, event) -> (payload, errored, logs)``.
Every way in reaches that method: the Invoke API (Step Functions Tasks included) and the SQS
event source mapping. This extension replaces it with an invocation in an execution
environment of that function:

* a worker process forked from a Python 3.13 zygote (``sandbox.lambda_bootstrap``) that holds
  only the runtime's SDK and the layer (``sandbox.lambda_env``), cold-started with the
  deployed function's Handler, Environment, Timeout and MemorySize, then reused warm;
* credentials of its own for the function's role (an STS session per environment, as Lambda
  gives), and ``AWS_ENDPOINT_URL`` pointing at the emulator's loopback endpoint, so its AWS
  calls are HTTP requests the emulator can attribute to the function;
* Timeout enforced: the environment is killed and the invocation fails ``Sandbox.Timedout``;
  an environment that dies (a crash, or memory over MemorySize, enforced with ``RLIMIT_AS``)
  fails it ``Lambda.Unknown``, the names Step Functions reports;
* invocations run concurrently, each in an environment of its own (up to
  ``concurrency`` at once across all functions, as an account's concurrency limit would).

Which local code belongs to which function comes from the deployed stack (``register``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

from moto.awslambda.models import LambdaFunction
from moto.sts.models import sts_backends

from sandbox import lambda_bootstrap
from sandbox.audit import ApiAudit, ApiCall
from sandbox.extension import Extension
from sandbox.lambda_env import LambdaEnvironment
from sandbox.server import DropRequest
from sandbox.tls import sandbox_tls

#: Libraries every environment imports, loaded once in the zygote (what a snapshot would hold).
PRELOAD = (
    "boto3",
    "botocore.session",
    "botocore.client",
    "pydantic",
    "yaml",
    "aws_lambda_powertools",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
    "aws_lambda_powertools.utilities.typing",
)
#: Lambda's limit on a function's init phase.
INIT_SECONDS = 10.0
#: How long a fault-injected timeout lets the handler run before the deadline "passes".
FAULT_TIMEOUT_AFTER_SECONDS = 1.0


@dataclass(frozen=True)
class Fault:
    """``crash`` kills an environment mid-invocation after ``after`` AWS calls; ``timeout``
    makes one invocation overrun its Timeout. Each fault fires once."""

    kind: str  # "crash" | "timeout"
    function: str  # short name (CopyBlob) or logical id (CopyBlobFunction)
    after: int = 0

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``crash:FUNCTION[:after=N]`` or ``timeout:FUNCTION``."""
        kind, _, rest = text.partition(":")
        function, _, option = rest.partition(":")
        if kind not in {"crash", "timeout"} or not function:
            raise ValueError(f"--fault {text}: use crash:FUNCTION[:after=N] or timeout:FUNCTION")
        after = 0
        if option:
            name, _, value = option.partition("=")
            if kind != "crash" or name != "after" or not value.isdigit():
                raise ValueError(
                    f"--fault {text}: only crash takes an option, after=N (N AWS calls); "
                    "use crash:FUNCTION[:after=N] or timeout:FUNCTION"
                )
            after = int(value)
        return cls(kind, function, after)

    def matches(self, short_name: str) -> bool:
        return self.function in {short_name, f"{short_name}Function"}


@dataclass
class FunctionStats:
    """What one function's environments did, for the run report."""

    invocations: int = 0
    cold_starts: int = 0
    max_concurrent: int = 0
    max_duration_s: float = 0.0
    timeouts: int = 0
    crashes: int = 0
    running: int = 0

    def as_report(self) -> dict[str, Any]:
        return {
            "invocations": self.invocations,
            "cold_starts": self.cold_starts,
            "max_concurrent": self.max_concurrent,
            "max_duration_s": round(self.max_duration_s, 3),
            "timeouts": self.timeouts,
            "crashes": self.crashes,
        }


@dataclass
class _Environment:
    """One execution environment: a worker process and its invocation channel."""

    function_key: str
    short_name: str
    pid: int
    channel: socket.socket
    access_key: str
    init_error: dict[str, Any] | None = None
    calls: int = 0  # AWS calls in the current invocation
    crash_after: int | None = None  # an armed crash fault
    fired: bool = False
    dead: bool = False
    closed: bool = False

    def kill(self) -> None:
        """Stop the worker. Any thread may call it: the channel is shut down, which wakes a
        thread waiting on it with end-of-stream, but closed only by ``close`` (closing an fd
        another thread is polling lets the number be reused under it)."""
        self.dead = True
        if not self.closed:  # once closed, the pid may belong to another process
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.channel.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.kill()
        self.closed = True
        with contextlib.suppress(OSError):
            self.channel.close()


@dataclass
class _Deployed:
    """The template's view of a function: its short name and its code directory."""

    short_name: str
    code_dir: Path


class LambdaWorkers(Extension):
    """Runs moto's Lambda functions in Lambda-like worker processes.

    ``endpoint`` is the emulator's URL the workers call; ``audit`` learns which access key
    is which function. Install with ``with workers:``; leaving kills every environment.
    """

    def __init__(
        self,
        environment: LambdaEnvironment,
        *,
        endpoint: Callable[[], str],
        audit: ApiAudit,
        log_path: Path,
        concurrency: int | None = None,
        faults: list[Fault] | None = None,
    ) -> None:
        self.environment = environment
        self.endpoint = endpoint
        self.audit = audit
        self.log_path = log_path
        self._slots = threading.BoundedSemaphore(concurrency) if concurrency else None
        self._faults = list(faults or [])
        self.fired: list[Fault] = []
        self.last_errors: dict[str, str] = {}  # short name -> the last error a handler reported
        self.init_seconds = INIT_SECONDS
        self._functions: dict[str, _Deployed] = {}  # function name -> code
        self._idle: dict[str, list[_Environment]] = defaultdict(list)
        self._all: list[_Environment] = []
        self._by_key: dict[str, _Environment] = {}
        self._lock = threading.Lock()
        self._spawn_lock = threading.Lock()
        self._stats: dict[str, FunctionStats] = defaultdict(FunctionStats)
        self._zygote: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._log: Any = None
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()

    # ------------------------------------------------------------------ set-up
    def register(self, function_name: str, short_name: str, code_dir: Path) -> None:
        """The deployed function ``function_name`` runs the code in ``code_dir``."""
        self._functions[function_name] = _Deployed(short_name, Path(code_dir))

    def _patch(self, stack: ExitStack) -> None:
        stack.enter_context(patch.object(LambdaFunction, "_invoke_lambda", self._invoke_patch()))
        stack.callback(self._shutdown)
        self._start_zygote()

    def _start_zygote(self) -> None:
        self._log = self.log_path.open("ab", buffering=0)
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [str(self.environment.python), "-I", "-S", lambda_bootstrap.__file__]
        command += ["--control-fd", str(child.fileno())]
        for directory in self.environment.sys_path(self.environment.layer_code_dir)[1:]:
            command += ["--path", directory]
        for module in PRELOAD:
            command += ["--preload", module]
        self._zygote = subprocess.Popen(
            command,
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env={},
            start_new_session=True,  # a Ctrl-C at the terminal is the sandbox's to handle, not the workers'
        )
        child.close()
        self._control = parent
        ready, _ = lambda_bootstrap.receive(parent)
        if ready is None:
            raise RuntimeError(f"the Lambda runtime ({self.environment.python}) did not start; see {self.log_path}")

    def _shutdown(self) -> None:
        with self._lock:
            environments, self._all = self._all, []
            self._idle.clear()
        for environment in environments:
            environment.close()
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._zygote is not None:
            try:
                self._zygote.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._zygote.kill()
                self._zygote.wait()
            self._zygote = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # ----------------------------------------------------------------- reports
    def stats(self) -> dict[str, dict[str, Any]]:
        """Per function short name: invocations, cold starts, max concurrent, max duration,
        timeouts and crashes."""
        with self._lock:
            return {name: stats.as_report() for name, stats in sorted(self._stats.items())}

    def observe(self, call: ApiCall) -> None:
        """Server observer: count an environment's calls and fire an armed crash fault."""
        with self._lock:
            environment = self._by_key.get(call.access_key)
            if environment is None:
                return
            environment.calls += 1
            crash = environment.crash_after is not None and environment.calls > environment.crash_after
        if crash:
            environment.fired = True
            with self._lock:
                self.fired.append(Fault("crash", environment.short_name, environment.crash_after or 0))
            environment.kill()
            raise DropRequest

    # -------------------------------------------------------------- invocation
    def _invoke_patch(self) -> Callable[[LambdaFunction, Any], tuple[str, bool, str]]:
        workers = self

        def _invoke_lambda(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            return workers.invoke(function, event)

        return _invoke_lambda

    def invoke(self, function: LambdaFunction, event: Any) -> tuple[str, bool, str]:
        """Run one invocation in an environment of ``function``; moto's ``_invoke_lambda`` contract."""
        deployed = self._functions.get(function.function_name)
        request_id = str(uuid.uuid4())
        if deployed is None:
            message = f"no code is registered for {function.function_name}"
            return _error_payload("Sandbox.NoLocalCode", message), True, ""
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            with self._slots or contextlib.nullcontext():
                return self._invoke_in_environment(function, deployed, _as_event(event), request_id)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        """Invocations running or waiting for a slot now."""
        with self._in_flight_lock:
            return self._in_flight

    def _invoke_in_environment(
        self, function: LambdaFunction, deployed: _Deployed, event: Any, request_id: str
    ) -> tuple[str, bool, str]:
        name = deployed.short_name
        environment = self._checkout(function, deployed)
        fault = self._take_fault(name)
        with self._lock:
            stats = self._stats[name]
            stats.invocations += 1
            stats.running += 1
            stats.max_concurrent = max(stats.max_concurrent, stats.running)
            environment.calls = 0
            environment.crash_after = fault.after if fault and fault.kind == "crash" else None
        timeout = float(function.timeout)
        started = time.monotonic()
        reply: dict[str, Any] | None
        try:
            if environment.init_error is not None:
                reply = {"payload": environment.init_error, "errored": True}
                if environment.init_error.get("errorType") == "Lambda.Unknown":
                    reply = {"type": "crash", "reason": environment.init_error["errorMessage"]}
                self._discard(environment)
            else:
                wait = FAULT_TIMEOUT_AFTER_SECONDS if fault and fault.kind == "timeout" else timeout
                message = {
                    "request_id": request_id,
                    "event": event,
                    "deadline": time.time() + timeout,
                    "stall": bool(fault and fault.kind == "timeout"),
                }
                reply = self._exchange(environment, message, wait)
        finally:
            elapsed = time.monotonic() - started
            with self._lock:
                stats.running -= 1
                stats.max_duration_s = max(stats.max_duration_s, elapsed)
        if fault is not None and fault.kind == "crash" and not environment.fired:
            self._rearm(fault)  # the invocation made too few calls for it: the next one gets it
        if reply is not None and not environment.dead and self._over_memory(environment, int(function.memory_size)):
            reply = {"type": "crash", "reason": "Runtime.OutOfMemory: memory used exceeded MemorySize"}
        if reply is None and not environment.dead:
            # Still running at its deadline: Lambda stops the environment.
            self._discard(environment)
            with self._lock:
                stats.timeouts += 1
            self._write_log(f"{request_id} Task timed out after {timeout:.2f} seconds\n")
            return _error_payload("Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds"), True, ""
        if reply is None or reply.get("type") == "crash":
            self._discard(environment)
            with self._lock:
                stats.crashes += 1
            why = (reply or {}).get("reason") or "signal: killed"
            text = f"RequestId: {request_id} Error: Runtime exited with error: {why} (Runtime.ExitError)"
            return _error_payload("Lambda.Unknown", text), True, ""
        self._checkin(environment)
        payload = reply["payload"]
        if reply.get("errored"):
            with self._lock:
                self.last_errors[name] = f"{payload.get('errorType')}: {payload.get('errorMessage')}"
            return json.dumps({**payload, "requestId": request_id}), True, ""
        return json.dumps(payload), False, ""

    def _exchange(self, environment: _Environment, message: dict[str, Any], wait: float) -> dict[str, Any] | None:
        """Send the invocation; its reply, or None when the environment died or overran ``wait``."""
        try:
            lambda_bootstrap.send(environment.channel, message)
            environment.channel.settimeout(wait)
            reply, _ = lambda_bootstrap.receive(environment.channel)
        except TimeoutError:
            return None
        except OSError:
            environment.dead = True
            return None
        if reply is None:
            environment.dead = True
        return reply

    def _take_fault(self, short_name: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(short_name):
                    self._faults.remove(fault)
                    if fault.kind == "timeout":
                        self.fired.append(fault)
                    return fault
        return None

    def _rearm(self, fault: Fault) -> None:
        with self._lock:
            self._faults.insert(0, fault)

    @property
    def unfired(self) -> list[Fault]:
        """Faults that found no invocation to fire in (yet)."""
        with self._lock:
            return list(self._faults)

    def _over_memory(self, environment: _Environment, memory_mb: int) -> bool:
        """Lambda stops an environment whose resident memory passed MemorySize; the peak counts,
        however briefly it was reached."""
        try:
            status = Path(f"/proc/{environment.pid}/status").read_text()
        except OSError:
            return False
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) > memory_mb * 1024
        return False

    # ------------------------------------------------------------ environments
    def _checkout(self, function: LambdaFunction, deployed: _Deployed) -> _Environment:
        key = f"{function.function_arn}@{function.code_sha_256}"
        with self._lock:
            idle = self._idle[key]
            while idle:
                environment = idle.pop()
                if not environment.dead:
                    return environment
        return self._cold_start(key, function, deployed)

    def _discard(self, environment: _Environment) -> None:
        environment.close()
        with self._lock:
            self._by_key.pop(environment.access_key, None)
            if environment in self._all:
                self._all.remove(environment)

    def _checkin(self, environment: _Environment) -> None:
        with self._lock:
            if not environment.dead:
                self._idle[environment.function_key].append(environment)

    def _cold_start(self, key: str, function: LambdaFunction, deployed: _Deployed) -> _Environment:
        session = f"{deployed.short_name}-{uuid.uuid4().hex[:12]}"
        role = sts_backends[function.account_id]["aws"].assume_role(
            region_name=function.region,
            role_session_name=session,
            role_arn=function.role,
            policy="",
            duration=43200,
            external_id="",
        )
        spec = {
            "handler": function.handler or "app.lambda_handler",
            "environment": self._runtime_environment(function, deployed, role, session),
            "cwd": str(deployed.code_dir),
            "sys_path": self.environment.sys_path(deployed.code_dir),
            "memory_mb": int(function.memory_size),
            "function": {
                "name": function.function_name,
                "version": str(function.version),
                "arn": function.function_arn,
                "memory_mb": int(function.memory_size),
                "log_group": function.logs_group_name,
                "log_stream": f"sandbox/[{function.version}]{session}",
            },
        }
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        assert self._control is not None, "install the extension first"
        assert self._log is not None, "install the extension first"
        try:
            with self._spawn_lock:
                lambda_bootstrap.send(self._control, spec, fds=[child.fileno(), self._log.fileno()])
                spawned, _ = lambda_bootstrap.receive(self._control)
        finally:
            child.close()
        if spawned is None:
            raise RuntimeError(f"the Lambda runtime stopped; see {self.log_path}")
        environment = _Environment(key, deployed.short_name, int(spawned["pid"]), parent, role.access_key_id)
        self.audit.register(role.access_key_id, function.function_name)
        with self._lock:
            self._all.append(environment)
            self._by_key[role.access_key_id] = environment
            self._stats[deployed.short_name].cold_starts += 1
        # Lambda gives init 10 s, then tries again within the invocation's Timeout.
        parent.settimeout(max(self.init_seconds, float(function.timeout)))
        try:
            ready, _ = lambda_bootstrap.receive(parent)
        except TimeoutError:
            environment.kill()
            seconds = max(self.init_seconds, float(function.timeout))
            environment.init_error = _error("Sandbox.Timedout", f"Task timed out after {seconds:.2f} seconds (init)")
            with self._lock:
                self._stats[deployed.short_name].timeouts += 1
            return environment
        parent.settimeout(None)
        if ready is None:
            environment.dead = True
            environment.init_error = _error(
                "Lambda.Unknown", "Runtime.ExitError: the execution environment exited during init (crash or memory)"
            )
        else:
            environment.init_error = ready.get("error")
        return environment

    def _runtime_environment(
        self, function: LambdaFunction, deployed: _Deployed, role: Any, session: str
    ) -> dict[str, str]:
        """The variables the python3.13 runtime sets, the function's own, the role's credentials,
        and the emulator's endpoint (the one thing AWS does not set)."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(deployed.code_dir),
            "LAMBDA_RUNTIME_DIR": str(self.environment.runtime_dir),
            "AWS_REGION": function.region,
            "AWS_DEFAULT_REGION": function.region,
            "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": str(function.version),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": function.logs_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": f"sandbox/[{function.version}]{session}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.run_time}",
            "_HANDLER": str(function.handler),
            # Not emulated: X-Ray has no daemon here.
            "POWERTOOLS_TRACE_DISABLED": "true",
            # No shared config or credentials files: only what Lambda gives.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        env.update({str(k): str(v) for k, v in (function.environment_vars or {}).items()})
        # Reserved: a function cannot override these on Lambda.
        env.update(
            {
                "AWS_ACCESS_KEY_ID": role.access_key_id,
                "AWS_SECRET_ACCESS_KEY": role.secret_access_key,
                "AWS_SESSION_TOKEN": role.session_token,
                "AWS_ENDPOINT_URL": self.endpoint(),
                # The sandbox's HTTPS endpoints (ECR's registry) are signed by its own CA.
                "AWS_CA_BUNDLE": str(sandbox_tls().ca_bundle),
            }
        )
        return env

    def _write_log(self, text: str) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.write(text.encode())


def _as_event(event: Any) -> Any:
    """moto passes the parsed JSON body, or the string "{}" for an empty body."""
    if isinstance(event, str | bytes):
        try:
            return json.loads(event)
        except ValueError:
            return event
    return {} if event is None else event


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type}


def _error_payload(error_type: str, message: str) -> str:
    """The runtime's error document; Step Functions reads ``errorType`` as the error name."""
    return json.dumps({"errorMessage": message, "errorType": error_type})


def short_names(resources: Mapping[str, str]) -> dict[str, str]:
    """Physical function name -> short name (``CopyBlobFunction`` -> ``CopyBlob``)."""
    return {physical: logical.removesuffix("Function") for logical, physical in resources.items()}

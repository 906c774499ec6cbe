"""The Lambda runtime inside the sandbox's workers: a zygote that forks one process per
execution environment. Runs under ``python3.13 -I -S`` with the standard library only.

The zygote imports the layer's and the runtime's libraries once (``--preload``: the slow part
of every cold start, shared like a snapshot) and waits for commands on its control socket
(``--control-fd``). Each command carries the environment of one Lambda execution environment and two
file descriptors (``socket.send_fds``): the worker's end of its invocation channel and the log
file. The forked child becomes that environment: its own session, the function's variables
and nothing else, ``RLIMIT_AS`` at the function's MemorySize, stdout/stderr to the log, the
function's code and the layer first on ``sys.path``; it imports the handler (the cold start)
and then serves invocations until the sandbox closes its channel or kills it.

Messages on every channel are a 4-byte big-endian length and a JSON document.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import signal
import socket
import struct
import sys
import time
import traceback
from typing import Any

_HEADER = struct.Struct(">I")
#: Address space a worker may reserve beyond its MemorySize (thread stacks, malloc arenas).
ADDRESS_SPACE_HEADROOM_MB = 512


def send(channel: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    body = json.dumps(message).encode()
    if fds:
        socket.send_fds(channel, [_HEADER.pack(len(body)) + body], fds)
    else:
        channel.sendall(_HEADER.pack(len(body)) + body)


def receive(channel: socket.socket, with_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """One message (None at end of stream) and the file descriptors that came with it."""
    fds: list[int] = []
    if with_fds:
        data, fds, _, _ = socket.recv_fds(channel, _HEADER.size, with_fds)
    else:
        data = channel.recv(_HEADER.size, socket.MSG_WAITALL)
    if len(data) < _HEADER.size:
        return None, fds
    (size,) = _HEADER.unpack(data)
    body = bytearray()
    while len(body) < size:
        chunk = channel.recv(size - len(body))
        if not chunk:
            return None, fds
        body.extend(chunk)
    return json.loads(body), fds


class LambdaContext:
    """The context object of the Python runtime (the attributes handlers and Powertools read)."""

    def __init__(self, function: dict[str, Any], request_id: str, deadline: float) -> None:
        self.function_name = function["name"]
        self.function_version = function["version"]
        self.invoked_function_arn = function["arn"]
        self.memory_limit_in_mb = str(function["memory_mb"])
        self.aws_request_id = request_id
        self.log_group_name = function["log_group"]
        self.log_stream_name = function["log_stream"]
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _error(error_type: str, message: str, trace: list[str] | None = None) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "stackTrace": trace or []}


def _load_handler(handler: str) -> Any:
    module_name, _, attribute = handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except MemoryError:
        raise
    except Exception as exc:  # reported as Lambda reports an import failure
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise _InitError("Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module '{module_name}'")
    return function


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def serve_environment(channel: socket.socket, spec: dict[str, Any]) -> None:
    """Be one execution environment: cold start, then one invocation after another."""
    started = time.perf_counter()
    try:
        handler = _load_handler(spec["handler"])
        init_error = None
    except _InitError as exc:
        handler, init_error = None, _error(exc.error_type, str(exc))
        print(f"[ERROR] {exc.error_type}: {exc}", file=sys.stderr, flush=True)  # as Lambda logs a failed init
    except MemoryError:
        _out_of_memory(channel)
    send(channel, {"type": "ready", "init_seconds": time.perf_counter() - started, "error": init_error})
    function = spec["function"]
    while True:
        message, _ = receive(channel)
        if message is None:
            return
        request_id = message["request_id"]
        print(f"START RequestId: {request_id} Version: {function['version']}", flush=True)
        begun = time.perf_counter()
        context = LambdaContext(function, request_id, message["deadline"])
        if init_error is not None:
            reply = {"type": "result", "payload": init_error, "errored": True}
        else:
            try:
                reply = _invoke(handler, message["event"], context)
            except MemoryError:
                _out_of_memory(channel)
        if message.get("stall"):
            # Fault injection: the handler did its work but never returns (a hung call).
            time.sleep(3600)
        elapsed_ms = (time.perf_counter() - begun) * 1000
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"END RequestId: {request_id}", flush=True)
        print(
            f"REPORT RequestId: {request_id}\tDuration: {elapsed_ms:.2f} ms\t"
            f"Memory Size: {function['memory_mb']} MB\tMax Memory Used: {peak_mb} MB",
            flush=True,
        )
        try:
            send(channel, reply)
        except MemoryError:
            _out_of_memory(channel)
        if init_error is not None:
            return  # Lambda starts a new environment after a failed init


_OUT_OF_MEMORY = 86


def _out_of_memory(channel: socket.socket) -> None:
    """Lambda stops an environment over its memory; the sandbox is told why, then it exits."""
    try:
        sys.stderr.write("Runtime.OutOfMemory: the function used more memory than its MemorySize\n")
        send(channel, {"type": "crash", "reason": "Runtime.OutOfMemory: memory over MemorySize"})
    finally:
        os._exit(_OUT_OF_MEMORY)


def _invoke(handler: Any, event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        result = handler(event, context)
    except MemoryError:
        raise  # Lambda stops an environment over its memory; the handler never sees it
    except Exception as exc:
        trace = traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])
        sys.stderr.write(f"[ERROR] {type(exc).__name__}: {exc}\n{''.join(trace)}")
        sys.stderr.flush()
        return {"type": "result", "payload": _error(type(exc).__name__, str(exc), trace), "errored": True}
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        payload = _error("Runtime.MarshalError", f"Unable to marshal response: {exc}")
        return {"type": "result", "payload": payload, "errored": True}
    return {"type": "result", "payload": result, "errored": False}


def _become_environment(spec: dict[str, Any], channel_fd: int, log_fd: int, control: socket.socket) -> None:
    """In the forked child: shed the zygote and take on the function's environment."""
    control.close()
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    os.close(log_fd)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    os.environ.clear()
    os.environ.update(spec["environment"])
    os.chdir(spec["cwd"])
    sys.path[:0] = spec["sys_path"]
    # Lambda bounds resident memory, which the sandbox checks (peak RSS against MemorySize);
    # this bound on address space only stops a runaway allocation from taking the machine.
    address_space = (int(spec["memory_mb"]) + ADDRESS_SPACE_HEADROOM_MB) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    channel = socket.socket(fileno=channel_fd)
    try:
        serve_environment(channel, spec)
    finally:
        os._exit(0)


def zygote(control_fd: int, preload: list[str]) -> None:
    """Import what every environment shares, then fork one child per command until EOF."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    for name in preload:
        # An environment that needs a module that failed here fails its own import, as on Lambda.
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    control = socket.socket(fileno=control_fd)
    send(control, {"type": "zygote-ready"})
    while True:
        command, fds = receive(control, with_fds=2)
        if command is None:
            return
        pid = os.fork()
        if pid == 0:
            _become_environment(command, fds[0], fds[1], control)
        for fd in fds:
            os.close(fd)
        send(control, {"type": "spawned", "pid": pid})


def main(argv: list[str]) -> None:
    # argv: --control-fd N [--path DIR]... [--preload MODULE]...
    options: dict[str, list[str]] = {"--control-fd": [], "--path": [], "--preload": []}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        options[flag].append(value)
    sys.path[:0] = options["--path"]
    zygote(int(options["--control-fd"][0]), options["--preload"])


if __name__ == "__main__":
    main(sys.argv[1:])

"""The emulator's HTTP endpoint: moto's server mode, in the sandbox's process, over loopback.

The Lambda workers (and the real AWS CLI, for ``sandbox serve``) reach the emulator here, as
code reaches AWS: signed HTTP requests to one endpoint (``AWS_ENDPOINT_URL``). moto's
server shares its backends with the sandbox's in-process moto, so the sandbox's extensions,
installed in this process, apply to every request whoever sends it.

Each request is named (service, operation, access key; ``sandbox.audit``) and shown to the
observers before moto answers it: the IAM audit records it, and fault injection may kill the
worker that sent it (the observer raises :class:`DropRequest`; the caller gets a 500, or
nothing at all when it is already dead). Once answered, the meters are told its bytes (the
request's body and the answer's), which the audit counts per function and operation.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.audit import ApiCall, name_request

Observer = Callable[[ApiCall], None]
# Told, once a named request is answered, the bytes of its body and of its answer's body.
Meter = Callable[[ApiCall, int, int], None]


class Intercept(Exception):
    """Raised by an observer: answer this request with ``status``/``body`` instead of moto's.
    With ``after``, moto runs the request first and its answer is lost (a lost response)."""

    def __init__(self, status: str, body: bytes, content_type: str = "text/plain", *, after: bool = False) -> None:
        super().__init__(status)
        self.status, self.body, self.content_type, self.after = status, body, content_type, after


class DropRequest(Intercept):
    """Raised by an observer: answer this request with a 500 and do not run it."""

    def __init__(self) -> None:
        super().__init__("500 Internal Server Error", b"dropped by the sandbox's fault injection")


class _Observed:
    """WSGI middleware: name each request and show it to the observers first."""

    def __init__(self, app: Any, observers: list[Observer], meters: list[Meter]) -> None:
        self.app, self.observers, self.meters = app, observers, meters

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        stream = environ["wsgi.input"]
        body = stream.read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        headers = {key[5:].replace("_", "-"): value for key, value in environ.items() if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["CONTENT-TYPE"] = environ["CONTENT_TYPE"]
        call = name_request(
            environ["REQUEST_METHOD"],
            environ.get("RAW_URI") or environ.get("PATH_INFO", "/"),
            environ.get("QUERY_STRING", ""),
            headers,
            body,
        )
        if call is not None:
            try:
                for observer in self.observers:
                    observer(call)
            except Intercept as intercept:
                if intercept.after:  # the request takes effect; its answer never arrives
                    for _ in self.app(environ, lambda *_args, **_kwargs: None):
                        pass
                start_response(intercept.status, [("Content-Type", intercept.content_type)])
                return [intercept.body]
        result: Iterable[bytes] = self.app(environ, start_response)
        if call is None or not self.meters:
            return result
        return self._metered(result, call, len(body))

    def _metered(self, result: Iterable[bytes], call: ApiCall, received: int) -> Iterator[bytes]:
        sent = 0
        try:
            for chunk in result:
                sent += len(chunk)
                yield chunk
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            for meter in self.meters:
                meter(call, received, sent)


class EmulatorServer:
    """moto's server on 127.0.0.1 (a free port unless one is given), with observers."""

    def __init__(self, port: int = 0) -> None:
        self.observers: list[Observer] = []
        self.meters: list[Meter] = []
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> str:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per request
        app = _Observed(DomainDispatcherApplication(create_backend_app), self.observers, self.meters)
        self._server = make_server("127.0.0.1", self._port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-endpoint", daemon=True
        )
        self._thread.start()
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

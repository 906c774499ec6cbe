"""ECR's registry endpoint in the sandbox: the Docker Registry HTTP API v2 blob push, over TLS.

On AWS, ``GetAuthorizationToken`` returns a token and the ``proxyEndpoint``
(``https://<account>.dkr.ecr.<region>.amazonaws.com``) where docker, skopeo, crane and the
pipeline's CopyBlob push blobs with raw request bodies. Here each (account, region) registry
gets its own HTTPS server on 127.0.0.1 (a port stands in for the host name), started when a
token for it is first issued, with the sandbox's CA (``sandbox.tls``). What it serves:

* ``GET /v2/``; ``HEAD /v2/<repo>/blobs/<digest>``; ``POST /v2/<repo>/blobs/uploads/``;
  ``PATCH``/``GET``/``PUT``/``DELETE`` on ``/v2/<repo>/blobs/uploads/<uuid>``.
* Uploads are moto's own (``InitiateLayerUpload`` creates them) and land in the same
  spool, checks and content-addressed store as the ECR API's (``EcrExtension``): the digest
  named at the completing PUT must be the sha256 of the bytes (400 ``DIGEST_INVALID``),
  chunks must arrive in order (416 with the ``Range`` held), every chunk but the last must be
  at least 5 MiB (checked at completion, as for the API), and a completed blob is in
  ``Repository.layers``, so BatchCheckLayerAvailability, PutImage and downloads see it.
* A PATCH answers 201, as ECR was reported to (aws/containers-roadmap#2831; the spec says
  202), so the client is held to accept both. Its ``Range`` is the true offset here; ECR's
  was reported to lag after the second chunk, which the client allows for.
* ``Authorization: Basic <token>`` must carry a token this sandbox issued for this registry
  and not yet expired (401 otherwise). Each request is named as the IAM action ECR
  authorises it as (POST: InitiateLayerUpload, PATCH and GET of an upload: UploadLayerPart,
  PUT: CompleteLayerUpload, HEAD: BatchCheckLayerAvailability) and shown to the emulator's
  observers, so the IAM audit records it against the function whose token it is, and
  fault injection may drop it (or kill the worker that sent it).
* With ``bandwidth_mib_s``, each request's body is received at most that fast.
* A body cut short (the sender died) is not acknowledged: the upload is as before it.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import logging
import re
import secrets
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import urllib3
from moto.core.exceptions import ServiceException
from moto.ecr.models import ECRBackend, ecr_backends

from mlpublish.images.registry import BlobUploads, EcrRegistry
from sandbox.audit import ApiCall
from sandbox.server import Intercept
from sandbox.tls import sandbox_tls

if TYPE_CHECKING:
    from sandbox.ext_ecr import EcrExtension

LOG = logging.getLogger(__name__)
TOKEN_LIFETIME = dt.timedelta(hours=12)  # GetAuthorizationToken: "valid for 12 hours"
_READ = 1024 * 1024
_UPLOAD = re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]*)")
_BLOB = re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})")
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?")


@dataclass(frozen=True)
class Token:
    access_key: str
    account: str
    region: str
    expires: dt.datetime


@dataclass
class Received:
    """What the registries received, for tests and benchmarks."""

    chunks: list[tuple[str, int, int]] = field(default_factory=list)  # acknowledged (upload, first, length)
    bytes: int = 0  # every body byte read, acknowledged or not


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def seller_uploads(ecr_client: Any, region: str) -> BlobUploads:
    """The domain's registry client, for pushes from the sandbox's own process (a seller's
    ``docker push``): it trusts the sandbox's CA directly, not through AWS_CA_BUNDLE."""
    return EcrRegistry(region, client=ecr_client, http=_seller_pool()).uploads()


@functools.cache
def _seller_pool() -> urllib3.PoolManager:
    return urllib3.PoolManager(
        maxsize=4, ca_certs=str(sandbox_tls().ca_bundle), timeout=urllib3.Timeout(connect=10.0, read=120.0)
    )


class RegistryEndpoints:
    """The registry endpoints of the sandbox's ECR, one HTTPS server per (account, region)."""

    def __init__(
        self,
        ecr: EcrExtension,
        observers: list[Callable[[ApiCall], None]],
        now: Callable[[], dt.datetime],
        bandwidth_mib_s: float | None = None,
    ) -> None:
        self.ecr, self.observers, self.now = ecr, observers, now
        self.bytes_per_second = bandwidth_mib_s * 1024 * 1024 if bandwidth_mib_s else None
        self.received = Received()
        self._lock = threading.Lock()
        self._servers: dict[tuple[str, str], _RegistryServer] = {}
        self._tokens: dict[str, Token] = {}

    def issue_token(self, access_key: str, account: str, region: str) -> dict[str, Any]:
        """GetAuthorizationToken's ``authorizationData`` entry for one registry."""
        password = secrets.token_urlsafe(32)
        expires = self.now() + TOKEN_LIFETIME
        with self._lock:
            self._tokens[password] = Token(access_key, account, region, expires)
        return {
            "authorizationToken": base64.b64encode(f"AWS:{password}".encode()).decode(),
            "expiresAt": expires,
            "proxyEndpoint": self.endpoint(account, region),
        }

    def endpoint(self, account: str, region: str) -> str:
        with self._lock:
            server = self._servers.get((account, region))
            if server is None:
                server = self._servers[account, region] = _RegistryServer(self, account, region)
                threading.Thread(
                    target=server.serve_forever, args=(0.05,), name=f"sandbox-registry-{region}", daemon=True
                ).start()
        host, port = server.server_address[:2]
        return f"https://{host!s}:{port}"

    def stop(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.shutdown()
            server.server_close()

    def authorise(self, header: str | None, account: str, region: str) -> Token:
        scheme, _, credentials = (header or "").partition(" ")
        try:
            user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except ValueError:
            user, password = "", None
        with self._lock:
            token = self._tokens.get(password or "") if scheme.lower() == "basic" and user == "AWS" else None
        if token is None or (token.account, token.region) != (account, region) or token.expires <= self.now():
            raise _Refusal(
                401,
                "UNAUTHORIZED",
                "authentication required: use a token from ecr:GetAuthorizationToken for this registry",
                {"WWW-Authenticate": f'Basic realm="{self.endpoint(account, region)}",service="ecr.amazonaws.com"'},
            )
        return token

    def observe(self, token: Token, operation: str) -> None:
        call = ApiCall(token.access_key, "ecr", operation)
        for observer in list(self.observers):
            observer(call)


class _RegistryServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that goes away mid-request (a killed worker) is routine, not an error."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)

    def __init__(self, owner: RegistryEndpoints, account: str, region: str) -> None:
        super().__init__(("127.0.0.1", 0), _RegistryHandler)
        self.owner, self.account, self.region = owner, account, region
        self.socket = sandbox_tls().server_context().wrap_socket(self.socket, server_side=True)

    @property
    def backend(self) -> ECRBackend:
        return ecr_backends[self.account][self.region]


class _RegistryHandler(BaseHTTPRequestHandler):
    server: _RegistryServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("registry: " + format, *args)

    def _handle(self, method: str) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        try:
            token = owner.authorise(self.headers.get("Authorization"), self.server.account, self.server.region)
            operation = _operation(method, path)
            try:
                if operation:
                    owner.observe(token, operation)
            except Intercept as intercept:
                if intercept.after:  # the request takes effect; its answer never arrives
                    self._route(method, path)
                else:
                    self._drain()
                raise _fault(intercept) from None
            status, headers = self._route(method, path)
        except _Refusal as refusal:
            self._drain()
            body = json.dumps({"errors": [{"code": refusal.code, "message": refusal.message}]}).encode()
            self._reply(refusal.status, {"Content-Type": "application/json", **refusal.headers}, body)
            return
        self._reply(status, headers, b"")

    def _route(self, method: str, path: str) -> tuple[int, dict[str, str]]:
        if path in ("/v2", "/v2/") and method in ("GET", "HEAD"):
            return 200, {"Docker-Distribution-API-Version": "registry/2.0"}
        blob = _BLOB.fullmatch(path)
        if blob and method == "HEAD":
            return self._head_blob(blob["name"], blob["digest"])
        upload = _UPLOAD.fullmatch(path)
        if upload and method == "POST" and not upload["uuid"]:
            return self._start(upload["name"])
        if upload and upload["uuid"]:
            name, upload_id = upload["name"], upload["uuid"]
            if method == "GET":
                return self._status(name, upload_id)
            if method == "PATCH":
                return self._patch(name, upload_id)
            if method == "PUT":
                return self._complete(name, upload_id)
            if method == "DELETE":
                return self._cancel(name, upload_id)
        raise _Refusal(405 if upload or blob else 404, "UNSUPPORTED", f"{method} {path} is not served here")

    # ------------------------------------------------------------------ operations

    def _repository(self, name: str) -> Any:
        try:
            return self.server.backend._get_repository(name)
        except ServiceException as exc:
            raise _Refusal(404, "NAME_UNKNOWN", f"repository {name} not found") from exc

    def _upload(self, name: str, upload_id: str) -> Any:
        repository = self._repository(name)
        if upload_id not in repository.uploads:
            raise _Refusal(404, "BLOB_UPLOAD_UNKNOWN", f"upload {upload_id} is not known")
        return repository

    def _head_blob(self, name: str, digest: str) -> tuple[int, dict[str, str]]:
        repository = self._repository(name)
        if digest not in repository.layers or not self.server.owner.ecr.blob_path(digest).exists():
            raise _Refusal(404, "BLOB_UNKNOWN", f"blob {digest} is not in {name}")
        return 200, {"Content-Length": str(repository.layers[digest]), "Docker-Content-Digest": digest}

    def _start(self, name: str) -> tuple[int, dict[str, str]]:
        self._drain()
        self._repository(name)
        upload_id = self.server.backend.initiate_layer_upload(name)["uploadId"]
        return 202, self._upload_headers(name, upload_id, 0)

    def _status(self, name: str, upload_id: str) -> tuple[int, dict[str, str]]:
        self._upload(name, upload_id)
        return 204, self._upload_headers(name, upload_id, self.server.owner.ecr.spooled(upload_id))

    def _patch(self, name: str, upload_id: str) -> tuple[int, dict[str, str]]:
        self._upload(name, upload_id)
        length = self._length()
        held = self.server.owner.ecr.spooled(upload_id)
        match = _CONTENT_RANGE.fullmatch((self.headers.get("Content-Range") or "").strip())
        first = int(match.group(1)) if match else held
        if first != held or (match and int(match.group(2)) - first + 1 != length):
            raise _Refusal(
                416,
                "BLOB_UPLOAD_INVALID",
                f"chunk {self.headers.get('Content-Range')} does not follow the {held} bytes held",
                self._upload_headers(name, upload_id, held),
            )
        self._receive(upload_id, length, final=False)
        return 201, self._upload_headers(name, upload_id, self.server.owner.ecr.spooled(upload_id))

    def _complete(self, name: str, upload_id: str) -> tuple[int, dict[str, str]]:
        repository = self._upload(name, upload_id)
        digest = parse_qs(urlsplit(self.path).query).get("digest", [""])[0]
        if not digest:
            raise _Refusal(400, "DIGEST_INVALID", "the completing PUT names no digest")
        length = self._length()
        if length:
            self._receive(upload_id, length, final=True)
        try:
            self.server.owner.ecr.complete_upload(self.server.backend, repository.name, upload_id, [digest])
        except ServiceException as exc:
            code = type(exc).__name__
            if code != "LayerAlreadyExistsException":
                status, error = {
                    "InvalidLayerException": (400, "DIGEST_INVALID"),
                    "LayerPartTooSmallException": (400, "SIZE_INVALID"),
                    "EmptyUploadException": (400, "BLOB_UPLOAD_INVALID"),
                }.get(code, (400, "BLOB_UPLOAD_INVALID"))
                raise _Refusal(status, error, getattr(exc, "message", str(exc))) from exc
        return 201, {
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        }

    def _cancel(self, name: str, upload_id: str) -> tuple[int, dict[str, str]]:
        repository = self._upload(name, upload_id)
        self.server.owner.ecr.discard_upload(upload_id)
        del repository.uploads[upload_id]
        return 204, {}

    # ------------------------------------------------------------------ bodies

    def _length(self) -> int:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise _Refusal(411, "SIZE_INVALID", "send chunks with a Content-Length")
        try:
            return int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            raise _Refusal(400, "SIZE_INVALID", "Content-Length is not a number") from exc

    def _receive(self, upload_id: str, length: int, *, final: bool) -> None:
        """Append ``length`` body bytes to the upload (at the capped rate); all or nothing."""
        owner = self.server.owner
        started = time.monotonic()
        with owner.ecr.appending(upload_id) as append:
            received = 0
            while received < length:
                piece = self.rfile.read(min(_READ, length - received))
                if not piece:
                    self.close_connection = True
                    raise _Refusal(400, "BLOB_UPLOAD_INVALID", f"the body ended after {received} of {length} bytes")
                append(piece)
                received += len(piece)
                with owner._lock:
                    owner.received.bytes += len(piece)
                if owner.bytes_per_second:
                    ahead = received / owner.bytes_per_second - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        first = owner.ecr.spooled(upload_id) - length
        with owner._lock:
            owner.received.chunks.append((upload_id, first, length))

    def _drain(self) -> None:
        """Read and drop a body this request will not use, so the connection stays in step."""
        try:
            remaining = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            remaining = 0
        while remaining > 0:
            piece = self.rfile.read(min(_READ, remaining))
            if not piece:
                self.close_connection = True
                return
            remaining -= len(piece)

    def _upload_headers(self, name: str, upload_id: str, held: int) -> dict[str, str]:
        return {
            "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
            "Range": f"0-{max(held - 1, 0)}",
            "Docker-Upload-UUID": upload_id,
            "Content-Length": "0",
        }

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key != "Content-Length":
                self.send_header(key, value)
        head_length = headers.get("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", head_length or str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)


def _fault(intercept: Intercept) -> _Refusal:
    """An injected fault as the registry API answers it: throttling as 429 TOOMANYREQUESTS,
    anything else as the intercept's status."""
    try:
        throttled = "Throttl" in str(json.loads(intercept.body).get("__type", ""))
    except ValueError:
        throttled = False
    if throttled:
        return _Refusal(429, "TOOMANYREQUESTS", "sandbox fault: throttled")
    return _Refusal(int(intercept.status.split()[0]), "UNKNOWN", intercept.body.decode("utf-8", "replace"))


def _operation(method: str, path: str) -> str | None:
    """The ECR API action a registry request is authorised as (None: only the token)."""
    if _BLOB.fullmatch(path):
        return "BatchCheckLayerAvailability"
    upload = _UPLOAD.fullmatch(path)
    if upload is None:
        return None
    if method == "POST":
        return "InitiateLayerUpload"
    return "CompleteLayerUpload" if method == "PUT" else "UploadLayerPart"

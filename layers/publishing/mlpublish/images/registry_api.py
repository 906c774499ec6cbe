"""Pushing blobs through ECR's registry endpoint: the Docker Registry HTTP API v2.

ECR serves the registry API (the one docker, skopeo and crane push with) at the
``proxyEndpoint`` that ``ecr:GetAuthorizationToken`` returns, authorised with
``Authorization: Basic <authorizationToken>``. Blob bytes go up as raw request bodies, where
the ECR API's ``UploadLayerPart`` wraps every part in base64 inside JSON (about 80 % of a
copy's CPU). A blob is pushed as the distribution spec's chunked upload:

* ``POST /v2/<repo>/blobs/uploads/`` starts an upload (202, ``Location``, ``Docker-Upload-UUID``);
* ``PATCH <location>`` with ``Content-Range: <first>-<last>`` and ``Content-Length`` sends the
  next chunk, in order; the answer's ``Location`` is the one to use next (202 in the spec;
  ECR answers 201, aws/containers-roadmap#2831 and openai/tart#273, so any 2xx is taken);
* ``GET <location>`` says what the registry holds (204, ``Range: 0-<last byte>``), so a copy
  resumes where the registry is and never re-sends an acknowledged byte;
* ``PUT <location>?digest=sha256:...`` completes it: the registry hashes what it received and
  refuses a wrong digest (400 ``DIGEST_INVALID``), so a corrupt or short blob is never stored;
* ``HEAD /v2/<repo>/blobs/<digest>`` says whether a blob is there.

IAM: these requests are authorised as the ECR API actions the push policy names
(``ecr:InitiateLayerUpload``, ``ecr:UploadLayerPart``, ``ecr:CompleteLayerUpload``,
``ecr:BatchCheckLayerAvailability``; ECR user guide, "IAM permissions for pushing an image"),
plus ``ecr:GetAuthorizationToken`` on ``*`` for the token.

Limits (ECR service quotas): a layer of at most 52,000 MiB; for the ECR *API* path, parts of
5 to 10 MiB and at most 4,200 of them. What the registry path enforces on PATCH chunks is not
documented: chunks here are 10 MiB (the API's maximum, above the 5 MiB minimum) and grow,
in whole MiB, only for layers over 4,200 × 10 MiB = 42,000 MiB so no layer needs more than
4,200. Unverified against ECR (no AWS account was used): whether the registry path holds
chunks to the API's part limits, whether ``GET <location>`` reports every acknowledged chunk
(ECR's PATCH answers were reported to carry a ``Range`` stuck at the first chunk,
aws/containers-roadmap#2831, so an offset is never taken lower than the one a PATCH
acknowledged), and how long ECR keeps an unfinished upload (a lost one starts again at 0).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from functools import cache
from typing import Any, NamedTuple
from urllib.parse import quote, urljoin

import urllib3

from mlpublish.errors import BlobDigestMismatch, ImageCopyFailed, TransientAwsError

MiB = 1024 * 1024
CHUNK_SIZE = 10 * MiB
MIN_CHUNK_SIZE = 5 * MiB
MAX_PARTS = 4_200
MAX_LAYER_SIZE = 52_000 * MiB


def chunk_size_for(size: int, preferred: int = CHUNK_SIZE) -> int:
    """The chunk size for a blob of ``size`` bytes: ``preferred``, or whole MiB more so the
    blob needs at most MAX_PARTS chunks."""
    needed = -(-size // MAX_PARTS)
    return preferred if needed <= preferred else -(-needed // MiB) * MiB


def http_pool() -> urllib3.PoolManager:
    """The container's one HTTP pool for the registry endpoint.

    It trusts the CAs in ``AWS_CA_BUNDLE`` when set, the variable botocore reads too, and the
    system's otherwise (as on Lambda); one pool per value, so a process whose variable changes
    (tests, one sandbox after another) never uses a pool that trusts other CAs. No retries
    here: a request with a streamed body cannot be replayed, and a failed chunk is resumed
    from what the registry holds instead.
    """
    return _http_pool(os.environ.get("AWS_CA_BUNDLE") or None)


@cache
def _http_pool(ca_bundle: str | None) -> urllib3.PoolManager:
    return urllib3.PoolManager(
        maxsize=8, ca_certs=ca_bundle, timeout=urllib3.Timeout(connect=10.0, read=120.0), retries=False
    )


class UploadState(NamedTuple):
    location: str  # absolute URL of the upload, as the registry last named it
    offset: int  # bytes the registry holds


class RegistryApi:
    """One registry's v2 API (``endpoint`` is the ``proxyEndpoint``), authorised by ``token``."""

    def __init__(self, endpoint: str, token: str, http: Any = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._auth = {"Authorization": f"Basic {token}"}
        self._http = http if http is not None else http_pool()

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self._request("HEAD", self._url(repository, f"blobs/{digest}"), f"checking {digest}")
        if response.status == 404:
            return False
        self._expect(response, (200,), f"checking {digest} in {repository}")
        return True

    def start_upload(self, repository: str) -> str:
        """A new upload's location."""
        response = self._request("POST", self._url(repository, "blobs/uploads/"), f"starting an upload to {repository}")
        self._expect(response, (202,), f"starting an upload to {repository}")
        return self._location(response)

    def upload_state(self, location: str) -> UploadState | None:
        """What the registry holds of an upload, or None when it no longer knows it."""
        response = self._request("GET", location, "reading an upload's progress")
        if response.status == 404:
            return None
        self._expect(response, (204, 200), "reading an upload's progress")
        return UploadState(self._location(response, default=location), _held(response))

    def upload_chunk(
        self, location: str, first_byte: int, body: Iterable[bytes | memoryview], length: int
    ) -> UploadState:
        """Send ``length`` bytes (streamed from ``body``) at ``first_byte``; returns the next
        location and the registry's offset (never less than what this chunk completes)."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "Content-Range": f"{first_byte}-{first_byte + length - 1}",
        }
        response = self._request("PATCH", location, f"sending bytes {first_byte}-", headers=headers, body=body)
        if response.status == 416:
            raise TransientAwsError(
                f"the registry refused bytes from {first_byte} of {location} (416, it holds "
                f"{_held(response)}); the copy resumes from what it holds"
            )
        self._expect(response, (202, 201, 204), f"sending bytes {first_byte}- to {location}")
        return UploadState(self._location(response, default=location), max(_held(response), first_byte + length))

    def complete_upload(self, location: str, digest: str) -> None:
        """Complete the upload as ``digest``; the registry verifies the bytes' sha256."""
        url = location + ("&" if "?" in location else "?") + "digest=" + quote(digest, safe="")
        response = self._request("PUT", url, f"completing {digest}", headers={"Content-Length": "0"})
        if response.status == 400 and _error_code(response) in {"DIGEST_INVALID", "SIZE_INVALID"}:
            raise BlobDigestMismatch(
                f"the registry at {self.endpoint} refused blob {digest}: the bytes it received do not hash to "
                f"it ({_error_code(response)}: {_error_message(response)}); nothing was stored"
            )
        self._expect(response, (201, 204), f"completing {digest}")

    def _url(self, repository: str, tail: str) -> str:
        return f"{self.endpoint}/v2/{repository}/{tail}"

    def _request(
        self,
        method: str,
        url: str,
        action: str,
        headers: dict[str, str] | None = None,
        body: Iterable[bytes | memoryview] | None = None,
    ) -> Any:
        try:
            response = self._http.request(
                method,
                url,
                headers={**self._auth, **(headers or {})},
                body=body,  # type: ignore[arg-type]  # urllib3 sends any bytes-like piece
                redirect=False,
                retries=False,
                preload_content=True,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TransientAwsError(f"ECR's registry endpoint failed while {action} ({exc}); retrying") from exc
        if response.status == 429 or response.status >= 500:
            raise TransientAwsError(f"ECR's registry endpoint answered HTTP {response.status} while {action}; retrying")
        return response

    def _expect(self, response: Any, statuses: tuple[int, ...], action: str) -> None:
        if response.status in statuses:
            return
        hint = (
            " Check that the function's role may push to the repository (ecr:InitiateLayerUpload, "
            "ecr:UploadLayerPart, ecr:CompleteLayerUpload) and ecr:GetAuthorizationToken."
            if response.status in (401, 403)
            else ""
        )
        raise ImageCopyFailed(
            f"ECR's registry endpoint refused {action}: HTTP {response.status} {_error_code(response)}: "
            f"{_error_message(response)}.{hint} Re-run the release."
        )

    def _location(self, response: Any, default: str | None = None) -> str:
        location = str(response.headers.get("Location") or "")
        if not location:
            if default is None:
                raise ImageCopyFailed(f"ECR's registry endpoint {self.endpoint} started an upload without a Location")
            return default
        return urljoin(self.endpoint + "/", location)


_RANGE = re.compile(r"(?:bytes=)?(\d+)-(\d+)")


def _held(response: Any) -> int:
    """Bytes an upload holds per its ``Range: 0-<last>`` (``0-0`` is read as none)."""
    match = _RANGE.fullmatch((response.headers.get("Range") or "").strip())
    if not match or int(match.group(2)) == 0:
        return 0
    return int(match.group(2)) + 1


def _errors(response: Any) -> list[dict[str, Any]]:
    try:
        document = json.loads(response.data or b"{}")
    except ValueError:
        return []
    errors = document.get("errors") if isinstance(document, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _error_code(response: Any) -> str:
    errors = _errors(response)
    return str(errors[0].get("code", "")) if errors else ""


def _error_message(response: Any) -> str:
    errors = _errors(response)
    return str(errors[0].get("message", "")) if errors else (response.reason or "")

"""Build the demo's sample inference image with a real image tool, without Docker.

``make demo`` and the e2e tests need an image that a real tool wrote, so that the sandbox
reads what sellers will give it rather than something shaped by our own reader. ``umoci``
(Debian package, no daemon, no network) builds a tiny SageMaker-style image: a Debian
``/etc/os-release`` (so ECR's OS detection and the pipeline's scan preflight work), a
``serve`` entrypoint in ``/usr/local/bin`` and the model code in ``/opt/program``.

Builds are reproducible: file times, config ``created`` and history times are all pinned
to ``SOURCE_DATE_EPOCH`` (default: a fixed date), so the same inputs give the same digests.
umoci 0.4.7 (Debian 12) is the oldest version this is written for; its ``insert`` writes
truncated tars, so layers are made with ``unpack``/``repack`` instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

SAMPLE_TAG = "latest"
DEFAULT_EPOCH = 1_700_000_000  # 2023-11-14T22:13:20Z
_TIMEOUT_SECONDS = 120
_INSTALL_HINT = "run `make demo` (it installs umoci and skopeo) or `apt-get install -y umoci skopeo`"

ImageKind = Literal["oci", "docker-v2"]

_OS_RELEASE = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
    'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
    'HOME_URL="https://www.debian.org/"\n'
)
_SERVE = """#!/bin/sh
# SageMaker starts an inference container as `docker run IMAGE serve` and expects an
# HTTP server on port 8080 answering GET /ping and POST /invocations.
exec python3 /opt/program/predictor.py "$@"
"""
_PREDICTOR = """\"\"\"Sample predictor: answers /ping and echoes /invocations.\"\"\"
import http.server


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ping" else 404)
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", self.headers.get("Content-Type", "application/json"))
        self.end_headers()
        self.wfile.write(body)


http.server.HTTPServer(("", 8080), Handler).serve_forever()
"""

# (path in the image, content, mode) per layer: the OS base first, the model code second,
# as a Dockerfile FROM debian + COPY would layer them.
_BASE_FILES = [
    ("etc/os-release", _OS_RELEASE, 0o644),
    ("etc/debian_version", "12.8\n", 0o644),
    ("usr/lib/os-release", _OS_RELEASE, 0o644),
]
_APP_FILES = [
    ("usr/local/bin/serve", _SERVE, 0o755),
    ("opt/program/predictor.py", _PREDICTOR, 0o644),
    ("opt/ml/model/.keep", "", 0o644),
]


class ImageBuildError(RuntimeError):
    """The sample image could not be built; the message says which tool and how to fix it."""


def build_sample_image(dest_dir: str | Path, *, kind: ImageKind = "oci", tag: str = SAMPLE_TAG) -> Path:
    """Write the sample image as an OCI image layout at ``dest_dir`` and return its path.

    ``kind="oci"`` keeps umoci's OCI manifest; ``kind="docker-v2"`` rewrites it with
    ``skopeo copy --format v2s2`` into a Docker v2 schema 2 manifest over the same layers
    (what ``docker save`` writes for most images). A previous layout at ``dest_dir`` is
    replaced; any other non-empty directory is refused rather than deleted.
    """
    dest = Path(dest_dir)
    _check_destination(dest)
    umoci = _tool("umoci")
    skopeo = _tool("skopeo") if kind == "docker-v2" else None
    epoch = _source_date_epoch()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".imagebuild-", dir=dest.parent) as scratch:
        work = Path(scratch)
        layout = work / "oci"
        _build_with_umoci(umoci, layout, work / "bundle", tag, epoch)
        if skopeo is not None:
            converted = work / "docker-v2"
            _run(
                [
                    skopeo,
                    "copy",
                    "--quiet",
                    "--format",
                    "v2s2",
                    f"oci:{layout}:{tag}",
                    f"oci:{converted}:{tag}",
                ]
            )
            layout = converted
        if dest.exists():
            shutil.rmtree(dest)
        layout.rename(dest)
    return dest


def _build_with_umoci(umoci: str, layout: Path, bundle: Path, tag: str, epoch: int) -> None:
    """new -> config -> unpack -> (write files, repack) x 2 -> config -> gc."""
    image = f"{layout}:{tag}"
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    history = ["--history.created", created, "--history.author", "mlpublish sandbox"]
    _run([umoci, "init", "--layout", str(layout)])
    _run([umoci, "new", "--image", image])
    # umoci new takes the host's architecture and the current time; pin both.
    _run(
        [
            umoci,
            "config",
            "--image",
            image,
            "--no-history",
            "--created",
            created,
            "--architecture",
            "amd64",
            "--os",
            "linux",
        ]
    )
    _run([umoci, "unpack", "--rootless", "--image", image, str(bundle)])
    rootfs = bundle / "rootfs"
    for files, created_by in (
        (_BASE_FILES, "ADD debian-os-release /"),
        (_APP_FILES, "COPY program /opt/program"),
    ):
        _write_files(rootfs, files, epoch)
        _run(
            [
                umoci,
                "repack",
                "--refresh-bundle",
                "--image",
                image,
                *history,
                "--history.created_by",
                created_by,
                str(bundle),
            ]
        )
    _run(
        [
            umoci, "config", "--image", image, *history,
            "--config.entrypoint", "/usr/local/bin/serve",
            "--config.workingdir", "/opt/program",
            "--config.env", "PATH=/opt/program:/usr/local/bin:/usr/bin:/bin",
            "--config.env", "PYTHONUNBUFFERED=1",
            "--config.exposedports", "8080/tcp",
            "--config.label", "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true",
        ]
    )  # fmt: skip
    _run([umoci, "gc", "--layout", str(layout)])


def _write_files(rootfs: Path, files: list[tuple[str, str, int]], epoch: int) -> None:
    """Write files with fixed modes and times: the layer's digest depends on both."""
    for relative, content, mode in files:
        path = rootfs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)
    for path in [rootfs, *rootfs.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
        os.utime(path, (epoch, epoch), follow_symlinks=False)


def _check_destination(dest: Path) -> None:
    if dest.exists() and not dest.is_dir():
        raise ImageBuildError(f"{dest} exists and is not a directory; choose another destination")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / "oci-layout").is_file():
        raise ImageBuildError(
            f"{dest} is a non-empty directory that is not an image layout; refusing to replace it — "
            "choose an empty or new directory"
        )


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ImageBuildError(f"{name} is not installed, so the sample image cannot be built; {_INSTALL_HINT}")
    return path


def _source_date_epoch() -> int:
    """The reproducible-builds convention; a fixed default keeps digests stable across runs."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        return DEFAULT_EPOCH
    if not value.isdigit():
        raise ImageBuildError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {value!r}")
    return int(value)


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=_TIMEOUT_SECONDS)
    except subprocess.CalledProcessError as exc:
        output = (exc.stderr or exc.stdout or "").strip()
        raise ImageBuildError(f"`{' '.join(command)}` failed (exit {exc.returncode}): {output}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ImageBuildError(f"`{' '.join(command)}` did not finish in {_TIMEOUT_SECONDS} s") from exc

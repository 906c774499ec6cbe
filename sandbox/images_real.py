"""Real serving images to validate against: Debian bookworm + a small SageMaker-style server.

The sample image of :mod:`sandbox.imagebuild` has no shell and no Python, so it cannot run.
These images can: ``debootstrap --variant=minbase --include=python3 bookworm`` makes a real
Debian root filesystem (from the Debian mirror apt uses here, never a container registry),
``umoci`` packs it as an OCI image layout (``unpack`` → edit the rootfs → ``repack``; never
``umoci insert``, whose 0.4.7 tars are truncated), and a second layer adds a small HTTP server
started as SageMaker starts one, ``docker run IMAGE serve``:

- ``GET /ping`` → 200; ``GET /execution-parameters`` → the batch transform parameters;
  ``POST /invocations`` → one prediction per posted record (CSV/JSON lines, or a JSON array),
  as ``text/csv``, ``application/jsonlines`` or ``application/json`` per ``Accept``;
- port 8080, or ``SAGEMAKER_BIND_TO_PORT`` when set (inference pipeline containers); the
  image carries the label SageMaker wants for that;
- the model artifact at ``/opt/ml/model`` is read at start (``model.json``'s ``bias``);
- each request is logged to stdout.

The image also trains, as an algorithm's image does (``docker run IMAGE train``): it reads
SageMaker's ``/opt/ml/input/config/{hyperparameters,inputdataconfig,resourceconfig}.json``
(hyperparameters must be strings) and every channel's files under
``/opt/ml/input/data/<channel>/`` (CSV lines, gzip when named ``.gz``), and writes
``/opt/ml/model/model.json``: ``bias``, the mean of the ``train`` channel's row sums, with the
hyperparameters and each channel's config and record count; a failure is written to
``/opt/ml/output/failure`` (``framework error:`` and the traceback) and exits 1.

Each broken kind is the good image plus one small layer that replaces a file (and, for
``arm64``, the config's architecture), so every kind shares the Debian and server layers:

=====================  ============================================================
``good``               serves as described above
``no-server``          ``serve`` is ``echo serving``: exits 0, nothing listens
``wrong-port``         listens on 8081 whatever ``SAGEMAKER_BIND_TO_PORT`` says
``needs-internet``     downloads from https://pypi.org at start, exits 1 when it cannot
``errors-500``         a record whose values sum over 1 raises: 500 for the request holding it,
                       on every retry (as a model failing on some inputs does)
``slow-ping``          ``/ping`` answers only 10 minutes after start
``oversize-response``  ``/invocations`` answers with more than 6 MB
``arm64``              config architecture arm64; the entrypoint is an aarch64 ELF
``train-fails``        ``train`` writes a reason to /opt/ml/output/failure and exits 1
=====================  ============================================================

Images are built once per recipe and cached outside the checkout, in
``$MLPUBLISH_IMAGE_CACHE`` or ``${XDG_CACHE_HOME:-~/.cache}/mlpublish/images/``: the
debootstrap root filesystem under ``rootfs-<hash>/`` and the layouts under ``<hash>/<kind>/``
(one OCI layout per kind, tag ``latest``, blobs hard-linked to ``<hash>/shared/``). The hash
covers every input of the recipe, so a change to it builds afresh. A file lock makes
concurrent builders wait for one build. Building needs root (debootstrap, and ``umoci
unpack`` keeping file owners) and the Debian packages of ``make deb``; a cached image needs
neither.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.imagebuild import ImageBuildError

SERVING_TAG = "latest"
KINDS = (
    "good",
    "no-server",
    "wrong-port",
    "needs-internet",
    "errors-500",
    "slow-ping",
    "oversize-response",
    "arm64",
    "train-fails",
)
SUITE = "bookworm"
DEBOOTSTRAP_VARIANT = "minbase"
DEBOOTSTRAP_INCLUDE = ("python3",)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SERVING_PORT = 8080
MAX_PAYLOAD_MB = 6
#: What the ``train-fails`` image writes to /opt/ml/output/failure before it exits 1.
TRAIN_FAILURE = "the train channel has too few rows to fit 52 weekly seasons"
# Bump when the recipe changes in a way the hashed inputs below do not show.
RECIPE_VERSION = 1

_DEBOOTSTRAP_TIMEOUT = 1200
_UMOCI_TIMEOUT = 600
_MAKE_DEB_HINT = "run `make deb` (as root, or a user with sudo) to install umoci, skopeo, runc and debootstrap"
_BIND_LABEL = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true"

_ENTRYPOINT = """#!/bin/sh
# SageMaker starts an inference container as `docker run IMAGE serve` (`train` for training).
case "${1:-}" in
  serve) shift; exec serve "$@" ;;
  train) shift; exec train "$@" ;;
  *) exec "$@" ;;
esac
"""
_SERVE = """#!/bin/sh
exec python3 /opt/program/predictor.py "$@"
"""
_TRAIN = """#!/bin/sh
exec python3 /opt/program/train.py "$@"
"""
_BEHAVIOUR = '''"""What the server does; the test variants of this image replace this file."""

PORT = None  # None: SAGEMAKER_BIND_TO_PORT when set, else 8080
STARTUP_DOWNLOAD_URL = None  # fetched at start; the server exits 1 when it cannot
PING_READY_AFTER_SECONDS = 0  # /ping waits until this long after start
FAIL_RECORDS_SUMMING_OVER = None  # a record whose numbers sum over this raises (None: never)
PAD_RESPONSE_TO_BYTES = 0  # /invocations responses padded to this size
TRAIN_FAILS_WITH = None  # train writes this to /opt/ml/output/failure and exits 1 (None: trains)
'''
_TRAINER = '''"""A SageMaker training program: `docker run IMAGE train`.

It reads the job's config and channels where SageMaker puts them and writes model.json, which
predictor.py serves; a failure goes to /opt/ml/output/failure, which SageMaker reports as
"AlgorithmError: <its text>, exit code: 1".
"""

import gzip
import json
import os
import sys
import traceback

import behaviour

CONFIG_DIR = "/opt/ml/input/config"
DATA_DIR = "/opt/ml/input/data"
MODEL_DIR = "/opt/ml/model"
FAILURE_FILE = "/opt/ml/output/failure"


def fail(message):
    with open(FAILURE_FILE, "w") as handle:
        handle.write(message)
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def config(name):
    with open(os.path.join(CONFIG_DIR, name)) as handle:
        return json.load(handle)


def records(channel):
    found = []
    for root, _dirs, names in sorted(os.walk(os.path.join(DATA_DIR, channel))):
        for name in sorted(names):
            with open(os.path.join(root, name), "rb") as handle:
                data = handle.read()
            if name.endswith(".gz"):
                data = gzip.decompress(data)
            found += [line for line in data.decode("utf-8").splitlines() if line.strip()]
    return found


def row_sum(record):
    total = 0.0
    for value in record.split(","):
        try:
            total += float(value)
        except ValueError:
            pass
    return total


def train():
    hyperparameters = config("hyperparameters.json")
    channels = config("inputdataconfig.json")
    resources = config("resourceconfig.json")
    not_strings = sorted(name for name, value in hyperparameters.items() if not isinstance(value, str))
    if not_strings:
        fail(f"hyperparameters are not strings: {', '.join(not_strings)}")
    if "train" not in channels:
        fail(f"no train channel in inputdataconfig.json (channels: {', '.join(sorted(channels)) or 'none'})")
    sums = [row_sum(record) for record in records("train")]
    bias = round(sum(sums) / len(sums), 6) if sums else 0.0
    for epoch in range(1, int(hyperparameters.get("epochs", "1")) + 1):
        print(f"epoch {epoch}: validation rmse={abs(bias) / epoch:.6f}", flush=True)
    model = {
        "bias": bias,
        "hyperparameters": hyperparameters,
        "channels": {name: {**entry, "records": len(records(name))} for name, entry in channels.items()},
        "host": resources["current_host"],
    }
    with open(os.path.join(MODEL_DIR, "model.json"), "w") as handle:
        json.dump(model, handle, sort_keys=True)
    print(f"trained: bias {bias} from {len(sums)} records", flush=True)


def main():
    if behaviour.TRAIN_FAILS_WITH:
        fail(behaviour.TRAIN_FAILS_WITH)
    try:
        train()
    except Exception:
        fail("framework error: " + traceback.format_exc())


if __name__ == "__main__":
    main()
'''
_PREDICTOR = '''"""A SageMaker inference server: GET /ping, GET /execution-parameters, POST /invocations.

Sellers' containers are usually Flask behind gunicorn; this is the standard library's
http.server speaking the same HTTP. behaviour.py holds what the test variants change.
"""

import http.server
import json
import os
import signal
import sys
import threading
import time
import traceback
import urllib.request

import behaviour

MODEL_DIR = "/opt/ml/model"
STARTED = time.monotonic()
EXECUTION_PARAMETERS = {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}
_lock = threading.Lock()
_records_seen = 0


def log(message):
    print(message, flush=True)


def load_model():
    files = [os.path.join(root, name) for root, _dirs, names in os.walk(MODEL_DIR) for name in names]
    bias = 0.0
    path = os.path.join(MODEL_DIR, "model.json")
    if os.path.isfile(path):
        try:
            with open(path) as handle:
                bias = float(json.load(handle).get("bias", 0))
        except (OSError, ValueError, AttributeError) as exc:
            log(f"model: ignoring {path}: {exc}")
    log(f"model: {len(files)} file(s) in {MODEL_DIR}, bias {bias}")
    return {"files": len(files), "bias": bias}


def records_of(body, content_type):
    text = body.decode("utf-8")
    if content_type.startswith("application/json") and text.lstrip().startswith("["):
        return [json.dumps(item) if not isinstance(item, str) else item for item in json.loads(text)]
    return [line for line in text.splitlines() if line.strip()]


def predict(record, bias):
    global _records_seen
    with _lock:
        _records_seen += 1
        seen = _records_seen
    fields = [field.strip() for field in record.split(",")]
    numbers = []
    for value in fields:
        try:
            numbers.append(float(value))
        except ValueError:
            pass
    limit = behaviour.FAIL_RECORDS_SUMMING_OVER
    if limit is not None and sum(numbers) > limit:
        raise ValueError(f"record {seen} cannot be scored, its values sum over {limit}: {record[:80]!r}")
    return {"fields": len(fields), "score": round(sum(numbers) + bias, 6)}


def render(predictions, accept):
    if "text/csv" in accept:
        body, kind = "".join(f"{p['fields']},{p['score']}\\n" for p in predictions), "text/csv"
    elif "jsonlines" in accept:
        body, kind = "".join(json.dumps(p) + "\\n" for p in predictions), "application/jsonlines"
    else:
        body, kind = json.dumps({"predictions": predictions}), "application/json"
    data = body.encode()
    if len(data) < behaviour.PAD_RESPONSE_TO_BYTES:
        data += b" " * (behaviour.PAD_RESPONSE_TO_BYTES - len(data))
    return data, kind


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "predictor/1"

    def log_message(self, format, *args):
        log(f"{self.address_string()} {format % args}")

    def reply(self, status, data=b"", kind="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/ping":
            wait = STARTED + behaviour.PING_READY_AFTER_SECONDS - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.reply(200, b"healthy\\n")
        elif self.path == "/execution-parameters":
            self.reply(200, json.dumps(EXECUTION_PARAMETERS).encode(), "application/json")
        else:
            self.reply(404, b"not found\\n")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/invocations":
            self.reply(404, b"not found\\n")
            return
        try:
            records = records_of(body, self.headers.get("Content-Type", "text/csv"))
            predictions = [predict(record, self.server.model["bias"]) for record in records]
            data, kind = render(predictions, self.headers.get("Accept", "application/json"))
        except Exception:
            traceback.print_exc(file=sys.stdout)
            sys.stdout.flush()
            self.reply(500, b"internal server error\\n")
            return
        self.reply(200, data, kind)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if behaviour.STARTUP_DOWNLOAD_URL:
        log(f"downloading {behaviour.STARTUP_DOWNLOAD_URL}")
        try:
            with urllib.request.urlopen(behaviour.STARTUP_DOWNLOAD_URL, timeout=20) as response:
                response.read()
        except OSError as exc:
            log(f"cannot download {behaviour.STARTUP_DOWNLOAD_URL}: {exc}")
            sys.exit(1)
    port = behaviour.PORT or int(os.environ.get("SAGEMAKER_BIND_TO_PORT") or 8080)
    server = http.server.ThreadingHTTPServer(("", port), Handler)
    server.daemon_threads = True
    server.model = load_model()
    log(f"serving on port {port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
'''

_BEHAVIOUR_PATH = "opt/program/behaviour.py"
_SERVE_PATH = "usr/local/bin/serve"
_TRAIN_PATH = "usr/local/bin/train"
_ENTRYPOINT_PATH = "usr/local/bin/entrypoint"
_APP_FILES: dict[str, tuple[bytes, int]] = {
    _ENTRYPOINT_PATH: (_ENTRYPOINT.encode(), 0o755),
    _SERVE_PATH: (_SERVE.encode(), 0o755),
    _TRAIN_PATH: (_TRAIN.encode(), 0o755),
    "opt/program/predictor.py": (_PREDICTOR.encode(), 0o644),
    "opt/program/train.py": (_TRAINER.encode(), 0o644),
    _BEHAVIOUR_PATH: (_BEHAVIOUR.encode(), 0o644),
    "opt/ml/model/.keep": (b"", 0o644),
}


def _behaviour(**changes: object) -> bytes:
    text = _BEHAVIOUR
    for name, value in changes.items():
        start = text.index(f"\n{name} = ") + 1
        end = text.index("  #", start)
        text = f"{text[:start]}{name} = {value!r}{text[end:]}"
    return text.encode()


def aarch64_elf(message: bytes = b"serving (aarch64)\n") -> bytes:
    """A minimal static aarch64 Linux executable: write(1, message) then exit(0).

    Hand-assembled so that no cross toolchain or arm64 package is needed; ``file`` calls it
    "ELF 64-bit LSB executable, ARM aarch64". On an x86-64 host without binfmt emulation
    exec fails with ENOEXEC ("exec format error"), as it does on SageMaker's x86 instances.
    """
    base, header_size, ph_size = 0x400000, 64, 56
    code_offset = header_size + ph_size
    code = [
        0xD2800020,  # mov x0, #1 (stdout)
        0x100000E1,  # adr x1, message (28 bytes on)
        0xD2800002 | (len(message) << 5),  # mov x2, #len
        0xD2800808,  # mov x8, #64 (write)
        0xD4000001,  # svc #0
        0xD2800000,  # mov x0, #0
        0xD2800BA8,  # mov x8, #93 (exit)
        0xD4000001,  # svc #0
    ]
    body = struct.pack(f"<{len(code)}I", *code) + message
    size = code_offset + len(body)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 2, 183, 1, base + code_offset, header_size, 0, 0, header_size, ph_size, 1, 0, 0, 0
    )
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + program + body


@dataclass(frozen=True)
class _Variant:
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    architecture: str | None = None
    created_by: str = ""


_VARIANTS: dict[str, _Variant] = {
    "no-server": _Variant({_SERVE_PATH: (b"#!/bin/sh\necho serving\n", 0o755)}, created_by="serve is echo serving"),
    "wrong-port": _Variant({_BEHAVIOUR_PATH: (_behaviour(PORT=8081), 0o644)}, created_by="listen on 8081"),
    "needs-internet": _Variant(
        {_BEHAVIOUR_PATH: (_behaviour(STARTUP_DOWNLOAD_URL="https://pypi.org/simple/numpy/"), 0o644)},
        created_by="download from pypi.org at start",
    ),
    "errors-500": _Variant(
        {_BEHAVIOUR_PATH: (_behaviour(FAIL_RECORDS_SUMMING_OVER=1.0), 0o644)},
        created_by="500 on records summing over 1",
    ),
    "slow-ping": _Variant(
        {_BEHAVIOUR_PATH: (_behaviour(PING_READY_AFTER_SECONDS=600), 0o644)}, created_by="/ping after 10 minutes"
    ),
    "oversize-response": _Variant(
        {_BEHAVIOUR_PATH: (_behaviour(PAD_RESPONSE_TO_BYTES=(MAX_PAYLOAD_MB + 1) * 1024 * 1024), 0o644)},
        created_by=f"responses over {MAX_PAYLOAD_MB} MB",
    ),
    "arm64": _Variant(
        {_ENTRYPOINT_PATH: (aarch64_elf(), 0o755)}, architecture="arm64", created_by="aarch64 entrypoint"
    ),
    "train-fails": _Variant(
        {_BEHAVIOUR_PATH: (_behaviour(TRAIN_FAILS_WITH=TRAIN_FAILURE), 0o644)}, created_by="train fails"
    ),
}

_CONFIG_ARGS = [
    "--architecture", "amd64",
    "--os", "linux",
    "--config.entrypoint", "/usr/local/bin/entrypoint",
    "--config.cmd", "serve",
    "--config.workingdir", "/opt/program",
    "--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "--config.env", "PYTHONUNBUFFERED=1",
    "--config.env", "PYTHONDONTWRITEBYTECODE=1",
    "--config.exposedports", f"{SERVING_PORT}/tcp",
    "--config.label", _BIND_LABEL,
]  # fmt: skip
# Left out of the image, as Debian's official images leave them out: caches, logs, the
# build host's resolver and name, device nodes (the runtime makes /dev).
_PRUNE = ("var/cache/apt", "var/lib/apt/lists", "var/log", "dev")
_HOST_FILES = ("etc/resolv.conf", "etc/hostname")


def cache_root() -> Path:
    """Where images are cached: ``$MLPUBLISH_IMAGE_CACHE`` or the user's cache directory."""
    explicit = os.environ.get("MLPUBLISH_IMAGE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "mlpublish" / "images"


def debian_mirror() -> str:
    """The Debian mirror apt uses here (``$MLPUBLISH_DEBIAN_MIRROR`` overrides it)."""
    explicit = os.environ.get("MLPUBLISH_DEBIAN_MIRROR")
    if explicit:
        return explicit
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for stanza in sources.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[:1].isalpha())
            if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0].strip()
    listing = Path("/etc/apt/sources.list")
    if listing.is_file():
        for line in listing.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return next(p for p in parts[1:] if not p.startswith("["))
    return DEFAULT_MIRROR


def build_serving_image(kind: str = "good", *, cache_dir: str | Path | None = None) -> Path:
    """The OCI image layout of serving image ``kind`` (tag ``latest``), built on first use.

    All kinds are built together the first time (about a minute after debootstrap) and
    reused afterwards. Raises :class:`ImageBuildError` for an unknown kind, or when a build
    is needed and this is not root or a tool of ``make deb`` is missing.
    """
    if kind not in KINDS:
        raise ImageBuildError(f"unknown serving image kind {kind!r}; choose one of {', '.join(KINDS)}")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    mirror = debian_mirror()
    rootfs_key = _hash(_rootfs_inputs(mirror))
    images_key = _hash({"rootfs": rootfs_key, "recipe": _recipe_inputs()})
    images = root / images_key
    if not (images / kind / "index.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root / f"{images_key}.lock"):
            if not (images / kind / "index.json").is_file():
                tools = _require_tools()
                for stale in root.glob(f".{images_key}-*"):  # left by a build that was killed
                    _remove_tree(stale)
                rootfs = _ensure_rootfs(root, rootfs_key, mirror, tools["debootstrap"])
                _build_images(root, images, rootfs, tools["umoci"])
    return images / kind


def _rootfs_inputs(mirror: str) -> dict[str, object]:
    return {
        "suite": SUITE,
        "variant": DEBOOTSTRAP_VARIANT,
        "include": list(DEBOOTSTRAP_INCLUDE),
        "mirror": mirror,
        "arch": "amd64",
        "prune": list(_PRUNE + _HOST_FILES),
        "version": RECIPE_VERSION,
    }


def _recipe_inputs() -> dict[str, object]:
    def digest(files: dict[str, tuple[bytes, int]]) -> dict[str, str]:
        return {path: f"{hashlib.sha256(data).hexdigest()}:{mode:o}" for path, (data, mode) in files.items()}

    return {
        "app": digest(_APP_FILES),
        "config": _CONFIG_ARGS,
        "variants": {k: [digest(v.files), v.architecture] for k, v in _VARIANTS.items()},
        "version": RECIPE_VERSION,
    }


def _hash(inputs: object) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _require_tools() -> dict[str, str]:
    found = {
        name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") for name in ("debootstrap", "umoci")
    }
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise ImageBuildError(
            f"{' and '.join(missing)} not installed, so serving images cannot be built; {_MAKE_DEB_HINT}"
        )
    if os.geteuid() != 0:
        raise ImageBuildError(
            "building the serving images needs root (debootstrap installs packages into a chroot, and "
            "`umoci unpack` keeps file owners); run the build or the tests as root, e.g. with sudo, once: "
            f"the images are then cached in {cache_root()} for every user of this cache"
        )
    return {name: path for name, path in found.items() if path is not None}


def _ensure_rootfs(root: Path, key: str, mirror: str, debootstrap: str) -> Path:
    rootfs = root / f"rootfs-{key}"
    if (rootfs / ".complete").is_file():
        return rootfs
    with _locked(root / f"rootfs-{key}.lock"):
        if (rootfs / ".complete").is_file():
            return rootfs
        for stale in [rootfs, *root.glob(f".rootfs-{key}-*")]:  # left by a build that was killed
            _remove_tree(stale)
        work = Path(tempfile.mkdtemp(prefix=f".rootfs-{key}-", dir=root))
        try:
            target = work / "rootfs"
            _run(
                [
                    debootstrap,
                    f"--variant={DEBOOTSTRAP_VARIANT}",
                    f"--include={','.join(DEBOOTSTRAP_INCLUDE)}",
                    SUITE,
                    str(target),
                    mirror,
                ],
                _DEBOOTSTRAP_TIMEOUT,
            )
            _prune(target)
            (target / ".complete").write_text(json.dumps(_rootfs_inputs(mirror)) + "\n")
            target.rename(rootfs)
        finally:
            _remove_tree(work)
    return rootfs


def _prune(rootfs: Path) -> None:
    _unmount_under(rootfs)
    for relative in _PRUNE:
        directory = rootfs / relative
        for child in list(directory.iterdir()) if directory.is_dir() else []:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    for relative in _HOST_FILES:
        (rootfs / relative).unlink(missing_ok=True)
    (rootfs / "etc/hostname").write_text("localhost\n")


def _build_images(root: Path, images: Path, rootfs: Path, umoci: str) -> None:
    """unpack → copy the Debian rootfs → repack (base) → app files → repack (good) → variants."""
    epoch = int((rootfs / ".complete").stat().st_mtime)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    history = ["--history.created", created, "--history.author", "mlpublish sandbox"]
    work = Path(tempfile.mkdtemp(prefix=f".{images.name}-", dir=root))
    work.chmod(0o755)  # mkdtemp's 0700 would hide the images from other users of the cache
    try:
        layout, bundle = work / "shared", work / "bundle"
        _run([umoci, "init", "--layout", str(layout)])
        _run([umoci, "new", "--image", f"{layout}:base"])
        _run([umoci, "config", "--image", f"{layout}:base", "--no-history", "--created", created, *_CONFIG_ARGS])
        _run([umoci, "unpack", "--image", f"{layout}:base", str(bundle)])
        target = bundle / "rootfs"
        _run(["cp", "-a", "--", f"{rootfs}/.", str(target)])
        (target / ".complete").unlink()
        debootstrap = f"debootstrap --variant={DEBOOTSTRAP_VARIANT} --include={','.join(DEBOOTSTRAP_INCLUDE)} {SUITE}"
        _repack(umoci, layout, "base", bundle, [*history, "--history.created_by", debootstrap], refresh=True)
        _write(target, _APP_FILES, epoch)
        _repack(umoci, layout, "good", bundle, [*history, "--history.created_by", "COPY program /"], refresh=True)
        for kind, variant in _VARIANTS.items():
            saved = {path: ((target / path).read_bytes(), (target / path).stat()) for path in variant.files}
            _write(target, variant.files, epoch)
            _repack(umoci, layout, kind, bundle, [*history, "--history.created_by", variant.created_by], refresh=False)
            for path, (data, stat) in saved.items():  # back to the good image's files for the next variant
                (target / path).write_bytes(data)
                os.chmod(target / path, stat.st_mode)
                os.utime(target / path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            if variant.architecture:
                _run(
                    [
                        umoci,
                        "config",
                        "--image",
                        f"{layout}:{kind}",
                        "--no-history",
                        "--architecture",
                        variant.architecture,
                    ]
                )
        _run([umoci, "gc", "--layout", str(layout)])
        for kind in KINDS:
            _export(layout, kind, work / kind)
        _remove_tree(bundle)
        _remove_tree(images)
        work.rename(images)
    finally:
        _remove_tree(work)


def _repack(umoci: str, layout: Path, tag: str, bundle: Path, history: list[str], *, refresh: bool) -> None:
    command = [umoci, "repack", "--image", f"{layout}:{tag}", *history, str(bundle)]
    if refresh:
        command.insert(2, "--refresh-bundle")
    _run(command)


def _write(rootfs: Path, files: dict[str, tuple[bytes, int]], epoch: int) -> None:
    for relative, (data, mode) in files.items():
        path = rootfs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
        os.utime(path, (epoch, epoch))


def _export(shared: Path, kind: str, dest: Path) -> None:
    """A layout of its own for ``kind`` (tag ``latest``), its blobs hard links into ``shared``."""
    index = json.loads((shared / "index.json").read_text())
    ref = "org.opencontainers.image.ref.name"
    descriptor = next(d for d in index["manifests"] if d.get("annotations", {}).get(ref) == kind)
    manifest_digest = descriptor["digest"]
    manifest = json.loads(_blob(shared, manifest_digest).read_bytes())
    blobs = [manifest_digest, manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    (dest / "blobs" / "sha256").mkdir(parents=True)
    for digest in blobs:
        source, target = _blob(shared, digest), _blob(dest, digest)
        if not target.exists():
            os.link(source, target)
    (dest / "oci-layout").write_text((shared / "oci-layout").read_text())
    exported = {**descriptor, "annotations": {**descriptor.get("annotations", {}), ref: SERVING_TAG}}
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [exported]}))


def _blob(layout: Path, digest: str) -> Path:
    algorithm, hex_digest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hex_digest


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) if path.exists() else str(path)
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def _unmount_under(path: Path) -> None:
    """debootstrap mounts /proc, /sys (and in some containers /dev) in its target; an
    interrupted run can leave them mounted. Never delete through a mount."""
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        # umount from PATH, like the other Debian tools here; the mount point is one of ours.
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)  # nosec B607


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    _unmount_under(path)
    if _mounts_under(path):
        raise ImageBuildError(f"{path} still has file systems mounted inside; unmount them, then remove it")
    shutil.rmtree(path)


def _run(command: list[str], timeout: int = _UMOCI_TIMEOUT) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.CalledProcessError as exc:
        output = "\n".join((exc.stderr or exc.stdout or "").strip().splitlines()[-15:])
        raise ImageBuildError(f"`{' '.join(command)}` failed (exit {exc.returncode}): {output}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ImageBuildError(f"`{' '.join(command)}` did not finish in {timeout} s") from exc

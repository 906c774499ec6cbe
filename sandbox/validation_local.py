"""Local validation: a model package's or an algorithm's validation profile run as SageMaker
runs it, with runc.

SageMaker validates a Marketplace model package with a batch transform job on the published
image, and an algorithm with a training job and then a transform job on the model it
trained; it takes hours and a failure costs a day. This module runs the same jobs here, on
the image bytes, in seconds. A transform job (:func:`run_transform_job`):

* each container gets a fresh root filesystem: the image's layers, each unpacked once per
  machine (:class:`LayerCache`), under a writable overlay (or, without overlayfs, unpacked
  in order with whiteouts honoured); the model artifact is extracted into ``/opt/ml/model``;
  it is started as
  SageMaker starts it: ``ENTRYPOINT`` + ``serve`` (``docker run IMAGE serve``), the image's
  and the container definition's environment, root, Docker's default capabilities;
* in a network namespace of its own with loopback only: Marketplace runs models with network
  isolation, so a container that needs the internet fails here as it would there. The
  containers of an inference pipeline share that namespace and each gets its own port in
  ``SAGEMAKER_BIND_TO_PORT`` (SageMaker provides the variable to pipeline containers and does
  not document the values; the sandbox uses ports away from 8080, so a container that ignores
  the variable fails here too);
* CPU and memory limited to the validation instance type's (``ml.m5.large``: 2 vCPU, 8 GiB),
  at most this machine's CPUs and half its memory;
* ``GET /ping`` until 200 (each try 2 s; 4 minutes to start), ``GET /execution-parameters``
  if served, then ``POST /invocations`` with the input split by ``SplitType``, batched by
  ``BatchStrategy``/``MaxPayloadInMB``, ``Content-Type`` and ``Accept`` from the profile; a
  failed invocation is retried 3 times (``ModelClientConfig`` defaults: 600 s, 3 retries);
  every answer must be 2xx and at most ``MaxPayloadInMB`` (buyers' real-time endpoints cap
  responses at 6 MB); in a pipeline each container's answer is the next one's request;
* the output is written where the profile says (``<input name>.out``), and every request
  made is recorded with its outcome; a failure says which request failed, how (status,
  timeout, exit code) and the container's last log lines.

A training job (:func:`run_training_job`; :func:`run_algorithm_profile` runs a profile's
two jobs in turn) runs the training image as ``docker run IMAGE train``, network-isolated and
limited in the same way, with SageMaker's training contract:

* ``/opt/ml/input/config/`` holds ``hyperparameters.json`` (every value a string),
  ``inputdataconfig.json`` and ``resourceconfig.json`` (one host, ``algo-1``)
  (:func:`training_config`); ``/opt/ml/input/data/<channel>/`` holds the channel's S3 objects
  (File mode; Pipe mode, manifests and several instances are not run: :class:`Unsupported`);
  ``/opt/ml/model`` and ``/opt/ml/output`` are empty, writable directories of their own;
  ``TRAINING_JOB_NAME`` is set (SageMaker also sets ``TRAINING_JOB_ARN``; the sandbox does not);
* ``StoppingCondition.MaxRuntimeInSeconds`` (times ``Deadlines.scale``) is enforced: SIGTERM,
  then SIGKILL after 120 s, and the job fails, as a job SageMaker stops is not Completed;
* a non-zero exit fails the job with SageMaker's ``AlgorithmError: <the container's
  /opt/ml/output/failure>, exit code: N`` (:func:`algorithm_error`);
* once ``train`` exits 0, ``/opt/ml/model`` (empty is fine) is uploaded as
  ``S3OutputPath/<job name>/output/model.tar.gz`` and served by the transform job that follows.
Not emulated: /opt/ml/output/data (SageMaker's output.tar.gz), checkpoints, metrics read
from the log with the algorithm's MetricDefinitions, and the job's own names in SageMaker.

Every container is killed and its bundle removed when the job ends, however it ends; one
left by a process that was killed outright is removed by the next job (:func:`sweep`).
``Deadlines.scaled`` shortens the deadlines so tests of slow containers take seconds.

Running needs root and runc (``make deb``); :func:`unavailable` says why it cannot run.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import fcntl
import gzip
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

SERVING_PORT = 8080
#: Ports for inference pipeline containers (SAGEMAKER_BIND_TO_PORT), one per container.
PIPELINE_FIRST_PORT = 9081
#: SageMaker's default for ModelClientConfig.InvocationsMaxRetries.
INVOCATION_RETRIES = 3
#: The longest FailureReason SageMaker reports (botocore's FailureReason shape).
FAILURE_REASON_MAX = 1024
LOG_LINES = 8
MB = 1024 * 1024
RUNC_ROOT = Path("/run/mlpublish-runc")
ID_PREFIX = "mlpublish-validate"
_CLONE_NEWNET = 0x40000000
_DOCKER_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
# The mounts every container gets, as Docker gives them (and /tmp as tmpfs).
_MOUNTS = [
    ("/proc", "proc", ()),
    ("/dev", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
    ("/dev/pts", "devpts", ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620")),
    ("/dev/shm", "tmpfs", ("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")),  # nosec B108
    ("/dev/mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
    ("/sys", "sysfs", ("nosuid", "noexec", "nodev", "ro")),
    ("/tmp", "tmpfs", ("nosuid", "nodev", "mode=1777")),  # nosec B108
]
# (B108: these are mount points inside the container, each a fresh tmpfs, not host paths.)
# GiB of memory per vCPU of SageMaker instance families (ml.<family><generation>...).
_GIB_PER_VCPU = {"c": 2.0, "m": 4.0, "r": 8.0, "t": 4.0, "g": 4.0, "p": 7.6, "inf": 4.0, "trn": 16.0}
_SIZES = {"medium": 1, "large": 2, "xlarge": 4}


class LocalValidationError(Exception):
    """The job failed: ``reason`` is the FailureReason SageMaker's status would carry."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unsupported(Exception):
    """The job asks for something this sandbox cannot run (not the seller's fault)."""


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Deadlines:
    """SageMaker's time limits, in seconds (``scaled`` makes them shorter for tests)."""

    ping_startup: float = 240.0  # /ping must pass within 4 minutes of start
    ping_timeout: float = 2.0  # each /ping answered within 2 s
    invocation_timeout: float = 600.0  # ModelClientConfig.InvocationsTimeoutInSeconds default
    stop_grace: float = 30.0  # SIGTERM, then SIGKILL after 30 s
    training_stop_grace: float = 120.0  # a training container: SIGTERM, then SIGKILL after 120 s
    budget: float = 3600.0  # the whole job, wall clock (the sandbox's own bound)
    scale: float = 1.0  # applied to the limits a job definition sets (MaxRuntimeInSeconds)

    def scaled(self, factor: float) -> Deadlines:
        """Every deadline but the 2 s /ping timeout multiplied by ``factor`` (tests: 0.01)."""
        return dataclasses.replace(
            self,
            ping_startup=self.ping_startup * factor,
            invocation_timeout=self.invocation_timeout * factor,
            stop_grace=self.stop_grace * factor,
            training_stop_grace=self.training_stop_grace * factor,
            budget=self.budget * factor,
            scale=self.scale * factor,
        )


class ImageSource(Protocol):
    """An image as the runtime sees it: its config and its layers, in order."""

    def config(self) -> dict[str, Any]: ...
    def layers(self) -> list[tuple[str, str]]: ...  # (digest, media type), bottom first
    def open_blob(self, digest: str) -> IO[bytes]: ...


class JobStorage(Protocol):
    """Where the transform job reads its input and model and writes its output (S3)."""

    def read(self, uri: str) -> bytes: ...
    def list(self, uri_prefix: str) -> list[str]: ...  # object URIs under the prefix
    def write(self, uri: str, body: bytes) -> None: ...


@dataclass(frozen=True)
class ContainerUnderTest:
    name: str
    image_uri: str
    image: ImageSource
    environment: Mapping[str, str] = field(default_factory=dict)
    model_data_url: str | None = None


@dataclass(frozen=True)
class TransformJob:
    """A validation profile's TransformJobDefinition, as CreateModelPackage received it."""

    profile_name: str
    definition: Mapping[str, Any]

    @property
    def input(self) -> Mapping[str, Any]:
        return self.definition.get("TransformInput") or {}

    @property
    def output(self) -> Mapping[str, Any]:
        return self.definition.get("TransformOutput") or {}

    @property
    def instance_type(self) -> str:
        return str((self.definition.get("TransformResources") or {}).get("InstanceType") or "ml.m5.large")


# ----------------------------------------------------------------------------- the record


@dataclass
class RequestRecord:
    """One request the job made (pings are one record per container: the tries counted)."""

    container: str
    request: str
    outcome: str
    status: int | None = None
    seconds: float = 0.0
    tries: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "request": self.request,
            "status": self.status,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 3),
            "tries": self.tries,
        }


@dataclass
class JobResult:
    profile_name: str
    failure_reason: str | None = None
    requests: list[RequestRecord] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    job: str = "transform"  # or "training" (an algorithm's profile trains first)

    @property
    def passed(self) -> bool:
        return self.failure_reason is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile_name,
            "job": self.job,
            "status": "Completed" if self.passed else "Failed",
            "failure_reason": self.failure_reason,
            "requests": [r.as_dict() for r in self.requests],
            "outputs": self.outputs,
            "limits": self.limits,
            "seconds": round(self.seconds, 2),
        }


# ----------------------------------------------------------------------------- environment


def runc_path() -> str | None:
    return shutil.which("runc") or shutil.which("runc", path="/usr/sbin:/sbin")


def unavailable() -> str | None:
    """Why containers cannot run here (None: they can)."""
    if runc_path() is None:
        return "runc is not installed (run `make deb`)"
    if os.geteuid() != 0:
        return "running containers with runc needs root"
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces"
    return None


def sweep(runc: str | None = None, root: Path = RUNC_ROOT) -> list[str]:
    """Remove containers and bundles left by sandbox processes that no longer exist (``root``:
    runc's state directory, the host's one every sandbox shares)."""
    runc = runc or runc_path()
    removed: list[str] = []
    if runc is None or not root.exists():
        return removed
    listed = subprocess.run(
        [runc, "--root", str(root), "list", "--format", "json"], capture_output=True, text=True, check=False
    )
    for item in json.loads(listed.stdout or "null") or []:
        owner = _owner_pid(item.get("id", ""))
        if owner is not None and not _alive(owner):
            _destroy(runc, item["id"], root)
            bundle = Path(item.get("bundle", ""))
            unmount(bundle / "rootfs")
            shutil.rmtree(bundle.parent, ignore_errors=True)
            removed.append(item["id"])
    for work in Path(tempfile.gettempdir()).glob(f"{ID_PREFIX}-*"):
        owner = _owner_pid(work.name)
        if owner is not None and not _alive(owner):
            for rootfs in work.glob("c*/rootfs"):
                unmount(rootfs)
            shutil.rmtree(work, ignore_errors=True)
    return removed


def _owner_pid(name: str) -> int | None:
    match = re.match(rf"{ID_PREFIX}-(\d+)-", name)
    return int(match.group(1)) if match else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _destroy(runc: str, container_id: str, root: Path = RUNC_ROOT) -> None:
    state = ["--root", str(root)]
    subprocess.run([runc, *state, "kill", container_id, "KILL"], capture_output=True, check=False)
    subprocess.run([runc, *state, "delete", "--force", container_id], capture_output=True, check=False)


def limits_for(instance_type: str) -> dict[str, Any]:
    """vCPUs and memory of a SageMaker instance type, scaled down to this machine."""
    match = re.fullmatch(r"ml\.([a-z]+?)(\d+)[a-z-]*\.(\w+)", instance_type)
    family, size = (match.group(1), match.group(3)) if match else ("m", "large")
    if size in _SIZES:
        vcpus = _SIZES[size]
    else:
        number = re.fullmatch(r"(\d+)xlarge", size)
        vcpus = int(number.group(1)) * 4 if number else 2
    memory_gib = vcpus * _GIB_PER_VCPU.get(family, 4.0)
    host_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpus = min(vcpus, os.cpu_count() or 1)
    memory = min(int(memory_gib * 1024**3), host_memory // 2)
    return {
        "instance_type": instance_type,
        "instance_vcpus": vcpus,
        "instance_memory_gib": memory_gib,
        "cpus": cpus,
        "memory_bytes": memory,
    }


# ----------------------------------------------------------------------------- unpacking


def unpack_image(image: ImageSource, rootfs: Path) -> None:
    """Apply the image's layers in order into ``rootfs``, honouring OCI whiteouts."""
    rootfs.mkdir(parents=True, exist_ok=True)
    for digest, media_type in image.layers():
        try:
            with _open_layer(image, digest, media_type) as stream:
                _apply_layer(stream, rootfs)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise _unpack_error(digest, exc) from exc


def _open_layer(image: ImageSource, digest: str, media_type: str) -> contextlib.AbstractContextManager[IO[bytes]]:
    if "zstd" in media_type:
        raise Unsupported(f"layer {digest} is zstd-compressed; the sandbox unpacks gzip and plain tar layers")
    blob = image.open_blob(digest)
    if "gzip" in media_type:
        return contextlib.closing(gzip.GzipFile(fileobj=blob))  # type: ignore[arg-type]
    return contextlib.closing(blob)


class LayerCache:
    """Each layer unpacked once, on its own, with overlayfs whiteouts; a root filesystem is
    an overlay mount of an image's layers with a fresh writable layer on top.

    Layers are content-addressed, so a layer shared by images (a base image, the Debian of
    every test image) is unpacked once per machine, and starting a container costs a mount.
    ``mount`` returns None where overlayfs cannot be mounted; the caller unpacks instead.
    """

    def __init__(self, root: Path | None = None) -> None:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        self.root = root or Path(os.environ.get("MLPUBLISH_LAYER_CACHE") or base / "mlpublish" / "layers")

    def mount(self, image: ImageSource, target: Path, scratch: Path) -> Path | None:
        """Mount the image's root filesystem on ``target`` (upper layer in ``scratch``)."""
        if not _overlay_supported():
            return None
        names = [self._layer(image, digest, media_type) for digest, media_type in image.layers()]
        upper, workdir = scratch / "upper", scratch / "work"
        for directory in (target, upper, workdir):
            directory.mkdir(parents=True, exist_ok=True)
        lower = ":".join(reversed(names)) if names else self._empty()
        options = f"lowerdir={lower},upperdir={upper},workdir={workdir}"
        # Relative lower directories (resolved in cwd) keep the options under the page-size limit.
        # B607: mount and umount from util-linux, as root, on the developer's machine.
        mounted = subprocess.run(  # nosec B607
            ["mount", "-t", "overlay", "overlay", "-o", options, str(target)],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        if mounted.returncode != 0:
            return None
        return target

    def _empty(self) -> str:
        (self.root / "empty").mkdir(parents=True, exist_ok=True)
        return "empty"

    def _layer(self, image: ImageSource, digest: str, media_type: str) -> str:
        name = digest.replace("sha256:", "")[:32]
        final = self.root / name
        if final.is_dir():
            return name
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f"{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if final.is_dir():
                return name
            partial = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.root))
            try:
                with _open_layer(image, digest, media_type) as stream:
                    _apply_layer(stream, partial, overlay=True)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                shutil.rmtree(partial, ignore_errors=True)
                raise _unpack_error(digest, exc) from exc
            os.rename(partial, final)
        return name


def _overlay_supported() -> bool:
    try:
        return "overlay" in Path("/proc/filesystems").read_text() and os.geteuid() == 0
    except OSError:
        return False


def unmount(target: Path) -> None:
    """Unmount an overlay root filesystem (lazily, if something still holds it)."""
    if os.path.ismount(target):
        done = subprocess.run(["umount", str(target)], capture_output=True, check=False)  # nosec B607
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)  # nosec B607


def _unpack_error(digest: str, exc: BaseException) -> LocalValidationError:
    return LocalValidationError(
        f"ClientError: the image's layer {digest} cannot be unpacked ({exc}); "
        "rebuild and push the image (a truncated or corrupt layer fails on SageMaker too)"
    )


def _apply_layer(stream: IO[bytes], rootfs: Path, *, overlay: bool = False) -> None:
    """Extract one layer; whiteouts delete from ``rootfs`` or, with ``overlay``, become
    overlayfs whiteouts (a 0/0 character device; ``trusted.overlay.opaque`` on a directory)."""
    written: set[str] = set()
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            name = os.path.normpath(member.name.lstrip("/")).removeprefix("./")
            if name in {".", ""} or name.startswith(".."):
                continue
            directory, base = os.path.split(name)
            if base == ".wh..wh..opq":
                target = rootfs / directory
                if overlay:
                    target.mkdir(parents=True, exist_ok=True)
                    os.setxattr(target, "trusted.overlay.opaque", b"y")
                    continue
                if target.is_dir() and not target.is_symlink():
                    for child in target.iterdir():
                        if os.path.join(directory, child.name) not in written:
                            _remove(child)
                continue
            if base.startswith(".wh."):
                hidden = rootfs / directory / base[len(".wh.") :]
                _remove(hidden)
                if overlay:
                    hidden.parent.mkdir(parents=True, exist_ok=True)
                    os.mknod(hidden, stat.S_IFCHR | 0o600, os.makedev(0, 0))
                continue
            if member.ischr() or member.isblk() or member.isfifo():
                continue  # the runtime makes /dev
            target = rootfs / name
            if os.path.lexists(target) and (target.is_symlink() or not (target.is_dir() and member.isdir())):
                _remove(target)
            member.name = name
            tar.extract(member, rootfs, numeric_owner=True, filter="tar")
            written.add(name)


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def extract_model(artifact: bytes, destination: Path, url: str) -> None:
    """Extract a model.tar.gz into ``destination`` as SageMaker does into /opt/ml/model."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") as archive:
            archive.extractall(destination, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise LocalValidationError(
            f"ClientError: the model artifact {url} could not be extracted into /opt/ml/model ({exc}); "
            "it must be a gzip-compressed tar (tar czf model.tar.gz -C model .)"
        ) from exc


# ----------------------------------------------------------------------------- containers


class _NetnsConnection(http.client.HTTPConnection):
    """HTTP to 127.0.0.1 inside a container's network namespace (setns in a short-lived thread)."""

    def __init__(self, pid: int, port: int, timeout: float) -> None:
        super().__init__("127.0.0.1", port, timeout=timeout)
        self._pid = pid

    def connect(self) -> None:
        self.sock = connect_in_netns(self._pid, self.port, min(float(self.timeout or 1.0), 1.0))
        self.sock.settimeout(self.timeout)


def connect_in_netns(pid: int, port: int, timeout: float) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` in the network namespace of process ``pid``.

    setns(CLONE_NEWNET) moves only the calling thread, and a socket stays in the namespace it
    was made in, so a thread that enters, connects and ends leaves the process where it was.
    """
    result: dict[str, Any] = {}

    def enter_and_connect() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/proc/{pid}/ns/net") as namespace:
                if libc.setns(namespace.fileno(), _CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns: {os.strerror(error)}")
            result["socket"] = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=enter_and_connect, name="netns-connect")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["socket"]  # type: ignore[no-any-return]


@dataclass
class _Running:
    name: str
    container_id: str
    process: subprocess.Popen[bytes]
    pid: int
    port: int
    log: Path

    def exit_code(self) -> int | None:
        return self.process.poll()

    def last_lines(self, count: int = LOG_LINES) -> list[str]:
        try:
            text = self.log.read_bytes()[-16384:].decode("utf-8", "replace")
        except OSError:
            return []
        # Python's traceback carets (^^^^) say nothing in one line of text.
        return [line for line in text.splitlines() if line.strip(" ^~")][-count:]


class _Runtime:
    """Bundles and runc containers of one job; ``close()`` kills and removes them all."""

    def __init__(
        self, runc: str, work: Path, limits: Mapping[str, Any], deadlines: Deadlines, layers: LayerCache
    ) -> None:
        self.runc, self.work, self.limits, self.deadlines, self.layers = runc, work, limits, deadlines, layers
        self.running: list[_Running] = []

    def start(
        self,
        index: int,
        container: ContainerUnderTest,
        config: Mapping[str, Any],
        env: Mapping[str, str],
        port: int,
        netns_of: int | None,
        *,
        command: str = "serve",
        mounts: Sequence[tuple[Path, str]] = (),
    ) -> _Running:
        """``docker run IMAGE <command>``; ``mounts`` bind host directories (host path, container path)."""
        bundle = self.work / f"c{index}"
        rootfs = bundle / "rootfs"
        container_id = f"{ID_PREFIX}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{index}"
        spec = _bundle_config(container, config, env, self.limits, netns_of, command, mounts)
        _write_etc(rootfs, spec["hostname"])
        (bundle / "config.json").write_text(json.dumps(spec))
        log = bundle / "output.log"
        RUNC_ROOT.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as output:
            process = subprocess.Popen(
                [self.runc, "--root", str(RUNC_ROOT), "run", "--bundle", str(bundle), container_id],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running = _Running(container.name, container_id, process, 0, port, log)
        self.running.append(running)
        running.pid = self._init_pid(running)
        return running

    def _init_pid(self, running: _Running) -> int:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            state = subprocess.run(
                [self.runc, "--root", str(RUNC_ROOT), "state", running.container_id],
                capture_output=True,
                text=True,
                check=False,
            )
            if state.returncode == 0:
                pid = int(json.loads(state.stdout).get("pid") or 0)
                if pid:
                    return pid
            if running.exit_code() is not None:
                return 0
            time.sleep(0.01)
        raise LocalValidationError(f"ClientError: container {running.name} did not start within 30 s")

    def close(self) -> None:
        for running in reversed(self.running):
            if running.exit_code() is None:
                _stop(self.runc, running, self.deadlines.stop_grace)
            _destroy(self.runc, running.container_id)
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.process.wait(timeout=10)
        self.running.clear()
        for rootfs in sorted(self.work.glob("c*/rootfs")):
            unmount(rootfs)


def _stop(runc: str, running: _Running, grace: float) -> None:
    """SIGTERM, then SIGKILL after the grace period, as SageMaker stops a container."""
    root = ["--root", str(RUNC_ROOT)]
    subprocess.run([runc, *root, "kill", running.container_id, "TERM"], capture_output=True, check=False)
    try:
        running.process.wait(timeout=max(grace, 0.1))
    except subprocess.TimeoutExpired:
        subprocess.run([runc, *root, "kill", running.container_id, "KILL"], capture_output=True, check=False)
        with contextlib.suppress(subprocess.TimeoutExpired):
            running.process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(running.process.pid, signal.SIGKILL)


def _bundle_config(
    container: ContainerUnderTest,
    image_config: Mapping[str, Any],
    env: Mapping[str, str],
    limits: Mapping[str, Any],
    netns_of: int | None,
    command: str = "serve",
    mounts: Sequence[tuple[Path, str]] = (),
) -> dict[str, Any]:
    settings = image_config.get("config") or {}
    entrypoint = list(settings.get("Entrypoint") or [])
    args = [*entrypoint, command]  # `docker run IMAGE serve` (or train): the command replaces CMD
    variables = dict(item.split("=", 1) for item in settings.get("Env") or [] if "=" in item)
    variables.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    variables.update(env)
    uid, gid = process_user(image_config)
    hostname = re.sub(r"[^a-zA-Z0-9-]", "-", container.name)[:63] or "container"
    namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    namespaces.append({"type": "network", "path": f"/proc/{netns_of}/ns/net"} if netns_of else {"type": "network"})
    period = 100_000
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": [f"{key}={value}" for key, value in variables.items()],
            "cwd": settings.get("WorkingDir") or "/",
            "capabilities": {kind: list(_DOCKER_CAPABILITIES) for kind in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": _open_files(), "soft": _open_files()}],
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": hostname,
        "mounts": [
            *(
                {"destination": where, "type": kind, "source": kind, "options": list(options)}
                for where, kind, options in _MOUNTS
            ),
            *(
                {"destination": where, "type": "bind", "source": str(source), "options": ["rbind", "rw"]}
                for source, where in mounts
            ),
        ],
        "linux": {
            "namespaces": namespaces,
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "memory": {"limit": int(limits["memory_bytes"])},
                "cpu": {"quota": int(limits["cpus"] * period), "period": period},
                "pids": {"limit": 4096},
            },
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def process_user(image_config: Mapping[str, Any]) -> tuple[int, int]:
    """The uid and gid the image's ``User`` runs as (numeric ids; a user name runs as root here)."""
    user = str((image_config.get("config") or {}).get("User") or "0")
    uid, _, gid = user.partition(":")
    return (int(uid) if uid.isdigit() else 0, int(gid) if gid.isdigit() else 0)


def _open_files() -> int:
    """Docker's 1048576 open files where this process may grant them, else its own limit."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1048576 if hard == resource.RLIM_INFINITY else min(hard, 1048576)


def _write_etc(rootfs: Path, hostname: str) -> None:
    """/etc/hosts and /etc/hostname, as the container runtime provides them."""
    etc = rootfs / "etc"
    for name in ("hosts", "hostname"):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            (etc / name).unlink()
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1\t{hostname}\n")
    (etc / "hostname").write_text(f"{hostname}\n")


# ----------------------------------------------------------------------------- requests


@dataclass
class _Answer:
    status: int | None
    body: bytes
    content_type: str
    error: str | None
    seconds: float


def _request(
    running: _Running,
    method: str,
    path: str,
    timeout: float,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> _Answer:
    started = time.monotonic()
    connection = _NetnsConnection(running.pid, running.port, timeout)
    try:
        connection.request(method, path, body=body if method == "POST" else None, headers=dict(headers or {}))
        response = connection.getresponse()
        data = response.read()
        kind = response.getheader("Content-Type") or ""
        return _Answer(response.status, data, kind, None, time.monotonic() - started)
    except TimeoutError:
        return _Answer(None, b"", "", f"no answer within {timeout:g} s", time.monotonic() - started)
    except (OSError, http.client.HTTPException) as exc:
        reason = f"nothing listens on port {running.port}" if isinstance(exc, ConnectionRefusedError) else str(exc)
        return _Answer(None, b"", "", reason or type(exc).__name__, time.monotonic() - started)
    finally:
        connection.close()


# ----------------------------------------------------------------------------- records


def split_records(data: bytes, split_type: str) -> list[bytes]:
    """The records SageMaker makes of one input object for ``SplitType``."""
    if split_type == "Line":
        return [line for line in data.splitlines(keepends=True) if line.strip()]
    if split_type == "RecordIO":
        return _recordio(data)
    if split_type == "TFRecord":
        return _tfrecord(data)
    return [data] if data else []


def _recordio(data: bytes) -> list[bytes]:
    records, offset = [], 0
    while offset + 8 <= len(data):
        magic, header = struct.unpack_from("<II", data, offset)
        if magic != 0xCED7230A:
            raise LocalValidationError(f"ClientError: the input is not RecordIO (bad magic at byte {offset})")
        length = header & ((1 << 29) - 1)
        end = offset + 8 + length + (-length % 4)
        records.append(data[offset:end])
        offset = end
    return records


def _tfrecord(data: bytes) -> list[bytes]:
    records, offset = [], 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        end = offset + 12 + length + 4
        if end > len(data):
            raise LocalValidationError(f"ClientError: the input is not TFRecord (record at byte {offset} overruns)")
        records.append(data[offset:end])
        offset = end
    return records


def mini_batches(records: Sequence[bytes], strategy: str, max_payload: int) -> list[bytes]:
    """Requests' bodies: one record each (SingleRecord) or as many as fit (MultiRecord)."""
    batches: list[bytes] = []
    current = b""
    for number, record in enumerate(records, start=1):
        if len(record) > max_payload:
            raise LocalValidationError(
                f"ClientError: record {number} of the validation input is {len(record) / MB:.1f} MB, over "
                f"MaxPayloadInMB={max_payload // MB}; split the input into smaller records or raise max_payload_mb"
            )
        if strategy == "SingleRecord":
            batches.append(record)
        elif current and len(current) + len(record) > max_payload:
            batches.append(current)
            current = record
        else:
            current += record
    if current:
        batches.append(current)
    return batches


# ----------------------------------------------------------------------------- the job


def run_transform_job(
    job: TransformJob,
    containers: Sequence[ContainerUnderTest],
    storage: JobStorage,
    deadlines: Deadlines | None = None,
    *,
    runc: str | None = None,
    layers: LayerCache | None = None,
    cancel: threading.Event | None = None,
) -> JobResult:
    """Run the job; the result holds the FailureReason (None when it passed) and every request.

    Setting ``cancel`` (the sandbox is stopping) ends the job at its next request, as
    :class:`Cancelled`; its containers are removed either way.
    """
    deadlines = deadlines or Deadlines()
    runc = runc or runc_path()
    if runc is None:
        raise Unsupported("runc is not installed")
    sweep(runc)
    started = time.monotonic()
    result = JobResult(job.profile_name, limits=limits_for(job.instance_type))
    work = Path(tempfile.mkdtemp(prefix=f"{ID_PREFIX}-{os.getpid()}-"))
    runtime = _Runtime(runc, work, result.limits, deadlines, layers or LayerCache())
    _LIVE.add(runtime)
    try:
        _Job(job, containers, storage, deadlines, runtime, result, started, cancel or threading.Event()).run()
    except LocalValidationError as exc:
        result.failure_reason = exc.reason[:2048]
    finally:
        runtime.close()
        _LIVE.discard(runtime)
        shutil.rmtree(work, ignore_errors=True)
        result.seconds = time.monotonic() - started
    return result


class Cancelled(Exception):
    """The job was cancelled before it ended (the sandbox is stopping)."""


# Jobs running in this process: their containers are removed at exit, whatever thread ran them.
_LIVE: set[_Runtime] = set()


@atexit.register
def _remove_live_containers() -> None:
    for runtime in list(_LIVE):
        runtime.deadlines = dataclasses.replace(runtime.deadlines, stop_grace=0.0)
        runtime.close()


class _Job:
    def __init__(
        self,
        job: TransformJob,
        containers: Sequence[ContainerUnderTest],
        storage: JobStorage,
        deadlines: Deadlines,
        runtime: _Runtime,
        result: JobResult,
        started: float,
        cancel: threading.Event,
    ) -> None:
        self.job, self.containers, self.storage = job, containers, storage
        self.deadlines, self.runtime, self.result, self.started = deadlines, runtime, result, started
        self.cancel = cancel
        self.pipeline = len(containers) > 1

    def _check_budget(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(f"the transform job for {self.job.profile_name} was cancelled")
        if time.monotonic() - self.started > self.deadlines.budget:
            raise LocalValidationError(
                f"ClientError: the transform job ran over the sandbox's {self.deadlines.budget:g} s budget"
            )

    def run(self) -> None:
        definition = self.job.definition
        transform_input = self.job.input
        source = (transform_input.get("DataSource") or {}).get("S3DataSource") or {}
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise Unsupported(f"S3DataType {source.get('S3DataType')} (the sandbox reads S3Prefix inputs)")
        running = self._start_all(definition)
        parameters = self._execution_parameters(running[0])
        strategy = definition.get("BatchStrategy") or parameters.get("BatchStrategy") or "MultiRecord"
        max_payload = int(definition.get("MaxPayloadInMB") or parameters.get("MaxPayloadInMB") or 6) * MB
        split = transform_input.get("SplitType") or "None"
        content_type = transform_input.get("ContentType") or "application/octet-stream"
        accept = self.job.output.get("Accept") or content_type
        inputs = self.storage.list(source["S3Uri"])
        if not inputs:
            raise LocalValidationError(f"ClientError: no validation input under {source['S3Uri']}")
        for uri in inputs:
            data = self.storage.read(uri)
            if transform_input.get("CompressionType") == "Gzip":
                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError, zlib.error) as exc:
                    raise LocalValidationError(
                        f"ClientError: {uri} is not gzip-compressed although CompressionType is Gzip ({exc})"
                    ) from exc
            answers = []
            for body in mini_batches(split_records(data, split), strategy, max_payload):
                answers.append(self._through_pipeline(running, body, content_type, accept, max_payload))
            self._write_output(uri, source["S3Uri"], answers)

    def _start_all(self, definition: Mapping[str, Any]) -> list[_Running]:
        running: list[_Running] = []
        max_payload_mb = definition.get("MaxPayloadInMB") or 6
        for index, container in enumerate(self.containers):
            bundle = self.runtime.work / f"c{index}"
            config = container.image.config()
            architecture = config.get("architecture", "amd64")
            if self.runtime.layers.mount(container.image, bundle / "rootfs", bundle / "overlay") is None:
                unpack_image(container.image, bundle / "rootfs")
            if container.model_data_url:
                extract_model(
                    self.storage.read(container.model_data_url),
                    bundle / "rootfs" / "opt" / "ml" / "model",
                    container.model_data_url,
                )
            env = {"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(max_payload_mb)}
            if definition.get("BatchStrategy"):
                env["SAGEMAKER_BATCH_STRATEGY"] = str(definition["BatchStrategy"])
            env.update(container.environment)
            env.update(definition.get("Environment") or {})
            port = SERVING_PORT
            if self.pipeline:
                port = PIPELINE_FIRST_PORT + index
                env["SAGEMAKER_BIND_TO_PORT"] = str(port)
                env["SAGEMAKER_SAFE_PORT_RANGE"] = f"{PIPELINE_FIRST_PORT + 100}-{PIPELINE_FIRST_PORT + 199}"
            netns_of = running[0].pid if running else None
            started = self.runtime.start(index, container, config, env, port, netns_of)
            if started.pid == 0:
                self._exited(started, "before it could be reached", architecture)
            running.append(started)
            self._await_ping(started, architecture)
        return running

    def _await_ping(self, running: _Running, architecture: str) -> None:
        began = time.monotonic()
        end = began + self.deadlines.ping_startup
        tries, last = 0, _Answer(None, b"", "", "not tried", 0.0)
        while time.monotonic() < end:
            if running.exit_code() is not None:
                self._record(running, "GET /ping", last, tries, began, outcome="container exited")
                self._exited(running, "before /ping answered 200", architecture)
            self._check_budget()
            tries += 1
            last = _request(running, "GET", "/ping", self.deadlines.ping_timeout)
            if last.status == 200:
                self._record(running, "GET /ping", last, tries, began, outcome="200 OK")
                return
            time.sleep(min(0.1, self.deadlines.ping_timeout))
        self._record(running, "GET /ping", last, tries, began, outcome="no 200 within the startup deadline")
        how = f"HTTP {last.status}" if last.status else (last.error or "no answer")
        self._fail(
            running,
            f"the container did not answer GET /ping with 200 within {self.deadlines.ping_startup:g} s of start "
            f"(last try: {how}; {tries} tries). It must listen on port {running.port}"
            + (" (SAGEMAKER_BIND_TO_PORT)" if self.pipeline else "")
            + " and answer /ping within 2 s",
        )

    def _execution_parameters(self, running: _Running) -> dict[str, Any]:
        answer = _request(running, "GET", "/execution-parameters", self.deadlines.ping_timeout * 5)
        outcome = f"{answer.status}" if answer.status else (answer.error or "no answer")
        self.result.requests.append(
            RequestRecord(running.name, "GET /execution-parameters", outcome, answer.status, answer.seconds)
        )
        if answer.status != 200:
            return {}
        try:
            parameters = json.loads(answer.body)
        except ValueError:
            return {}
        if not isinstance(parameters, dict):
            return {}
        strategy = {"MULTI_RECORD": "MultiRecord", "SINGLE_RECORD": "SingleRecord"}
        if "BatchStrategy" in parameters:
            parameters["BatchStrategy"] = strategy.get(str(parameters["BatchStrategy"]), parameters["BatchStrategy"])
        return parameters

    def _through_pipeline(
        self, running: Sequence[_Running], body: bytes, content_type: str, accept: str, max_payload: int
    ) -> bytes:
        for container in running:
            answer = self._invoke(container, body, content_type, accept, max_payload)
            body, content_type = answer.body, answer.content_type or content_type
        return body

    def _invoke(self, running: _Running, body: bytes, content_type: str, accept: str, max_payload: int) -> _Answer:
        headers = {"Content-Type": content_type, "Accept": accept}
        began = time.monotonic()
        request = f"POST /invocations ({len(body)} bytes)"
        answer = _Answer(None, b"", "", "not tried", 0.0)
        for attempt in range(1, INVOCATION_RETRIES + 2):
            self._check_budget()
            answer = _request(running, "POST", "/invocations", self.deadlines.invocation_timeout, body, headers)
            if answer.status is not None and 200 <= answer.status < 300:
                if len(answer.body) > max_payload:
                    self._record(running, request, answer, attempt, began, outcome="response too large")
                    self._fail(
                        running,
                        f"{request} answered {len(answer.body) / MB:.1f} MB, over MaxPayloadInMB="
                        f"{max_payload // MB} (a real-time endpoint caps responses at 6 MB)",
                    )
                self._record(running, request, answer, attempt, began, outcome=f"{answer.status}")
                return answer
            if running.exit_code() is not None:
                self._record(running, request, answer, attempt, began, outcome="container exited")
                self._exited(running, f"while answering {request}", None)
        how = f"HTTP {answer.status}" if answer.status else (answer.error or "no answer")
        self._record(running, request, answer, INVOCATION_RETRIES + 1, began, outcome=how)
        self._fail(running, f"{request} failed: {how} (tried {INVOCATION_RETRIES + 1} times)")
        raise AssertionError("unreachable")

    def _write_output(self, uri: str, prefix: str, answers: Sequence[bytes]) -> None:
        if self.job.output.get("AssembleWith") == "Line":
            output = b"".join(a if a.endswith(b"\n") else a + b"\n" for a in answers)
        else:
            output = b"".join(answers)
        relative = uri[len(prefix) :].lstrip("/") or uri.rsplit("/", 1)[-1]
        destination = f"{self.job.output['S3OutputPath'].rstrip('/')}/{relative}.out"
        self.storage.write(destination, output)
        self.result.outputs.append(destination)

    # ------------------------------------------------------------------ failing

    def _record(
        self, running: _Running, request: str, answer: _Answer, tries: int, began: float, *, outcome: str
    ) -> None:
        self.result.requests.append(
            RequestRecord(running.name, request, outcome, answer.status, time.monotonic() - began, tries)
        )

    def _exited(self, running: _Running, when: str, architecture: str | None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            running.process.wait(timeout=5)
        code = running.exit_code()
        hint = ""
        lines = running.last_lines()
        if any("exec format error" in line for line in lines):
            hint = f"; its entrypoint is not an x86-64 program (image architecture {architecture or 'unknown'})"
        self.result.requests.append(RequestRecord(running.name, "the container", f"exited with code {code} {when}"))
        self._fail(running, f"the container exited with code {code} {when}{hint}")

    def _fail(self, running: _Running, what: str) -> None:
        lines = running.last_lines()
        log = " | ".join(line.strip()[:200] for line in lines) if lines else "(no output)"
        container = self.containers[[r.name for r in self.runtime.running].index(running.name)]
        raise LocalValidationError(
            f"ClientError: transform job for validation profile {self.job.profile_name}, container "
            f"{running.name} ({container.image_uri}): {what}. Last log lines: {log}"
        )


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainingJob:
    """A validation profile's TrainingJobDefinition, as CreateAlgorithm received it.

    ``job_name`` names the job's output: SageMaker writes the trained model to
    ``S3OutputPath/<job name>/output/model.tar.gz``.
    """

    profile_name: str
    job_name: str
    definition: Mapping[str, Any]

    @property
    def channels(self) -> list[Mapping[str, Any]]:
        return list(self.definition.get("InputDataConfig") or [])

    @property
    def instance_type(self) -> str:
        return str((self.definition.get("ResourceConfig") or {}).get("InstanceType") or "ml.m5.large")

    @property
    def max_runtime(self) -> float:
        """StoppingCondition.MaxRuntimeInSeconds (SageMaker's default: one day)."""
        return float((self.definition.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds") or 86400)

    @property
    def model_uri(self) -> str:
        output = str((self.definition.get("OutputDataConfig") or {}).get("S3OutputPath") or "")
        return f"{output.rstrip('/')}/{self.job_name}/output/model.tar.gz"


def training_config(definition: Mapping[str, Any]) -> dict[str, bytes]:
    """The files SageMaker writes to /opt/ml/input/config for a training job, by name.

    ``hyperparameters.json``: the profile's, every value a string, as CreateTrainingJob's
    HyperParameters map is (whether SageMaker adds the algorithm's DefaultValues is not
    confirmed, so the sandbox does not).
    ``inputdataconfig.json``: one entry per channel, with the keys of SageMaker's documented
    example (ContentType when the channel has one, TrainingInputMode, S3DistributionType,
    RecordWrapperType) and the channel's CompressionType when it sets one.
    ``resourceconfig.json``: one host, ``algo-1``, on ``eth0``.
    Raises :class:`Unsupported` for what the sandbox does not run: Pipe mode (a FIFO per epoch),
    manifest data sources, more than one instance.
    """
    default_mode = str(definition.get("TrainingInputMode") or "File")
    channels: dict[str, dict[str, str]] = {}
    for channel in definition.get("InputDataConfig") or []:
        name = str(channel["ChannelName"])
        source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise Unsupported(f"channel {name}: S3DataType {source.get('S3DataType')} (the sandbox reads S3Prefix)")
        mode = str(channel.get("InputMode") or default_mode)
        if mode == "Pipe":
            raise Unsupported(f"channel {name}: Pipe input mode (the sandbox trains in File mode)")
        entry: dict[str, str] = {}
        if channel.get("ContentType"):
            entry["ContentType"] = str(channel["ContentType"])
        entry["TrainingInputMode"] = mode
        entry["S3DistributionType"] = str(source.get("S3DataDistributionType") or "FullyReplicated")
        entry["RecordWrapperType"] = str(channel.get("RecordWrapperType") or "None")
        if channel.get("CompressionType"):
            entry["CompressionType"] = str(channel["CompressionType"])
        channels[name] = entry
    if int((definition.get("ResourceConfig") or {}).get("InstanceCount") or 1) > 1:
        raise Unsupported("distributed training (ResourceConfig.InstanceCount over 1); the sandbox trains on one host")
    hyperparameters = {str(key): str(value) for key, value in (definition.get("HyperParameters") or {}).items()}
    resources = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}
    return {
        "hyperparameters.json": json.dumps(hyperparameters).encode(),
        "inputdataconfig.json": json.dumps(channels).encode(),
        "resourceconfig.json": json.dumps(resources).encode(),
    }


def algorithm_error(failure: str, exit_code: int | None) -> str:
    """SageMaker's FailureReason for a training container that exited non-zero:
    ``AlgorithmError: <its /opt/ml/output/failure>, exit code: N``, at most 1024 characters
    (the file's text is cut to fit; trailing whitespace dropped)."""
    prefix, suffix = "AlgorithmError: ", f", exit code: {exit_code}"
    room = FAILURE_REASON_MAX - len(prefix) - len(suffix)
    return f"{prefix}{failure.rstrip()[:room]}{suffix}"


def channel_objects(storage: JobStorage, uri: str) -> list[tuple[str, str]]:
    """(path under /opt/ml/input/data/<channel>/, object URI) of each object under an S3Prefix:
    the key after the prefix's last ``/``, as SageMaker lays a File-mode channel out."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    base = f"s3://{bucket}/{key.rpartition('/')[0]}/" if "/" in key else f"s3://{bucket}/"
    found = []
    for item in storage.list(uri):
        relative = os.path.normpath(item[len(base) :])
        if item.endswith("/") or relative.startswith(("..", "/")) or relative == ".":
            continue  # a folder marker, or a key that would land outside the channel
        found.append((relative, item))
    return found


def model_archive(model_dir: Path) -> bytes:
    """/opt/ml/model as the model.tar.gz SageMaker uploads (empty when training wrote nothing)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(model_dir.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
    return buffer.getvalue()


def run_training_job(
    job: TrainingJob,
    container: ContainerUnderTest,
    storage: JobStorage,
    deadlines: Deadlines | None = None,
    *,
    runc: str | None = None,
    layers: LayerCache | None = None,
    cancel: threading.Event | None = None,
) -> JobResult:
    """Run the training job: ``train`` in the training image, its channels' objects in
    /opt/ml/input/data, then /opt/ml/model uploaded as ``job.model_uri`` (the result's output).

    The result holds the training job's FailureReason (None when it completed). Setting
    ``cancel`` ends the job as :class:`Cancelled`; its container is removed either way.
    """
    deadlines = deadlines or Deadlines()
    runc = runc or runc_path()
    if runc is None:
        raise Unsupported("runc is not installed")
    sweep(runc)
    started = time.monotonic()
    result = JobResult(job.profile_name, limits=limits_for(job.instance_type), job="training")
    work = Path(tempfile.mkdtemp(prefix=f"{ID_PREFIX}-{os.getpid()}-"))
    runtime = _Runtime(runc, work, result.limits, deadlines, layers or LayerCache())
    _LIVE.add(runtime)
    try:
        _Training(job, container, storage, deadlines, runtime, result, started, cancel or threading.Event()).run()
    except LocalValidationError as exc:
        result.failure_reason = exc.reason[:FAILURE_REASON_MAX]
    finally:
        runtime.close()
        _LIVE.discard(runtime)
        shutil.rmtree(work, ignore_errors=True)
        result.seconds = time.monotonic() - started
    return result


def run_algorithm_profile(
    training: TrainingJob,
    trainer: ContainerUnderTest,
    transform: TransformJob | None,
    inference: Sequence[ContainerUnderTest],
    storage: JobStorage,
    deadlines: Deadlines | None = None,
    *,
    runc: str | None = None,
    layers: LayerCache | None = None,
    cancel: threading.Event | None = None,
) -> list[JobResult]:
    """An algorithm's validation profile: the training job, then (when it completed and the
    profile has one) the transform job on the inference containers serving the trained model.

    The trained model goes to every inference container that names no model of its own.
    """
    layers = layers or LayerCache()
    trained = run_training_job(training, trainer, storage, deadlines, runc=runc, layers=layers, cancel=cancel)
    results = [trained]
    if trained.passed and transform is not None:
        serving = [dataclasses.replace(c, model_data_url=c.model_data_url or training.model_uri) for c in inference]
        results.append(
            run_transform_job(transform, serving, storage, deadlines, runc=runc, layers=layers, cancel=cancel)
        )
    return results


class _Training:
    def __init__(
        self,
        job: TrainingJob,
        container: ContainerUnderTest,
        storage: JobStorage,
        deadlines: Deadlines,
        runtime: _Runtime,
        result: JobResult,
        started: float,
        cancel: threading.Event,
    ) -> None:
        self.job, self.container, self.storage = job, container, storage
        self.deadlines, self.runtime, self.result, self.started = deadlines, runtime, result, started
        self.cancel = cancel

    def run(self) -> None:
        config = self.container.image.config()
        files = training_config(self.job.definition)
        ml = self.runtime.work / "ml"
        (ml / "input" / "config").mkdir(parents=True)
        for name, body in files.items():
            (ml / "input" / "config" / name).write_bytes(body)
        for channel in self.job.channels:
            self._download(ml / "input" / "data" / str(channel["ChannelName"]), channel)
        for writable in (ml / "model", ml / "output"):
            writable.mkdir()
            os.chown(writable, *process_user(config))
        bundle = self.runtime.work / "c0"
        if self.runtime.layers.mount(self.container.image, bundle / "rootfs", bundle / "overlay") is None:
            unpack_image(self.container.image, bundle / "rootfs")
        mounts = [(ml / name, f"/opt/ml/{name}") for name in ("input", "model", "output")]
        env = {"TRAINING_JOB_NAME": self.job.job_name}
        began = time.monotonic()
        running = self.runtime.start(0, self.container, config, env, SERVING_PORT, None, command="train", mounts=mounts)
        code = self._wait(running, began)
        if code != 0:
            lines = " | ".join(line.strip()[:200] for line in running.last_lines()) or "(no output)"
            self._record(running, f"exited with code {code}; last log lines: {lines}", began)
            failure = ml / "output" / "failure"
            text = failure.read_bytes().decode("utf-8", "replace") if failure.is_file() else ""
            raise LocalValidationError(algorithm_error(text, code))
        self._record(running, "exited with code 0", began)
        self.storage.write(self.job.model_uri, model_archive(ml / "model"))
        self.result.outputs.append(self.job.model_uri)

    def _download(self, directory: Path, channel: Mapping[str, Any]) -> None:
        uri = str(channel["DataSource"]["S3DataSource"]["S3Uri"])
        objects = channel_objects(self.storage, uri)
        if not objects:
            raise LocalValidationError(
                f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data source.'
            )
        directory.mkdir(parents=True, exist_ok=True)
        for relative, item in objects:
            self._check_budget()
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.storage.read(item))

    def _wait(self, running: _Running, began: float) -> int:
        limit = self.job.max_runtime * self.deadlines.scale
        while True:
            code = running.exit_code()
            # An exit first seen past the limit counts as past it: this process may not have looked
            # in time (a busy machine), and SageMaker would have stopped the job at the limit.
            if time.monotonic() - began <= limit:
                if code is not None:
                    return code
            else:
                if code is None:
                    _stop(self.runtime.runc, running, self.deadlines.training_stop_grace)
                self._record(running, f"stopped after MaxRuntimeInSeconds ({limit:g} s)", began)
                scaled = f" (scaled to {limit:g} s)" if limit != self.job.max_runtime else ""
                raise LocalValidationError(
                    f"ClientError: training job for validation profile {self.job.profile_name}: the training job "
                    f"was stopped at StoppingCondition.MaxRuntimeInSeconds={self.job.max_runtime:g}{scaled} before "
                    "`train` exited (SecondaryStatus MaxRuntimeExceeded); validation needs it to complete"
                )
            self._check_budget()
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.process.wait(timeout=min(0.1, max(0.0, began + limit - time.monotonic()) + 0.001))

    def _check_budget(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(f"the training job for {self.job.profile_name} was cancelled")
        if time.monotonic() - self.started > self.deadlines.budget:
            raise LocalValidationError(
                f"ClientError: the training job ran over the sandbox's {self.deadlines.budget:g} s budget"
            )

    def _record(self, running: _Running, outcome: str, began: float) -> None:
        self.result.requests.append(RequestRecord(running.name, "train", outcome, None, time.monotonic() - began))


# ----------------------------------------------------------------------------- sources


@dataclass
class LayoutImage:
    """An :class:`ImageSource` over a manifest, its config and a blob opener."""

    manifest: Mapping[str, Any]
    opener: Callable[[str], IO[bytes]]
    _config: dict[str, Any] | None = None

    def config(self) -> dict[str, Any]:
        if self._config is None:
            with self.opener(self.manifest["config"]["digest"]) as blob:
                self._config = json.loads(blob.read())
        return self._config

    def layers(self) -> list[tuple[str, str]]:
        return [(layer["digest"], str(layer.get("mediaType") or "")) for layer in self.manifest.get("layers") or []]

    def open_blob(self, digest: str) -> IO[bytes]:
        return self.opener(digest)


def request_lines(result: JobResult) -> Iterator[str]:
    """Lines for a person: each request and its outcome."""
    for record in result.requests:
        tries = f" ({record.tries} tries)" if record.tries > 1 else ""
        yield f"{record.container}: {record.request} -> {record.outcome}{tries} in {record.seconds:.2f} s"

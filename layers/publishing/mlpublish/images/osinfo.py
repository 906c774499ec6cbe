"""Which OS an image is built on, read from its own files, and whether ECR can scan it.

AWS Marketplace rejects an image whose OS ECR cannot scan (``UnscannableImage``), and ECR
tells the OS from the image's os-release file. Reading that file before anything is
copied lets ResolveRelease stop such a release at once, rather than after the copy and
the scan.

Layers are read from the top of the image down, and each only as far as needed: a higher
layer's entry wins over anything below it (OCI image-spec ``layer.md``: a later layer replaces
an earlier one's entry, ``.wh.NAME`` deletes NAME below it and ``.wh..wh..opq`` empties its
directory below it), so an entry found in a layer is final as soon as every layer above it is
known not to touch that path, and nothing beneath it need be read. A layer above can only be
known not to touch a path by reading it to its end (a tar has no index); the layer where the
answer is settled is read only up to the entry that settles it. As os-release(5) says,
``/etc/os-release`` is read first (on Debian and Ubuntu a symlink to ``../usr/lib/os-release``,
later in the same tar or in another layer) and ``/usr/lib/os-release`` is the fallback. The
bytes read are counted against a budget of bytes actually served (not the layers' declared
sizes) and a deadline, whatever the image's size, and reported with the result.

Memory stays at one download chunk however large a layer is. A layer read to its end is
checked against its digest and gzip CRC; a layer left part-read is not (reading on would
defeat the point): the copy verifies every blob it publishes, and the download is over TLS.
Within one layer the first entry for a path is taken (image builders write each path once).

A budget or deadline spent before the answer is certain leaves the OS unknown, saying so:
ECR's scan after the copy decides then. Layers that were read but in which os-release cannot
be resolved (a symlink loop, a dangling link, a layer that is not a readable or complete tar)
raise OsReleaseUnresolved: ECR could not tell the OS of such an image either, and a container
runtime could not unpack a broken layer.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import posixpath
import shlex
import tarfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from mlpublish.errors import BlobDigestMismatch, ImageScanBlocked, UnsupportedImage
from mlpublish.images.manifests import BUILD_HINT, DEFAULT_PLATFORM, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR
from mlpublish.state import BlobRef

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
# Compressed bytes read per image at most (counted as served, so at most one download chunk
# more). An image whose answer needs more is reported as of uncertain OS, not blocked: a large
# image is no sign of a missing OS, and reading it would take longer than ResolveRelease should.
READ_BUDGET = 512 * MiB
# Seconds spent reading layers per release at most, well within ResolveRelease's timeout: a
# layer of many small files costs far more time than its compressed size suggests.
READ_SECONDS = 60.0
OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")  # in the order os-release(5) reads them
MAX_OS_RELEASE_BYTES = 64 * 1024
MAX_SYMLINK_HOPS = 8
DRAIN_CHUNK = 64 * 1024
TAR_BLOCK = 512
MAX_NAME_CHARS = 120  # PRETTY_NAME as stored in the release state
MAX_CONFIG_BYTES = 8 * MiB  # an image config is JSON of a few KiB; its history makes it larger at most

# os-release IDs of the families ECR basic scanning supports (ECR basic scanning supported
# OS list, see /work/shared/marketplace-facts.md §8): Amazon Linux, Debian, Ubuntu, CentOS,
# Oracle Linux, Alpine and RHEL. Matched on ID only: Rocky Linux and AlmaLinux declare
# ID_LIKE="rhel ..." but are named only by Amazon Inspector (enhanced scanning), which the
# pipeline does not enable, so they are not taken as scannable.
SCANNABLE_IDS = frozenset({"amzn", "debian", "ubuntu", "centos", "ol", "alpine", "rhel"})
SCANNABLE_NAMES = "Amazon Linux, Debian, Ubuntu, Alpine, RHEL, CentOS or Oracle Linux"

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

BlobOpener = Callable[[str], AbstractContextManager[Iterable[bytes]]]

OS_RELEASE_FIX = (
    "ECR tells an image's OS from its os-release file and cannot scan an image whose OS it cannot tell, "
    "and AWS Marketplace rejects images it cannot scan (UnscannableImage); make /etc/os-release a regular "
    "file, or a relative symlink to ../usr/lib/os-release that is one (as distributions' base images have "
    "it), and push the image again"
)


class OsReleaseUnresolved(ImageScanBlocked):
    """The layers were read, but os-release cannot be resolved in them.

    ``problem`` names the file (or layer) and the fix; ``layers`` are the digests of the
    image's layers, by which a caller that knows the images names the one concerned.
    """

    def __init__(self, problem: str, *, layers: Sequence[str]) -> None:
        super().__init__(f"the image's OS cannot be told: {problem}")
        self.problem, self.layers = problem, tuple(layers)


class OsRelease(BaseModel):
    """The fields of an os-release file that say which OS it is."""

    model_config = ConfigDict(frozen=True)

    id: str
    id_like: tuple[str, ...] = ()
    version_id: str | None = None
    pretty_name: str | None = None

    @property
    def name(self) -> str:
        """E.g. ``Debian GNU/Linux 12 (bookworm)``; from ID and VERSION_ID without a PRETTY_NAME."""
        name = self.pretty_name or " ".join(part for part in (self.id, self.version_id) if part)
        return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 3] + "..."

    @property
    def scannable(self) -> bool:
        return self.id in SCANNABLE_IDS


@dataclass(frozen=True)
class OsDetection:
    """What the layers say: the OS, no OS at all, or unknown (``unknown`` says why: the budget or
    the time ran out before the answer was certain, a layer of a media type not read, bytes
    served wrong). ``bytes_read`` counts the layer bytes downloaded to find out; ``remembered``
    says the answer is an earlier read's, recorded for the same manifest digest."""

    os: OsRelease | None
    unknown: str | None = None
    bytes_read: int = 0
    remembered: bool = False

    @property
    def absent(self) -> bool:
        """Every layer was read and none leaves an os-release file."""
        return self.os is None and self.unknown is None


def detect_os(
    layers: Sequence[BlobRef], open_blob: BlobOpener, *, budget: int = READ_BUDGET, deadline: float | None = None
) -> OsDetection:
    """The OS of the image whose layers, bottom first, are ``layers``.

    ``open_blob(digest)`` streams a blob's stored bytes. Layers are read from the top down,
    each only until the answer is certain. Reading stops, with an unknown result, once more
    than ``budget`` bytes were served or ``deadline`` (a ``time.monotonic()`` value) passes.
    Raises OsReleaseUnresolved when a layer read is not a readable, complete tar, or when
    os-release, present, cannot be followed to a file.
    """
    reader = _Budget(budget, deadline)
    above: dict[str, _Entry | None] = {}  # the os-release paths as the layers read so far settle them
    digests = [layer.digest for layer in layers]
    for number in range(len(layers), 0, -1):
        layer = layers[number - 1]
        where = f"layer {number} of {len(layers)} ({layer.digest})"
        if layer.media_type not in (DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR):
            return OsDetection(None, f"{where} has media type {layer.media_type}, which is not read", reader.spent)
        broken: Exception | None = None
        try:
            with open_blob(layer.digest) as chunks:
                raw = _ChunkReader(iter(chunks), reader)
                try:
                    found, whole = _read_layer(
                        raw, gzipped=layer.media_type == DOCKER_LAYER_GZIP, above=above, bottom=number == 1
                    )
                except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                    broken, found, whole = exc, _UNDECIDED, True
                if whole:  # so that the digest covers the blob (a layer left part-read is not checked)
                    raw.drain()
        except _OverBudget as exc:
            return OsDetection(
                None, f"{exc} after {format_size(reader.spent)}, in layer {number} of {len(layers)}", reader.spent
            )
        if whole and (raw.digest != layer.digest or raw.count != layer.size):
            # Bytes corrupted on the way say nothing about the image: the copy verifies every
            # blob and refuses this one, naming it.
            return OsDetection(None, f"layer {layer.digest} was served as other bytes ({raw.digest})", reader.spent)
        if broken is not None:
            # The layer's own bytes are broken: known here, and once dropped ("not detected").
            raise OsReleaseUnresolved(
                f"/etc/os-release cannot be resolved: {where} is not a "
                f"readable, complete tar ({broken or type(broken).__name__}), and a container runtime could not unpack "
                "it either; rebuild the image with a tool that writes whole layers (e.g. "
                f"{BUILD_HINT.format(platform=DEFAULT_PLATFORM)}) and push it again",
                layers=digests,
            ) from broken
        if isinstance(found, list):
            raise OsReleaseUnresolved("; ".join(found) + f"; {OS_RELEASE_FIX}", layers=digests)
        if isinstance(found, OsDetection):
            return dataclasses.replace(found, bytes_read=reader.spent)
    return OsDetection(None)  # no layers at all


@dataclass(frozen=True)
class ImagePlatform:
    """What an image's config says it runs on: ``os``, ``architecture`` and ``variant`` as written."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


def read_platform(config: BlobRef, open_blob: BlobOpener) -> ImagePlatform:
    """The platform the image config blob ``config`` (a manifest's config descriptor) declares.

    Read through the same registry adapter as the layers, checked against its digest.
    """
    if config.size > MAX_CONFIG_BYTES:
        raise UnsupportedImage(
            f"image config {config.digest} is {config.size} bytes, more than the {MAX_CONFIG_BYTES} an image "
            "config can reasonably hold; rebuild the image and push it again"
        )
    data = bytearray()
    with open_blob(config.digest) as chunks:
        for chunk in chunks:
            data += chunk
            if len(data) > config.size:
                break
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if len(data) != config.size or actual != config.digest:
        raise BlobDigestMismatch(
            f"the registry served image config {config.digest} as {len(data)} bytes hashing to {actual}; "
            "nothing was copied. Re-run the release; if it persists, push the image again."
        )
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise UnsupportedImage(f"image config {config.digest} is not JSON ({exc}); rebuild the image") from exc
    if not isinstance(document, dict):
        raise UnsupportedImage(f"image config {config.digest} is not a JSON object; rebuild the image")
    return ImagePlatform(
        os=str(document.get("os") or ""),
        architecture=str(document.get("architecture") or ""),
        variant=str(document.get("variant") or ""),
    )


def parse_os_release(text: str) -> OsRelease:
    """Parse os-release(5): ``KEY=value`` lines, values quoted as in a shell; ID defaults to ``linux``."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not key or key.startswith("#"):
            continue
        try:
            fields[key.strip()] = " ".join(shlex.split(value))
        except ValueError:  # unbalanced quotes: keep the text as written
            fields[key.strip()] = value.strip().strip("\"'")
    return OsRelease(
        id=fields.get("ID", "").lower() or "linux",
        id_like=tuple(fields.get("ID_LIKE", "").lower().split()),
        version_id=fields.get("VERSION_ID") or None,
        pretty_name=fields.get("PRETTY_NAME") or None,
    )


# --- one layer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """An os-release path in the stacked tree: a file's text, a symlink, or something else."""

    kind: Literal["file", "symlink", "other"]
    text: str = ""
    target: str = ""
    what: str = ""  # what an "other" entry is, e.g. "a directory"


class _Undecided:
    """Not settled by the layers read so far: a lower layer (or the rest of this one) may settle it."""


_UNDECIDED = _Undecided()
Lookup = Callable[[str], "_Entry | _Undecided | None"]


@dataclass
class _LayerChanges:
    """What one layer does to the os-release paths: its own entries, and what it deletes below it."""

    deleted: set[str]
    emptied: set[str]
    entries: dict[str, _Entry]

    def apply(self, above: dict[str, _Entry | None]) -> None:
        """Settle, under the layers above, the paths this layer has or deletes (None: deleted)."""
        for path in OS_RELEASE_PATHS:
            if path in above:
                continue
            if path in self.entries:  # a layer's own entry survives its whiteouts, which act below it
                above[path] = self.entries[path]
            elif any(_within(path, d) for d in self.deleted) or any(path.startswith(d + "/") for d in self.emptied):
                above[path] = None


def _lookup(above: dict[str, _Entry | None], entries: dict[str, _Entry], *, bottom: bool) -> Lookup:
    """A path's entry in the image as far as it is known: settled above, found in the layer being
    read, absent once the bottom layer is read to its end, else undecided."""

    def find(path: str) -> _Entry | _Undecided | None:
        if path in above:
            return above[path]
        if path in entries:
            return entries[path]
        return None if bottom else _UNDECIDED

    return find


class _OverBudget(Exception):
    """More bytes were served than the budget allows, or the deadline passed."""


class _Budget:
    """Bytes served so far (``spent``) against the budget, and the deadline."""

    def __init__(self, budget: int, deadline: float | None) -> None:
        self.budget, self.spent, self.deadline = budget, 0, deadline

    def spend(self, size: int) -> None:
        self.spent += size
        if self.spent > self.budget:
            raise _OverBudget(f"the read budget of {format_size(self.budget)} ran out")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _OverBudget("the time allowed for reading layers ran out")


class _Counted(io.RawIOBase):
    """Counts the bytes read through it: where a tar stream really ends."""

    def __init__(self, stream: io.RawIOBase | gzip.GzipFile) -> None:
        self._stream, self.count = stream, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._stream.read(len(view)) or b""
        view[: len(data)] = data
        self.count += len(data)
        return len(data)


class _ChunkReader(io.RawIOBase):
    """A read()-able view of a chunk iterator that keeps at most one chunk."""

    def __init__(self, chunks: Iterator[bytes], budget: _Budget) -> None:
        self._chunks, self._budget, self._pending = chunks, budget, memoryview(b"")
        self._hash, self.count = hashlib.sha256(), 0

    @property
    def digest(self) -> str:
        """The digest of every byte served so far."""
        return "sha256:" + self._hash.hexdigest()

    def drain(self) -> None:
        """Take the rest of the chunks, still within the budget, so that the digest covers the blob."""
        self._pending = memoryview(b"")
        for chunk in self._chunks:
            self._take(chunk)

    def _take(self, chunk: bytes) -> None:
        self._budget.spend(len(chunk))
        self._hash.update(chunk)
        self.count += len(chunk)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._take(chunk)
            self._pending = memoryview(chunk)
        size = min(memoryview(buffer).nbytes, len(self._pending))
        memoryview(buffer).cast("B")[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _read_layer(
    raw: _ChunkReader, *, gzipped: bool, above: dict[str, _Entry | None], bottom: bool
) -> tuple[OsDetection | list[str] | _Undecided, bool]:
    """Read one layer until the answer is settled or the layer ends; settle in ``above`` what it
    settles. Returns the answer (undecided, an OsDetection, or why os-release cannot be resolved)
    and whether the layer was read to its end."""
    stream = _Counted(gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw)
    changes = _LayerChanges(deleted=set(), emptied=set(), entries={})
    files: dict[str, str] = {}  # every os-release file of this layer, for hard links to it
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        while (member := tar.next()) is not None:
            # A stream keeps every header it has read (not in typeshed); only the current one is
            # needed, and a layer may hold a hundred thousand files.
            tar.members.clear()  # type: ignore[attr-defined]
            path = _path(member.name)
            if not path:
                continue
            directory, base = posixpath.split(path)
            if base == OPAQUE:
                changes.emptied.add(directory)
            elif base.startswith(WHITEOUT):
                changes.deleted.add(posixpath.join(directory, base[len(WHITEOUT) :]))
            elif path in OS_RELEASE_PATHS:
                changes.entries.setdefault(path, _entry(tar, member, path, files))
                found = _resolve(_lookup(above, changes.entries, bottom=False))
                if not isinstance(found, _Undecided):
                    return found, False  # settled: nothing further down can change it
            elif not member.isdir() and any(_within(candidate, path) for candidate in OS_RELEASE_PATHS):
                changes.deleted.add(path)  # a file or link replacing etc/ or usr/lib/ hides what was below
        end = tar.offset  # where the end-of-archive block should be
    # To the end, so that gzip checks its CRC: a tar header broken in transit ends the
    # archive silently, and a cut-short layer must not pass for one without os-release.
    while stream.read(DRAIN_CHUNK):
        pass
    # A stream read ends quietly where the bytes end, even inside a member or without the
    # end-of-archive block; a tar cut short ends before both.
    if stream.count < end + TAR_BLOCK:
        raise tarfile.ReadError(
            f"it ends after {stream.count} bytes, before its last member and end-of-archive block ({end + TAR_BLOCK})"
        )
    changes.apply(above)
    return _resolve(_lookup(above, {}, bottom=bottom)), True


def _entry(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, files: dict[str, str]) -> _Entry:
    if member.isreg():
        extracted = tar.extractfile(member)
        data = extracted.read(MAX_OS_RELEASE_BYTES) if extracted else b""
        files[path] = data.decode("utf-8", "replace")
        return _Entry("file", text=files[path])
    if member.issym():
        return _Entry("symlink", target=member.linkname)
    if member.islnk():
        if _path(member.linkname) in files:
            return _Entry("file", text=files[_path(member.linkname)])
        return _Entry("other", what=f"a hard link to /{_path(member.linkname)}, which is not read")
    return _Entry("other", what="a directory" if member.isdir() else "not a regular file")


def _resolve(lookup: Lookup) -> OsDetection | list[str] | _Undecided:
    """The OS, no OS (neither path exists), why the os-release there cannot be resolved, or
    undecided while what settles it is in layers (or parts of one) not read yet.

    As os-release(5) reads them, /usr/lib/os-release is the fallback when /etc/os-release
    cannot be opened, so a broken /etc/os-release is a problem only without that fallback.
    """
    problems: list[str] = []
    for path in OS_RELEASE_PATHS:
        found = _follow(lookup, path)
        if isinstance(found, _Undecided):
            return found  # this path comes first: what it turns out to be decides
        if isinstance(found, OsRelease):
            return OsDetection(found)
        if found is not None and found not in problems:
            problems.append(found)
    return problems or OsDetection(None)


def _follow(lookup: Lookup, path: str) -> OsRelease | str | _Undecided | None:
    """The os-release at ``path`` after symlinks; None if absent; why it cannot be resolved."""
    chain = [path]
    while len(chain) <= MAX_SYMLINK_HOPS:
        current = chain[-1]
        if current not in OS_RELEASE_PATHS:
            return (
                f"/{path} is a symlink to /{current}, outside the os-release paths read "
                "(/etc/os-release, /usr/lib/os-release)"
            )
        entry = lookup(current)
        if entry is None:
            if current == path:
                return None
            return f"/{path} is a dangling symlink: it points to /{current}, which no layer has"
        if isinstance(entry, _Undecided):
            return entry
        if entry.kind == "file":
            return parse_os_release(entry.text)
        if entry.kind == "other":
            return f"/{current} is {entry.what}" if current == path else f"/{path} points to /{current}, {entry.what}"
        target = _path(posixpath.join(posixpath.dirname(current), entry.target))  # absolute targets too
        if target in chain:
            return f"/{path} is a symlink loop: {' -> '.join('/' + hop for hop in [*chain, target])}"
        chain.append(target)
    return f"/{path} is a chain of more than {MAX_SYMLINK_HOPS} symlinks"


def _path(name: str) -> str:
    """A tar member name or link target as a path from the root, without ``./``, ``/`` or ``..``.

    ``..`` at the root stays at the root, as the kernel resolves it; the root itself is "".
    """
    return posixpath.normpath("/" + name).lstrip("/")


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + "/")


def format_size(count: int) -> str:
    """E.g. ``512 MiB``, ``1.5 KiB``, ``300 bytes``."""
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if count >= scale:
            return f"{count / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} bytes"

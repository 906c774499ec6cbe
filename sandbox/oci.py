"""Read a real image from disk and push it into ECR the way ``docker push`` would.

The sandbox takes the image a seller actually built, so that what it checks is what AWS
would see. Three on-disk shapes are read, as a directory or a tar (``.tar``, ``.tar.gz``):

* an OCI image layout (``oci-layout`` + ``index.json`` + ``blobs/sha256/<hex>``), written by
  ``skopeo copy … oci:DIR``, ``umoci``, ``buildah push … oci:``,
  ``docker buildx build --output type=oci`` and ``docker save`` from Docker 25 on (which adds
  a ``manifest.json`` with ``RepoTags`` beside the layout);
* skopeo's ``dir:`` transport (``version`` + ``manifest.json`` + blobs named by hex digest,
  child manifests of an index as ``<hex>.manifest.json``), the one local format in which
  skopeo keeps a Docker v2 schema 2 manifest byte-exact.

A tar is read in place (random access through ``tarfile``), never extracted, so a large
image costs no disk space. Manifests and configs are read whole and their digest is always
checked; layers are streamed and their digest is checked while they are pushed.

Every problem is a :class:`LayoutError` saying what is wrong, in which file, and how to fix it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from botocore.exceptions import ClientError

# Media types, the attestation annotation and digests are the domain's (mlpublish.images).
from mlpublish.images.manifests import (
    ATTESTATION_ANNOTATION,
    ATTESTATION_KIND,
    DOCKER_V1_MANIFEST,
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1_TYPES,
    sha256_digest,
)
from mlpublish.images.registry import BlobUploads
from mlpublish.images.registry_api import CHUNK_SIZE
from mlpublish.state import DOCKER_V2_MANIFEST

DOCKER_MANIFEST = DOCKER_V2_MANIFEST  # the name callers of the sandbox know it by

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
REFERENCE_DIGEST = "vnd.docker.reference.digest"

# ECR takes at most 100 digests per BatchCheckLayerAvailability call.
_CHECK_BATCH = 100
# Nested indexes deeper than this are a cycle or an attack, not an image.
_MAX_DEPTH = 8
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_ANY_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_REEXPORT_HINT = (
    "re-export the image, e.g. `skopeo copy --all SOURCE oci:DIR:TAG`, "
    "`docker buildx build --output type=oci,dest=IMAGE.tar .` or `docker save -o IMAGE.tar IMAGE`"
)


class LayoutError(Exception):
    """The image on disk is not a usable image layout; the message says what, where and how to fix."""


# --------------------------------------------------------------------------------------------
# Descriptors and manifests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest or index says about one blob."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, data: Any, where: str) -> Descriptor:
        """Parse and check a descriptor; ``where`` names it in error messages."""
        if not isinstance(data, dict):
            raise LayoutError(f"{where}: a descriptor must be a JSON object, got {data!r}")
        media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise LayoutError(f"{where}: descriptor {digest} has no mediaType")
        check_digest(digest, where)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise LayoutError(f"{where}: descriptor {digest} has no valid size (got {size!r})")
        annotations = data.get("annotations")
        platform = data.get("platform")
        return cls(
            media_type,
            str(digest),
            size,
            {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {},
            dict(platform) if isinstance(platform, dict) else None,
        )

    @property
    def platform_name(self) -> str | None:
        """``os/arch[/variant]`` of an index entry, e.g. ``linux/arm64/v8``."""
        if not self.platform:
            return None
        parts = [str(self.platform.get("os", "")), str(self.platform.get("architecture", ""))]
        if self.platform.get("variant"):
            parts.append(str(self.platform["variant"]))
        return "/".join(parts)

    @property
    def is_attestation(self) -> bool:
        """A buildx attestation manifest (SBOM/provenance), not a runnable image."""
        return self.annotations.get(ATTESTATION_ANNOTATION) == ATTESTATION_KIND


@dataclass(frozen=True)
class Manifest:
    """A manifest or index read from the layout, with everything it references.

    ``raw`` is the exact bytes: ECR's image digest is the sha256 of them, so they are pushed
    unchanged. ``children`` are the manifests of an index; ``blobs`` the config and layers
    of an image manifest (the fsLayers of a schema 1 manifest).
    """

    descriptor: Descriptor
    media_type: str
    raw: bytes
    children: tuple[Manifest, ...] = ()
    blobs: tuple[Descriptor, ...] = ()

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def walk(self) -> Iterator[Manifest]:
        """Every manifest of the tree, children before their index (the push order)."""
        for child in self.children:
            yield from child.walk()
        yield self

    def all_blobs(self) -> list[Descriptor]:
        """Every blob of the tree once, in push order (configs before layers per image)."""
        seen: dict[str, Descriptor] = {}
        for manifest in self.walk():
            for blob in manifest.blobs:
                seen.setdefault(blob.digest, blob)
        return list(seen.values())


def check_digest(digest: Any, where: str) -> str:
    """Accept only sha256 digests: ECR and the pipeline address blobs by sha256."""
    if not isinstance(digest, str) or not _ANY_DIGEST_RE.match(digest):
        raise LayoutError(f"{where}: {digest!r} is not a digest (expected sha256:<64 hex digits>)")
    if not _DIGEST_RE.match(digest):
        raise LayoutError(
            f"{where}: digest {digest} uses an algorithm ECR does not accept; only sha256 is "
            "supported — re-export the image with sha256 digests"
        )
    return digest


# --------------------------------------------------------------------------------------------
# Files: a directory or a tar, addressed by relative name
# --------------------------------------------------------------------------------------------


class _Files(Protocol):
    """Read-only access to the files of a layout, wherever they live."""

    def has(self, name: str) -> bool: ...
    def size(self, name: str) -> int: ...
    def open(self, name: str) -> IO[bytes]: ...
    def where(self, name: str) -> str: ...
    def close(self) -> None: ...


class _DirFiles:
    def __init__(self, root: Path) -> None:
        self.root = root

    def has(self, name: str) -> bool:
        return (self.root / name).is_file()

    def size(self, name: str) -> int:
        return (self.root / name).stat().st_size

    def open(self, name: str) -> IO[bytes]:
        return (self.root / name).open("rb")

    def where(self, name: str) -> str:
        return str(self.root / name)

    def close(self) -> None:
        return None


class _TarFiles:
    """Members of a tar, read in place; a single wrapping directory is looked through."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by OciLayout.close
            members = self._tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise LayoutError(f"{path}: cannot read the tar ({exc}); {_REEXPORT_HINT}") from exc
        by_name = {_normalise(m.name): m for m in members if m.isfile() or m.issym() or m.islnk()}
        self._prefix = _wrapping_prefix(by_name)
        self._members = by_name

    def _member(self, name: str) -> tarfile.TarInfo:
        return self._members[self._prefix + name]

    def has(self, name: str) -> bool:
        return self._prefix + name in self._members

    def size(self, name: str) -> int:
        member = self._member(name)
        if member.isfile():
            return member.size
        with self.open(name) as stream:
            return stream.seek(0, io.SEEK_END)

    def open(self, name: str) -> IO[bytes]:
        stream = self._tar.extractfile(self._member(name))
        if stream is None:
            raise LayoutError(f"{self.where(name)}: is not a regular file in the tar")
        return stream

    def where(self, name: str) -> str:
        return f"{self.path}:{self._prefix}{name}"

    def close(self) -> None:
        self._tar.close()


def _normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _wrapping_prefix(names: Mapping[str, Any]) -> str:
    """``tar cf x.tar mylayout/`` puts the layout one directory down; find it there."""
    if any(marker in names for marker in ("oci-layout", "index.json", "manifest.json")):
        return ""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1:
        prefix = tops.pop() + "/"
        if any(prefix + marker in names for marker in ("oci-layout", "index.json", "manifest.json")):
            return prefix
    return ""


# --------------------------------------------------------------------------------------------
# The layout
# --------------------------------------------------------------------------------------------


class OciLayout:
    """An image layout opened for reading. Use :func:`open_layout`; close it (or use ``with``)."""

    def __init__(self, path: Path, files: _Files, kind: str, index: dict[str, Any]) -> None:
        self.path = path
        self.kind = kind
        self.index = index
        self._files = files
        self._top_manifest: tuple[str, str] | None = None
        self._repo_tags: dict[str, list[str]] = {}
        self.descriptors: tuple[Descriptor, ...] = tuple(
            Descriptor.from_json(entry, f"{self._where_index()} manifests[{i}]")
            for i, entry in enumerate(index.get("manifests", []))
        )

    # -- context management ---------------------------------------------------------------

    def __enter__(self) -> OciLayout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._files.close()

    # -- blobs -------------------------------------------------------------------------------

    def blob_name(self, digest: str) -> str | None:
        """The file holding ``digest``, or None when the layout does not have it."""
        hexdigest = check_digest(digest, str(self.path)).split(":", 1)[1]
        if self._top_manifest is not None and self._top_manifest[0] == digest:
            return self._top_manifest[1]
        candidates = (
            [f"blobs/sha256/{hexdigest}"]
            if self.kind == "oci"
            else [f"{hexdigest}.manifest.json", hexdigest, f"{hexdigest}.tar"]
        )
        return next((name for name in candidates if self._files.has(name)), None)

    def has_blob(self, digest: str) -> bool:
        return self.blob_name(digest) is not None

    def _require(self, digest: str) -> str:
        name = self.blob_name(digest)
        if name is None:
            raise LayoutError(
                f"{self.path}: blob {digest} is missing (expected {self._expected_name(digest)}); "
                f"the layout is incomplete — {_REEXPORT_HINT}"
            )
        return name

    def _expected_name(self, digest: str) -> str:
        hexdigest = digest.split(":", 1)[1]
        return f"blobs/sha256/{hexdigest}" if self.kind == "oci" else hexdigest

    def blob_size(self, digest: str) -> int:
        return self._files.size(self._require(digest))

    def open_blob(self, digest: str) -> IO[bytes]:
        """A binary stream of the blob; the caller closes it and checks the digest."""
        return self._files.open(self._require(digest))

    def read_blob(self, digest: str) -> bytes:
        """The whole blob, digest verified (meant for manifests and configs, which are small)."""
        name = self._require(digest)
        with self._files.open(name) as stream:
            data = stream.read()
        actual = sha256_digest(data)
        if actual != digest:
            raise LayoutError(
                f"{self._files.where(name)}: content hashes to {actual}, not {digest}; the file is "
                f"corrupt or was edited — {_REEXPORT_HINT}"
            )
        return data

    def where(self, digest: str) -> str:
        """Where a blob lives, for messages."""
        name = self.blob_name(digest)
        return self._files.where(name) if name else f"{self.path} ({self._expected_name(digest)})"

    # -- selecting an image --------------------------------------------------------------

    def names(self, descriptor: Descriptor) -> list[str]:
        """Every name the layout gives an image: OCI ref name, containerd name, docker RepoTags."""
        found = [descriptor.annotations[key] for key in (REF_NAME, CONTAINERD_NAME) if key in descriptor.annotations]
        for config_digest in self._config_digests(descriptor):
            found.extend(self._repo_tags.get(config_digest, []))
        return list(dict.fromkeys(found))

    def manifests(self, tag: str | None = None) -> list[Descriptor]:
        """The top-level descriptors named ``tag`` (all of them when ``tag`` is None).

        ``tag`` may be a ref name (``1.0``), a full name (``docker.io/library/model:1.0``,
        ``model:1.0``) or a digest. A tag that names nothing is an error listing what is there,
        except in a layout holding one unnamed image, which any tag selects.
        """
        if tag is None:
            return list(self.descriptors)
        named = {d.digest: self.names(d) for d in self.descriptors}
        matches = [d for d in self.descriptors if _matches(tag, d, named[d.digest])]
        if not matches and len(named) == 1 and not any(named.values()):
            # One image that the layout leaves unnamed (skopeo dir:, `skopeo copy … oci:DIR`):
            # nothing contradicts the name the caller gives it.
            return list(self.descriptors)
        if not matches:
            raise LayoutError(f"{self.path}: no image is named {tag!r}; {self._listing()}")
        return matches

    def select(self, tag: str | None = None) -> Descriptor:
        """Exactly one image: the only one, or the one named ``tag``; otherwise a clear error."""
        matches = self.manifests(tag)
        distinct = list({d.digest: d for d in matches}.values())
        if not distinct:
            raise LayoutError(f"{self.path}: index.json lists no image; {_REEXPORT_HINT}")
        if len(distinct) > 1:
            what = f"{len(distinct)} images are named {tag!r}" if tag else f"it holds {len(distinct)} images"
            raise LayoutError(f"{self.path}: {what}; choose one by name or digest. {self._listing()}")
        return distinct[0]

    def _listing(self) -> str:
        lines = [f"{d.digest} {d.media_type} names={self.names(d) or ['(none)']}" for d in self.descriptors]
        return "the layout holds: " + ("; ".join(lines) if lines else "nothing")

    def _config_digests(self, descriptor: Descriptor) -> list[str]:
        """Config digests under a descriptor, to map docker save's RepoTags (by config) to it."""
        if not self._repo_tags:
            return []
        try:
            tree = self.load(descriptor, tolerate_missing=True)
        except LayoutError:
            return []
        return [blob.digest for m in tree.walk() for blob in m.blobs[:1] if not m.is_index]

    def platform_descriptor(self, descriptor: Descriptor, platform: str) -> Descriptor:
        """The child manifest of an index for ``platform`` (``os/arch[/variant]``)."""
        if descriptor.media_type not in INDEX_TYPES:
            return descriptor
        body = _parse_json(self.read_blob(descriptor.digest), self.where(descriptor.digest))
        children = [
            Descriptor.from_json(entry, f"{self.where(descriptor.digest)} manifests[{i}]")
            for i, entry in enumerate(body.get("manifests", []))
        ]
        wanted = _normalise_platform(platform)
        for child in children:
            if (
                not child.is_attestation
                and child.platform_name
                and (_normalise_platform(child.platform_name) == wanted)
            ):
                return child
        available = sorted({c.platform_name or "?" for c in children if not c.is_attestation})
        raise LayoutError(
            f"{self.where(descriptor.digest)}: the index has no {platform} image (it has "
            f"{', '.join(available) or 'none'}); build for {platform}, e.g. "
            f"`docker buildx build --platform {platform} …`"
        )

    # -- reading manifests -----------------------------------------------------------------

    def load(self, descriptor: Descriptor, *, tolerate_missing: bool = False) -> Manifest:
        """Read a manifest or index and everything it references, checking nothing is missing.

        All missing blobs are reported in one error, each with what references it, so a
        seller fixes the export once. ``tolerate_missing`` skips absent children instead
        (used only to look up names).
        """
        missing: list[str] = []
        tree = self._load(descriptor, missing, depth=0, context="image")
        if missing and not tolerate_missing:
            raise LayoutError(
                f"{self.path}: {len(missing)} blob(s) of image {descriptor.digest} are missing: "
                + "; ".join(missing)
                + f". The layout is incomplete (an export of only some platforms?) — {_REEXPORT_HINT}, "
                "or push one platform"
            )
        if tree is None:
            raise LayoutError(f"{self.path}: manifest {descriptor.digest} is missing; {_REEXPORT_HINT}")
        return tree

    def _load(self, descriptor: Descriptor, missing: list[str], *, depth: int, context: str) -> Manifest | None:
        if depth > _MAX_DEPTH:
            raise LayoutError(f"{self.path}: indexes nest deeper than {_MAX_DEPTH} levels at {descriptor.digest}")
        if not self.has_blob(descriptor.digest):
            missing.append(f"{descriptor.digest} ({context} manifest, {self._expected_name(descriptor.digest)})")
            return None
        raw = self._read_described(descriptor)
        where = self.where(descriptor.digest)
        body = _parse_json(raw, where)
        media_type = _media_type(descriptor, body, where)
        if media_type in INDEX_TYPES:
            children = []
            for i, entry in enumerate(body.get("manifests") or []):
                child = Descriptor.from_json(entry, f"{where} manifests[{i}]")
                label = "attestation" if child.is_attestation else child.platform_name or f"manifests[{i}]"
                loaded = self._load(child, missing, depth=depth + 1, context=label)
                if loaded is not None:
                    children.append(loaded)
            return Manifest(descriptor, media_type, raw, children=tuple(children))
        blobs = self._image_blobs(media_type, body, where)
        for blob in blobs:
            if not self.has_blob(blob.digest):
                missing.append(f"{blob.digest} ({blob.media_type} of {context} manifest {descriptor.digest})")
            else:
                self._check_size(blob)
        return Manifest(descriptor, media_type, raw, blobs=tuple(blobs))

    def _check_size(self, blob: Descriptor) -> None:
        """A cheap early check (no hashing): a truncated download shows up as a wrong size."""
        actual = self.blob_size(blob.digest)
        if blob.size and actual != blob.size:
            raise LayoutError(
                f"{self.where(blob.digest)}: is {actual} bytes but the manifest says {blob.size} "
                f"(truncated or replaced?); {_REEXPORT_HINT}"
            )

    def _read_described(self, descriptor: Descriptor) -> bytes:
        raw = self.read_blob(descriptor.digest)
        if len(raw) != descriptor.size:
            raise LayoutError(
                f"{self.where(descriptor.digest)}: is {len(raw)} bytes but its descriptor says "
                f"{descriptor.size}; {_REEXPORT_HINT}"
            )
        return raw

    def _image_blobs(self, media_type: str, body: dict[str, Any], where: str) -> list[Descriptor]:
        if media_type in SCHEMA1_TYPES:
            return self._schema1_blobs(body, where)
        if "config" not in body:
            raise LayoutError(f"{where}: image manifest ({media_type}) has no config; {_REEXPORT_HINT}")
        config = Descriptor.from_json(body["config"], f"{where} config")
        layers = [
            Descriptor.from_json(entry, f"{where} layers[{i}]") for i, entry in enumerate(body.get("layers") or [])
        ]
        return [config, *layers]

    def _schema1_blobs(self, body: dict[str, Any], where: str) -> list[Descriptor]:
        """Schema 1 names layers by blobSum only (no config, no sizes); sizes come from disk."""
        digests = [check_digest(entry.get("blobSum"), f"{where} fsLayers") for entry in body.get("fsLayers") or []]
        # fsLayers lists the top layer first; push base layers first, each once.
        unique = list(dict.fromkeys(reversed(digests)))
        return [
            Descriptor("application/vnd.docker.container.image.rootfs.diff+x-gtar", d, self._size_or_zero(d))
            for d in unique
        ]

    def _size_or_zero(self, digest: str) -> int:
        return self.blob_size(digest) if self.has_blob(digest) else 0

    def _where_index(self) -> str:
        return str(self.path / "index.json") if self.kind == "oci" else str(self.path / "manifest.json")

    def _set_repo_tags(self, repo_tags: dict[str, list[str]]) -> None:
        self._repo_tags = repo_tags

    def _set_top_manifest(self, digest: str, name: str) -> None:
        self._top_manifest = (digest, name)


def _media_type(descriptor: Descriptor, body: dict[str, Any], where: str) -> str:
    """The manifest's own mediaType wins; a descriptor that contradicts it is a broken layout."""
    declared = body.get("mediaType")
    if isinstance(declared, str) and declared:
        if declared != descriptor.media_type:
            raise LayoutError(
                f"{where}: the manifest says mediaType {declared} but its descriptor says "
                f"{descriptor.media_type}; a registry would reject it — {_REEXPORT_HINT}"
            )
        return declared
    if body.get("schemaVersion") == 1:
        return descriptor.media_type if descriptor.media_type in SCHEMA1_TYPES else DOCKER_V1_MANIFEST
    known = INDEX_TYPES | IMAGE_MANIFEST_TYPES | SCHEMA1_TYPES
    if descriptor.media_type in known:
        return descriptor.media_type
    raise LayoutError(
        f"{where}: {descriptor.media_type} is not an image manifest or index media type; "
        "only OCI and Docker image manifests and indexes can be pushed"
    )


def _parse_json(raw: bytes, where: str) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LayoutError(f"{where}: is not valid JSON ({exc}); {_REEXPORT_HINT}") from exc
    if not isinstance(body, dict):
        raise LayoutError(f"{where}: must hold a JSON object; {_REEXPORT_HINT}")
    return body


def _normalise_platform(platform: str) -> tuple[str, str, str]:
    """``linux/arm64`` and ``linux/arm64/v8`` are the same platform (v8 is arm64's default)."""
    parts = platform.split("/")
    if len(parts) not in (2, 3):
        raise LayoutError(f"platform {platform!r} must be OS/ARCH[/VARIANT], e.g. linux/amd64")
    os_name, arch = parts[0], parts[1]
    variant = parts[2] if len(parts) == 3 else {"arm64": "v8", "arm": "v7"}.get(arch, "")
    return os_name, arch, variant


def _short_name(name: str) -> str:
    for prefix in ("docker.io/", "index.docker.io/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def _matches(ref: str, descriptor: Descriptor, names: Sequence[str]) -> bool:
    if ref == descriptor.digest:
        return True
    short = {_short_name(name) for name in names}
    wanted = {_short_name(ref)}
    if ":" not in ref.rsplit("/", 1)[-1]:
        wanted.add(_short_name(ref) + ":latest")
    return bool(wanted & short)


# --------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------


def open_layout(path: str | Path) -> OciLayout:
    """Open an OCI image layout or skopeo ``dir:`` image, as a directory or a (gzipped) tar.

    Checks the structure (``oci-layout`` version, ``index.json``) and that every top-level
    manifest is present; :meth:`OciLayout.load` checks the rest of an image.
    """
    path = Path(path)
    if path.is_dir():
        files: _Files = _DirFiles(path)
    elif path.is_file():
        files = _TarFiles(path)
    else:
        raise LayoutError(
            f"{path}: no such directory or tar; give an OCI image layout (`skopeo copy … oci:DIR:TAG`, "
            "`docker buildx build --output type=oci,dest=IMAGE.tar .`, `docker save -o IMAGE.tar IMAGE`)"
        )
    try:
        layout = _open_files(path, files)
        for descriptor in layout.descriptors:
            layout._require(descriptor.digest)
    except BaseException:
        files.close()
        raise
    return layout


def _open_files(path: Path, files: _Files) -> OciLayout:
    if files.has("oci-layout") or files.has("index.json"):
        return _open_oci(path, files)
    if files.has("version") and files.has("manifest.json"):
        return _open_skopeo_dir(path, files)
    if files.has("manifest.json"):
        raise LayoutError(
            f"{path}: this is a legacy `docker save` archive (manifest.json without index.json, "
            "written by Docker < 25), which does not keep the registry manifest; convert it with "
            f"`skopeo copy docker-archive:{path} oci:DIR:TAG` or save with Docker 25 or later"
        )
    raise LayoutError(
        f"{path}: not an OCI image layout (no oci-layout or index.json) nor a skopeo dir: image "
        f"(no version + manifest.json); {_REEXPORT_HINT}"
    )


def _read_small(files: _Files, name: str) -> dict[str, Any]:
    with files.open(name) as stream:
        return _parse_json(stream.read(), files.where(name))


def _open_oci(path: Path, files: _Files) -> OciLayout:
    if not files.has("oci-layout"):
        raise LayoutError(
            f"{files.where('oci-layout')}: missing; every OCI image layout has it "
            '(content {"imageLayoutVersion": "1.0.0"}) — the directory may be a partial copy; ' + _REEXPORT_HINT
        )
    version = _read_small(files, "oci-layout").get("imageLayoutVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise LayoutError(
            f"{files.where('oci-layout')}: imageLayoutVersion is {version!r}; only 1.x layouts are "
            f"supported — {_REEXPORT_HINT}"
        )
    if not files.has("index.json"):
        raise LayoutError(f"{files.where('index.json')}: missing; the layout lists no image — {_REEXPORT_HINT}")
    index = _read_small(files, "index.json")
    if index.get("schemaVersion") != 2 or not isinstance(index.get("manifests", []), list):
        raise LayoutError(
            f"{files.where('index.json')}: must have schemaVersion 2 and a manifests list; {_REEXPORT_HINT}"
        )
    layout = OciLayout(path, files, "oci", index)
    if files.has("manifest.json"):
        layout._set_repo_tags(_docker_save_tags(files))
    return layout


def _docker_save_tags(files: _Files) -> dict[str, list[str]]:
    """``docker save`` writes RepoTags per image config in manifest.json beside the layout."""
    with files.open("manifest.json") as stream:
        try:
            entries = json.loads(stream.read())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LayoutError(f"{files.where('manifest.json')}: is not valid JSON ({exc})") from exc
    tags: dict[str, list[str]] = {}
    for entry in entries if isinstance(entries, list) else []:
        config = str(entry.get("Config", "")) if isinstance(entry, dict) else ""
        if config.startswith("blobs/sha256/"):
            digest = "sha256:" + config.rsplit("/", 1)[1]
            tags.setdefault(digest, []).extend(str(t) for t in entry.get("RepoTags") or [])
    return tags


def _open_skopeo_dir(path: Path, files: _Files) -> OciLayout:
    """skopeo's dir: keeps one top manifest as manifest.json; synthesise an index for it."""
    with files.open("version") as stream:
        version = stream.read().decode("utf-8", "replace").strip()
    if not version.startswith("Directory Transport Version: 1."):
        raise LayoutError(f"{files.where('version')}: unknown skopeo dir: version {version!r}")
    with files.open("manifest.json") as stream:
        raw = stream.read()
    body = _parse_json(raw, files.where("manifest.json"))
    media_type = body.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        media_type = (
            OCI_INDEX if "manifests" in body else DOCKER_V1_MANIFEST if body.get("schemaVersion") == 1 else OCI_MANIFEST
        )
    digest = sha256_digest(raw)
    index = {"schemaVersion": 2, "manifests": [{"mediaType": media_type, "digest": digest, "size": len(raw)}]}
    layout = OciLayout(path, files, "skopeo-dir", index)
    layout._set_top_manifest(digest, "manifest.json")
    return layout


# --------------------------------------------------------------------------------------------
# Pushing
# --------------------------------------------------------------------------------------------


class EcrClient(Protocol):
    """The ECR API calls a push makes (a boto3 ECR client, or a fake in tests)."""

    def create_repository(self, **kwargs: Any) -> Any: ...
    def batch_check_layer_availability(self, **kwargs: Any) -> Any: ...
    def initiate_layer_upload(self, **kwargs: Any) -> Any: ...
    def upload_layer_part(self, **kwargs: Any) -> Any: ...
    def complete_layer_upload(self, **kwargs: Any) -> Any: ...
    def put_image(self, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class PushResult:
    """What a push did.

    ``digest``/``media_type``: the tagged manifest (the layout's, byte-exact); ``blobs`` and
    ``bytes``: blobs uploaded and their bytes; ``reused``: blobs ECR already had;
    ``manifests``: child manifests put by digest (platforms and attestations of an index).
    """

    digest: str
    media_type: str
    blobs: int
    bytes: int
    reused: int = 0
    manifests: tuple[str, ...] = ()


def push_layout(
    layout: OciLayout,
    ecr_client: EcrClient,
    repository: str,
    tag: str,
    *,
    reference: str | None = None,
    platform: str | None = None,
    uploads: BlobUploads | None = None,
) -> PushResult:
    """Push an image from the layout into ECR exactly as ``docker push`` would.

    With ``uploads`` (the domain's client of ECR's registry endpoint), blobs go up as docker
    pushes them, raw chunks through the registry API; without, through the ECR API's
    ``UploadLayerPart`` (an emulator that serves no registry endpoint).

    ``reference`` chooses the image in the layout (see :meth:`OciLayout.select`);
    ``platform`` pushes only that platform's manifest of an index, tagged. Every blob of the
    tree (attestations included) is checked with BatchCheckLayerAvailability and the missing
    ones uploaded in ``partSize`` parts, in order, digest verified; then child manifests are
    put by digest and the top manifest with ``tag``, byte-exact, so its digest is kept.
    """
    top = layout.select(reference)
    if platform is not None:
        top = layout.platform_descriptor(top, platform)
    tree = layout.load(top)
    _ensure_repository(ecr_client, repository)
    blobs = tree.all_blobs()
    missing = _missing_blobs(ecr_client, repository, [b.digest for b in blobs])
    uploaded = 0
    for blob in blobs:
        if blob.digest in missing:
            uploaded += (
                _push_blob(layout, uploads, repository, blob)
                if uploads is not None
                else _upload_blob(layout, ecr_client, repository, blob)
            )
    children = [m for m in tree.walk() if m is not tree]
    pushed_children = list(dict.fromkeys(m.digest for m in children))
    for manifest in {m.digest: m for m in children}.values():
        _put_manifest(ecr_client, repository, manifest, tag=None)
    _put_manifest(ecr_client, repository, tree, tag=tag)
    return PushResult(
        digest=tree.digest,
        media_type=tree.media_type,
        blobs=len(missing),
        bytes=uploaded,
        reused=len(blobs) - len(missing),
        manifests=tuple(pushed_children),
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _ensure_repository(ecr: EcrClient, repository: str) -> None:
    try:
        ecr.create_repository(repositoryName=repository)
    except ClientError as exc:
        if _error_code(exc) != "RepositoryAlreadyExistsException":
            raise


def _missing_blobs(ecr: EcrClient, repository: str, digests: list[str]) -> set[str]:
    """Blobs ECR does not have; anything not reported AVAILABLE is uploaded."""
    available: set[str] = set()
    for start in range(0, len(digests), _CHECK_BATCH):
        response = ecr.batch_check_layer_availability(
            repositoryName=repository, layerDigests=digests[start : start + _CHECK_BATCH]
        )
        available.update(
            layer["layerDigest"]
            for layer in response.get("layers", [])
            if layer.get("layerAvailability") == "AVAILABLE"
        )
    return {d for d in digests if d not in available}


def _push_blob(layout: OciLayout, uploads: BlobUploads, repository: str, blob: Descriptor) -> int:
    """Push one blob through the registry endpoint in chunks; the registry checks its digest."""
    location, sent = uploads.start_upload(repository), 0
    hasher = hashlib.sha256()
    with layout.open_blob(blob.digest) as stream:
        while part := _read_exactly(stream, CHUNK_SIZE):
            hasher.update(part)
            location = uploads.upload_chunk(location, sent, [part], len(part)).location
            sent += len(part)
    _check_uploaded(layout, blob, "sha256:" + hasher.hexdigest(), sent)
    uploads.complete_upload(location, blob.digest)
    return sent


def _upload_blob(layout: OciLayout, ecr: EcrClient, repository: str, blob: Descriptor) -> int:
    """Stream one blob in ECR's part size, hashing it; refuse to complete a corrupt blob."""
    started = ecr.initiate_layer_upload(repositoryName=repository)
    upload_id, part_size = started["uploadId"], int(started["partSize"])
    if part_size <= 0:
        raise LayoutError(f"ECR returned partSize {part_size} for {repository}; cannot upload")
    hasher = hashlib.sha256()
    sent = 0
    with layout.open_blob(blob.digest) as stream:
        while part := _read_exactly(stream, part_size):
            hasher.update(part)
            ecr.upload_layer_part(
                repositoryName=repository,
                uploadId=upload_id,
                partFirstByte=sent,
                partLastByte=sent + len(part) - 1,
                layerPartBlob=part,
            )
            sent += len(part)
    _check_uploaded(layout, blob, "sha256:" + hasher.hexdigest(), sent)
    try:
        ecr.complete_layer_upload(repositoryName=repository, uploadId=upload_id, layerDigests=[blob.digest])
    except ClientError as exc:
        if _error_code(exc) != "LayerAlreadyExistsException":
            raise
    return sent


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    """A full part (short only at the end): streams may return fewer bytes than asked."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _check_uploaded(layout: OciLayout, blob: Descriptor, actual: str, size: int) -> None:
    if actual != blob.digest:
        raise LayoutError(
            f"{layout.where(blob.digest)}: content hashes to {actual}, not {blob.digest}; the blob is "
            f"corrupt — {_REEXPORT_HINT}"
        )
    if blob.size and size != blob.size:
        raise LayoutError(
            f"{layout.where(blob.digest)}: is {size} bytes but the manifest says {blob.size}; " + _REEXPORT_HINT
        )


def _put_manifest(ecr: EcrClient, repository: str, manifest: Manifest, *, tag: str | None) -> None:
    """Put the exact bytes; an identical manifest already under the tag counts as pushed."""
    try:
        text = manifest.raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LayoutError(f"manifest {manifest.digest} is not UTF-8; ECR accepts only UTF-8 JSON") from exc
    request: dict[str, Any] = {
        "repositoryName": repository,
        "imageManifest": text,
        "imageManifestMediaType": manifest.media_type,
        "imageDigest": manifest.digest,
    }
    if tag is not None:
        request["imageTag"] = tag
    try:
        ecr.put_image(**request)
    except ClientError as exc:
        if _error_code(exc) != "ImageAlreadyExistsException":
            raise

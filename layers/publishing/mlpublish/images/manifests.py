"""Image manifests: what kind a manifest is, which platform to take, what to publish.

Pure functions over manifest bytes; no AWS. SageMaker is reported to reject OCI manifests
and indexes (marketplace-facts §7), so every container is published as one single-platform
Docker Image Manifest V2 Schema 2 over the source's own blobs.

Media types follow docker/distribution ``docs/spec/manifest-v2-2.md`` and its
``manifest/schema2`` package, and the OCI image-spec ``media-types.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from mlpublish.errors import UnsupportedImage
from mlpublish.state import DOCKER_V2_MANIFEST, BlobRef

# Manifests and indexes.
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_V1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_V1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

# Image configs.
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

# Docker layers. The uncompressed type is not in the spec's prose but is defined by the
# reference implementation (distribution ``schema2.MediaTypeUncompressedLayer``) and is
# what containers/image (skopeo) converts OCI ``tar`` layers to.
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_TAR = "application/vnd.docker.image.rootfs.foreign.diff.tar"

# OCI layers.
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_NONDISTRIBUTABLE_LAYER_TAR = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_NONDISTRIBUTABLE_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_NONDISTRIBUTABLE_LAYER_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

IMAGE_MANIFEST_TYPES = frozenset({DOCKER_V2_MANIFEST, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
SCHEMA1_TYPES = frozenset({DOCKER_V1_MANIFEST, DOCKER_V1_SIGNED_MANIFEST})

DOCKER_LAYER_TYPES = frozenset({DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR})
OCI_TO_DOCKER_LAYER = {OCI_LAYER_GZIP: DOCKER_LAYER_GZIP, OCI_LAYER_TAR: DOCKER_LAYER_TAR}
ZSTD_LAYER_TYPES = frozenset({OCI_LAYER_ZSTD, OCI_NONDISTRIBUTABLE_LAYER_ZSTD, DOCKER_LAYER_ZSTD})
FOREIGN_LAYER_TYPES = frozenset(
    {
        DOCKER_FOREIGN_LAYER_GZIP,
        DOCKER_FOREIGN_LAYER_TAR,
        OCI_NONDISTRIBUTABLE_LAYER_TAR,
        OCI_NONDISTRIBUTABLE_LAYER_GZIP,
    }
)

ATTESTATION_ANNOTATION = "vnd.docker.reference.type"
ATTESTATION_KIND = "attestation-manifest"
DEFAULT_PLATFORM = "linux/amd64"

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

# How a plain image is built and pushed; quoted in every "how to fix" message.
BUILD_HINT = (
    "docker buildx build --platform {platform} --provenance=false --sbom=false "
    "--output type=registry,oci-mediatypes=false,compression=gzip,force-compression=true ..."
)

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}
# containerd's normalisation: an arm64 image without a variant is v8; amd64 v1 is the baseline.
_DEFAULT_VARIANT = {"arm64": "v8"}


class ConvertedManifest(NamedTuple):
    """The manifest to publish: exact bytes, their digest, and how they were obtained."""

    raw: bytes
    digest: str
    conversion: Literal["none", "oci-to-docker"]


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest or index with the media type it was recognised as."""

    raw: bytes
    media_type: str
    kind: Literal["image", "index"]
    document: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Descriptor:
    """One entry of an index: a platform-specific manifest."""

    digest: str
    size: int
    media_type: str | None
    platform: str


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_manifest(raw: bytes, media_type_hint: str | None = None, *, where: str = "the image") -> Manifest:
    """Recognise an image manifest or an index.

    The media type comes from the document's ``mediaType``, else the registry's hint, else
    the structure (OCI manifests and indexes may omit ``mediaType``). Schema 1 and unknown
    types are rejected here because nothing downstream can publish them.
    """
    document = _json_object(raw, where)
    media_type = _media_type(document, media_type_hint, where)
    if media_type in SCHEMA1_TYPES:
        raise UnsupportedImage(
            f"{where} has a Docker schema 1 manifest ({media_type}), a deprecated format that "
            "SageMaker cannot use. Rebuild and push it with a current Docker: "
            + BUILD_HINT.format(platform=DEFAULT_PLATFORM)
        )
    if media_type in IMAGE_MANIFEST_TYPES:
        kind: Literal["image", "index"] = "image"
    elif media_type in INDEX_TYPES:
        kind = "index"
    else:
        raise UnsupportedImage(
            f"{where} has a manifest of media type {media_type}, which is not a container image. "
            "Point the container's image at a container image pushed with: "
            + BUILD_HINT.format(platform=DEFAULT_PLATFORM)
        )
    if document.get("schemaVersion") != 2:
        raise UnsupportedImage(
            f"{where}: {media_type} manifest has schemaVersion {document.get('schemaVersion')!r}, "
            "expected 2. Rebuild and push the image: " + BUILD_HINT.format(platform=DEFAULT_PLATFORM)
        )
    return Manifest(raw=raw, media_type=media_type, kind=kind, document=document)


def select_platform(
    index_raw: bytes,
    platform: str = DEFAULT_PLATFORM,
    *,
    media_type_hint: str | None = None,
    where: str = "the image",
) -> Descriptor:
    """Pick the entry of an OCI index or Docker manifest list that runs on ``platform``.

    ``platform`` is ``os/arch[/variant]``. Attestation manifests (buildx provenance and SBOM,
    annotated ``vnd.docker.reference.type: attestation-manifest``, platform unknown/unknown)
    are never chosen. The first matching entry in index order wins.
    """
    index = parse_manifest(index_raw, media_type_hint, where=where)
    if index.kind != "index":
        raise UnsupportedImage(f"{where} is a single image manifest ({index.media_type}), not an index")
    wanted = _normalise_platform(platform)
    entries = index.document.get("manifests")
    if not isinstance(entries, list):
        raise UnsupportedImage(f"{where}: the index has no 'manifests' list; push the image again")
    available: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict) or _is_attestation(entry):
            continue
        offered = _entry_platform(entry)
        if offered is None:
            continue
        available.append(offered)
        if _normalise_platform(offered) == wanted:
            digest, size = _digest_and_size(entry, "index entry", where)
            media_type = entry.get("mediaType")
            return Descriptor(
                digest=digest,
                size=size,
                media_type=media_type if isinstance(media_type, str) else None,
                platform=offered,
            )
    offered_text = ", ".join(available) if available else "no platform images (only attestations)"
    raise UnsupportedImage(
        f"{where} is a multi-platform image without a {platform} image; it has: {offered_text}. "
        f"Build and push a {platform} image ({BUILD_HINT.format(platform=platform)}), "
        "or set the container's platform to one of those listed."
    )


def to_docker_v2(raw: bytes, media_type: str | None = None, *, where: str = "the image") -> ConvertedManifest:
    """The Docker v2 schema 2 manifest to publish for one single-platform manifest.

    A Docker v2 schema 2 manifest is returned byte for byte, so its digest is preserved.

    An OCI image manifest is rewritten over exactly the same blobs: the config and every
    layer keep their digest, size and order; only media types change (OCI image config ->
    Docker container config, ``tar+gzip`` -> ``tar.gzip``, ``tar`` -> uncompressed ``tar``).
    The config blob itself is not rewritten: the OCI image config is the Docker image
    config's JSON format, which Docker reads as is. What Docker v2 cannot carry is dropped:
    the manifest's ``annotations``, ``subject`` and ``artifactType``, and per-descriptor
    ``annotations``, ``urls``, ``platform``, ``artifactType`` and ``data``. None of them
    changes what runs. The new manifest is serialised deterministically (see
    ``_canonical_bytes``), so a later step re-deriving it gets the same digest.

    Rejected with UnsupportedImage: indexes, schema 1, OCI artifacts (non-image config),
    zstd layers, foreign/non-distributable layers, and any other layer type.
    """
    manifest = parse_manifest(raw, media_type, where=where)
    if manifest.kind == "index":
        raise UnsupportedImage(
            f"{where} is an image index ({manifest.media_type}); a single-platform manifest is "
            "needed here. Select a platform from the index first."  # nosec B608  # an error message, not SQL
        )
    if manifest.media_type == DOCKER_V2_MANIFEST:
        _check_docker_image(manifest.document, where)
        return ConvertedManifest(raw=raw, digest=sha256_digest(raw), conversion="none")
    converted = _canonical_bytes(_oci_to_docker(manifest.document, where))
    return ConvertedManifest(raw=converted, digest=sha256_digest(converted), conversion="oci-to-docker")


def blobs_of(manifest: Manifest) -> list[BlobRef]:
    """The blobs an image manifest references: config first, then layers, each once."""
    if manifest.kind != "image":
        raise UnsupportedImage(f"a {manifest.media_type} index has no blobs of its own; select a platform")
    entries = [manifest.document.get("config"), *_layers(manifest.document, "the manifest")]
    blobs: dict[str, BlobRef] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise UnsupportedImage("the manifest has a config or layer entry that is not an object")
        digest, size = _digest_and_size(entry, "blob", "the manifest")
        blobs.setdefault(digest, BlobRef(digest=digest, size=size, media_type=str(entry.get("mediaType"))))
    return list(blobs.values())


def layers_of(manifest: Manifest) -> list[BlobRef]:
    """An image manifest's layers in order, bottom first, repeats included (as they are stacked)."""
    if manifest.kind != "image":
        raise UnsupportedImage(f"a {manifest.media_type} index has no layers of its own; select a platform")
    layers = []
    for entry in _layers(manifest.document, "the manifest"):
        if not isinstance(entry, dict):
            raise UnsupportedImage("the manifest has a layer entry that is not an object")
        digest, size = _digest_and_size(entry, "layer", "the manifest")
        layers.append(BlobRef(digest=digest, size=size, media_type=str(entry.get("mediaType"))))
    return layers


def _json_object(raw: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsupportedImage(f"{where}: the manifest is not valid JSON ({exc}); push the image again") from exc
    if not isinstance(document, dict):
        raise UnsupportedImage(f"{where}: the manifest is not a JSON object; push the image again")
    return document


def _media_type(document: dict[str, Any], hint: str | None, where: str) -> str:
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if hint:
        return hint
    if document.get("schemaVersion") == 1:
        return DOCKER_V1_MANIFEST
    if "manifests" in document:
        return OCI_INDEX
    if "config" in document and "layers" in document:
        return OCI_MANIFEST
    raise UnsupportedImage(
        f"{where}: cannot tell what kind of manifest this is (no mediaType, no config/layers, "
        "no manifests); push the image again"
    )


def _normalise_platform(platform: str) -> tuple[str, str, str]:
    parts = platform.lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {platform!r} must be OS/ARCH[/VARIANT], e.g. linux/amd64")
    os_name, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else ""
    if arch == "amd64" and variant == "v1":
        variant = ""
    return os_name, arch, variant or _DEFAULT_VARIANT.get(arch, "")


def _entry_platform(entry: dict[str, Any]) -> str | None:
    platform = entry.get("platform")
    if not isinstance(platform, dict):
        return None
    os_name, arch, variant = platform.get("os"), platform.get("architecture"), platform.get("variant")
    if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
        return None
    if os_name == "unknown" or arch == "unknown":
        return None
    return "/".join([os_name, arch, variant] if isinstance(variant, str) and variant else [os_name, arch])


def _is_attestation(entry: dict[str, Any]) -> bool:
    annotations = entry.get("annotations")
    return isinstance(annotations, dict) and annotations.get(ATTESTATION_ANNOTATION) == ATTESTATION_KIND


def _digest_and_size(entry: dict[str, Any], role: str, where: str) -> tuple[str, int]:
    digest, size = entry.get("digest"), entry.get("size")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise UnsupportedImage(
            f"{where}: {role} digest {digest!r} is not a sha256 digest; ECR stores sha256 content only"
        )
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise UnsupportedImage(f"{where}: {role} {digest} has an invalid size {size!r}")
    return digest, size


def _layers(document: dict[str, Any], where: str) -> list[Any]:
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise UnsupportedImage(f"{where}: the manifest has no 'layers' list; push the image again")
    return layers


def _docker_descriptor(entry: Any, media_type: str, role: str, where: str) -> dict[str, Any]:
    """A Docker descriptor with the fields in Docker's own order."""
    if not isinstance(entry, dict):
        raise UnsupportedImage(f"{where}: the manifest's {role} is not an object; push the image again")
    digest, size = _digest_and_size(entry, role, where)
    return {"mediaType": media_type, "size": size, "digest": digest}


def _check_docker_image(document: dict[str, Any], where: str) -> None:
    config = document.get("config")
    config_type = config.get("mediaType") if isinstance(config, dict) else None
    if config_type != DOCKER_CONFIG:
        raise _not_an_image(where, config_type)
    _docker_descriptor(config, DOCKER_CONFIG, "config", where)
    for layer in _layers(document, where):
        layer_type = layer.get("mediaType") if isinstance(layer, dict) else None
        if layer_type not in DOCKER_LAYER_TYPES:
            raise _unsupported_layer(where, layer, layer_type)
        _docker_descriptor(layer, str(layer_type), "layer", where)


def _oci_to_docker(document: dict[str, Any], where: str) -> dict[str, Any]:
    config = document.get("config")
    config_type = config.get("mediaType") if isinstance(config, dict) else None
    if config_type != OCI_CONFIG:
        raise _not_an_image(where, config_type)
    layers = []
    for layer in _layers(document, where):
        layer_type = layer.get("mediaType") if isinstance(layer, dict) else None
        docker_type = OCI_TO_DOCKER_LAYER.get(str(layer_type))
        if docker_type is None:
            raise _unsupported_layer(where, layer, layer_type)
        layers.append(_docker_descriptor(layer, docker_type, "layer", where))
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_V2_MANIFEST,
        "config": _docker_descriptor(config, DOCKER_CONFIG, "config", where),
        "layers": layers,
    }


def _canonical_bytes(document: dict[str, Any]) -> bytes:
    """The one serialisation of a converted manifest; changing it changes published digests.

    Key order as built (Docker's field order), 3-space indent like the Docker CLI, ASCII only,
    no trailing newline.
    """
    return json.dumps(document, indent=3, ensure_ascii=True).encode("ascii")


def _not_an_image(where: str, config_type: object) -> UnsupportedImage:
    return UnsupportedImage(
        f"{where} is not a container image: its config has media type {config_type!r} (an OCI "
        "artifact such as a Helm chart, signature or attestation). Point the container's image "
        "at a container image built with: " + BUILD_HINT.format(platform=DEFAULT_PLATFORM)
    )


def _unsupported_layer(where: str, layer: object, layer_type: object) -> UnsupportedImage:
    digest = layer.get("digest") if isinstance(layer, dict) else None
    fix = BUILD_HINT.format(platform=DEFAULT_PLATFORM)
    if layer_type in ZSTD_LAYER_TYPES:
        reason = (
            f"is zstd-compressed ({layer_type}); a Docker v2 schema 2 manifest, which SageMaker "
            "requires, only carries gzip or uncompressed layers. Rebuild with gzip compression"
        )
    elif layer_type in FOREIGN_LAYER_TYPES:
        reason = (
            f"is a foreign/non-distributable layer ({layer_type}) whose bytes live outside the "
            "registry; Marketplace needs every layer in your own ECR repository and SageMaker "
            "runs Linux images only. Rebuild from a Linux base image"
        )
    else:
        reason = (
            f"has media type {layer_type!r}, which a Docker v2 schema 2 image cannot carry "
            "(encrypted, artifact or unknown layer). Rebuild as a plain container image"
        )
    return UnsupportedImage(f"{where}: layer {digest} {reason}: {fix}")

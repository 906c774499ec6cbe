"""Manifest recognition, platform selection and conversion to Docker v2 schema 2."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from mlpublish.errors import UnsupportedImage
from mlpublish.images import manifests as m
from mlpublish.images.manifests import blobs_of, parse_manifest, select_platform, sha256_digest, to_docker_v2

pytestmark = pytest.mark.unit

CONFIG_DIGEST = "sha256:" + "c" * 64
LAYER_DIGESTS = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
AMD64_DIGEST = "sha256:" + "a" * 64
ARM64_DIGEST = "sha256:" + "b" * 64
ATTESTATION_DIGEST = "sha256:" + "e" * 64


def descriptor(media_type: str, digest: str, size: int, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def oci_manifest(layer_types: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    types = layer_types or [m.OCI_LAYER_GZIP, m.OCI_LAYER_GZIP]
    return {
        "schemaVersion": 2,
        "mediaType": m.OCI_MANIFEST,
        "config": descriptor(m.OCI_CONFIG, CONFIG_DIGEST, 1469),
        "layers": [
            descriptor(media_type, digest, 1000 + index)
            for index, (media_type, digest) in enumerate(zip(types, LAYER_DIGESTS, strict=False))
        ],
        **extra,
    }


def docker_manifest(layer_type: str = m.DOCKER_LAYER_GZIP) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": m.DOCKER_V2_MANIFEST,
        "config": descriptor(m.DOCKER_CONFIG, CONFIG_DIGEST, 1469),
        "layers": [descriptor(layer_type, digest, 1000 + i) for i, digest in enumerate(LAYER_DIGESTS)],
    }


def index(*entries: dict[str, Any], media_type: str = m.OCI_INDEX) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}).encode()


def entry(digest: str, platform: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"mediaType": m.OCI_MANIFEST, "digest": digest, "size": 481, "platform": platform, **extra}


def attestation_for(subject: str) -> dict[str, Any]:
    """What buildx adds for provenance: platform unknown/unknown plus the reference annotation."""
    return entry(
        ATTESTATION_DIGEST,
        {"os": "unknown", "architecture": "unknown"},
        annotations={
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": subject,
        },
    )


def as_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


# --- sha256_digest and parse_manifest -----------------------------------------------


def test_given_empty_bytes_when_digested_then_the_registry_sha256_format_is_returned() -> None:
    assert sha256_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_given_a_document_media_type_and_another_registry_hint_when_parsed_then_the_document_wins() -> None:
    parsed = parse_manifest(as_bytes(docker_manifest()), m.OCI_MANIFEST)

    assert (parsed.media_type, parsed.kind) == (m.DOCKER_V2_MANIFEST, "image")


def test_given_an_oci_manifest_without_media_type_when_parsed_then_the_hint_or_its_structure_identifies_it() -> None:
    document = oci_manifest()
    del document["mediaType"]

    assert parse_manifest(as_bytes(document), m.OCI_MANIFEST).media_type == m.OCI_MANIFEST
    assert parse_manifest(as_bytes(document), None).media_type == m.OCI_MANIFEST


def test_given_an_index_without_media_type_when_parsed_then_it_is_recognised_as_an_oci_index() -> None:
    raw = json.dumps({"schemaVersion": 2, "manifests": []}).encode()

    parsed = parse_manifest(raw, None)

    assert (parsed.media_type, parsed.kind) == (m.OCI_INDEX, "index")


def test_given_a_docker_manifest_list_when_parsed_then_it_is_an_index() -> None:
    assert parse_manifest(index(media_type=m.DOCKER_MANIFEST_LIST), None).kind == "index"


@pytest.mark.parametrize("media_type", [m.DOCKER_V1_MANIFEST, m.DOCKER_V1_SIGNED_MANIFEST])
def test_given_a_schema1_manifest_when_parsed_then_it_is_rejected_naming_the_image_and_how_to_rebuild(
    media_type: str,
) -> None:
    raw = json.dumps({"schemaVersion": 1, "name": "app", "tag": "1", "fsLayers": []}).encode()

    with pytest.raises(UnsupportedImage) as caught:
        parse_manifest(raw, media_type, where="acct.dkr.ecr/app:1")

    message = str(caught.value)
    assert "schema 1" in message
    assert "acct.dkr.ecr/app:1" in message
    assert "docker buildx build" in message


def test_given_a_schema1_manifest_without_media_type_when_parsed_then_it_is_still_rejected_as_schema1() -> None:
    raw = json.dumps({"schemaVersion": 1, "fsLayers": []}).encode()

    with pytest.raises(UnsupportedImage, match="schema 1"):
        parse_manifest(raw, None)


def test_given_bytes_that_are_not_json_when_parsed_then_they_are_an_unsupported_image() -> None:
    with pytest.raises(UnsupportedImage, match="not valid JSON"):
        parse_manifest(b"\x1f\x8b not json", None)


# --- to_docker_v2 -----------------------------------------------------------------


def test_given_a_docker_v2_manifest_when_converted_then_it_is_returned_byte_exact_with_its_digest() -> None:
    # Docker's own layout (3-space indent) plus a trailing newline: any re-serialisation
    # would change the bytes and therefore the digest.
    raw = (json.dumps(docker_manifest(), indent=3) + "\n").encode()

    result = to_docker_v2(raw, m.DOCKER_V2_MANIFEST)

    assert result.raw is raw
    assert result.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert result.conversion == "none"


def test_given_an_oci_manifest_when_converted_then_it_is_docker_v2_with_the_same_config_and_layers() -> None:
    source = oci_manifest()

    result = to_docker_v2(as_bytes(source), m.OCI_MANIFEST)

    converted = json.loads(result.raw)
    assert result.conversion == "oci-to-docker"
    assert result.digest == "sha256:" + hashlib.sha256(result.raw).hexdigest()
    assert converted["mediaType"] == m.DOCKER_V2_MANIFEST
    assert converted["config"] == {
        "mediaType": m.DOCKER_CONFIG,
        "size": source["config"]["size"],
        "digest": source["config"]["digest"],
    }
    assert [(layer["digest"], layer["size"]) for layer in converted["layers"]] == [
        (layer["digest"], layer["size"]) for layer in source["layers"]
    ]
    assert {layer["mediaType"] for layer in converted["layers"]} == {m.DOCKER_LAYER_GZIP}


def test_given_an_oci_uncompressed_layer_when_converted_then_it_becomes_a_docker_uncompressed_layer() -> None:
    result = to_docker_v2(as_bytes(oci_manifest([m.OCI_LAYER_TAR, m.OCI_LAYER_GZIP])))

    types = [layer["mediaType"] for layer in json.loads(result.raw)["layers"]]
    assert types == [m.DOCKER_LAYER_TAR, m.DOCKER_LAYER_GZIP]


def test_given_oci_only_fields_when_converted_then_they_are_dropped() -> None:
    source = oci_manifest(
        annotations={"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        subject=descriptor(m.OCI_MANIFEST, AMD64_DIGEST, 10),
        artifactType="application/vnd.example",
    )
    source["layers"][0]["annotations"] = {"note": "kept out"}
    source["layers"][0]["urls"] = ["https://example.com/layer"]

    converted = json.loads(to_docker_v2(as_bytes(source)).raw)

    assert set(converted) == {"schemaVersion", "mediaType", "config", "layers"}
    assert all(set(layer) == {"mediaType", "size", "digest"} for layer in converted["layers"])


def test_given_one_oci_manifest_in_different_formattings_when_converted_then_the_result_is_identical() -> None:
    document = oci_manifest()
    compact = json.dumps(document, separators=(",", ":")).encode()
    reordered = json.dumps(document, sort_keys=True, indent=2).encode()

    first, again, other = to_docker_v2(compact), to_docker_v2(compact), to_docker_v2(reordered)

    assert first == again
    assert first.raw == other.raw
    assert first.digest == other.digest


def test_given_an_oci_manifest_when_converted_then_dockers_field_order_and_indentation_are_used() -> None:
    # Pins the canonical serialisation: changing it would change every published digest.
    result = to_docker_v2(as_bytes(oci_manifest([m.OCI_LAYER_GZIP])))

    expected = (
        "{\n"
        '   "schemaVersion": 2,\n'
        f'   "mediaType": "{m.DOCKER_V2_MANIFEST}",\n'
        '   "config": {\n'
        f'      "mediaType": "{m.DOCKER_CONFIG}",\n'
        '      "size": 1469,\n'
        f'      "digest": "{CONFIG_DIGEST}"\n'
        "   },\n"
        '   "layers": [\n'
        "      {\n"
        f'         "mediaType": "{m.DOCKER_LAYER_GZIP}",\n'
        '         "size": 1000,\n'
        f'         "digest": "{LAYER_DIGESTS[0]}"\n'
        "      }\n"
        "   ]\n"
        "}"
    ).encode()
    assert result.raw == expected


@pytest.mark.parametrize("layer_type", [m.OCI_LAYER_ZSTD, m.OCI_NONDISTRIBUTABLE_LAYER_ZSTD])
def test_given_a_zstd_layer_when_converted_then_it_is_rejected_naming_the_layer_and_the_gzip_fix(
    layer_type: str,
) -> None:
    with pytest.raises(UnsupportedImage) as caught:
        to_docker_v2(as_bytes(oci_manifest([m.OCI_LAYER_GZIP, layer_type])), where="repo@sha256:x")

    message = str(caught.value)
    assert "zstd" in message
    assert LAYER_DIGESTS[1] in message
    assert "repo@sha256:x" in message
    assert "compression=gzip" in message


def test_given_a_docker_manifest_with_a_zstd_layer_when_converted_then_it_is_rejected() -> None:
    with pytest.raises(UnsupportedImage, match="zstd"):
        to_docker_v2(as_bytes(docker_manifest(m.DOCKER_LAYER_ZSTD)))


@pytest.mark.parametrize(
    ("build", "layer_type"),
    [
        (oci_manifest, m.OCI_NONDISTRIBUTABLE_LAYER_GZIP),
        (oci_manifest, m.OCI_NONDISTRIBUTABLE_LAYER_TAR),
        (lambda types: docker_manifest(types[0]), m.DOCKER_FOREIGN_LAYER_GZIP),
    ],
)
def test_given_foreign_layers_when_converted_then_they_are_rejected_as_non_distributable(
    build: Any, layer_type: str
) -> None:
    with pytest.raises(UnsupportedImage, match="foreign/non-distributable"):
        to_docker_v2(as_bytes(build([layer_type, layer_type])))


def test_given_an_oci_artifact_when_converted_then_it_is_rejected_as_not_a_container_image() -> None:
    artifact = oci_manifest()
    artifact["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json"

    with pytest.raises(UnsupportedImage, match=r"not a container image.*helm"):
        to_docker_v2(as_bytes(artifact))


def test_given_an_attestation_manifest_when_converted_then_it_is_rejected_for_its_in_toto_layers() -> None:
    attestation = oci_manifest(["application/vnd.in-toto+json"])

    with pytest.raises(UnsupportedImage, match=r"application/vnd\.in-toto"):
        to_docker_v2(as_bytes(attestation))


def test_given_an_index_when_converted_then_it_is_rejected_as_not_a_single_manifest() -> None:
    with pytest.raises(UnsupportedImage, match="image index"):
        to_docker_v2(index(entry(AMD64_DIGEST, {"os": "linux", "architecture": "amd64"})))


def test_given_a_layer_with_a_non_sha256_digest_when_converted_then_it_is_rejected() -> None:
    document = oci_manifest()
    document["layers"][0]["digest"] = "sha512:" + "f" * 128

    with pytest.raises(UnsupportedImage, match="not a sha256 digest"):
        to_docker_v2(as_bytes(document))


# --- select_platform ----------------------------------------------------------------


def test_given_no_platform_when_selecting_then_linux_amd64_is_chosen_and_attestations_are_skipped() -> None:
    raw = index(
        attestation_for(AMD64_DIGEST),
        entry(ARM64_DIGEST, {"os": "linux", "architecture": "arm64"}),
        entry(AMD64_DIGEST, {"os": "linux", "architecture": "amd64"}),
    )

    chosen = select_platform(raw)

    assert (chosen.digest, chosen.size, chosen.media_type) == (AMD64_DIGEST, 481, m.OCI_MANIFEST)


def test_given_an_attestation_with_a_real_platform_when_selecting_then_its_annotation_skips_it() -> None:
    disguised = entry(
        ATTESTATION_DIGEST,
        {"os": "linux", "architecture": "amd64"},
        annotations={"vnd.docker.reference.type": "attestation-manifest"},
    )
    raw = index(disguised, entry(AMD64_DIGEST, {"os": "linux", "architecture": "amd64"}))

    assert select_platform(raw, "linux/amd64").digest == AMD64_DIGEST


@pytest.mark.parametrize(
    ("wanted", "offered"),
    [
        ("linux/arm64", {"os": "linux", "architecture": "arm64", "variant": "v8"}),
        ("linux/arm64/v8", {"os": "linux", "architecture": "arm64"}),
    ],
)
def test_given_arm64_without_a_variant_when_selecting_then_it_matches_v8(wanted: str, offered: dict[str, str]) -> None:
    raw = index(entry(AMD64_DIGEST, {"os": "linux", "architecture": "amd64"}), entry(ARM64_DIGEST, offered))

    assert select_platform(raw, wanted).digest == ARM64_DIGEST


def test_given_only_a_different_variant_when_selecting_then_it_does_not_match() -> None:
    raw = index(entry(AMD64_DIGEST, {"os": "linux", "architecture": "amd64", "variant": "v3"}))

    with pytest.raises(UnsupportedImage, match="linux/amd64/v3"):
        select_platform(raw, "linux/amd64")


def test_given_a_docker_manifest_list_when_selecting_then_the_matching_docker_manifest_is_chosen() -> None:
    docker_entry = {
        "mediaType": m.DOCKER_V2_MANIFEST,
        "digest": ARM64_DIGEST,
        "size": 527,
        "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
    }
    raw = index(docker_entry, media_type=m.DOCKER_MANIFEST_LIST)

    chosen = select_platform(raw, "linux/arm64")

    assert (chosen.digest, chosen.media_type) == (ARM64_DIGEST, m.DOCKER_V2_MANIFEST)


def test_given_a_missing_platform_when_selecting_then_the_error_names_the_available_ones_and_the_build_fix() -> None:
    raw = index(
        entry(ARM64_DIGEST, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
        attestation_for(ARM64_DIGEST),
    )

    with pytest.raises(UnsupportedImage) as caught:
        select_platform(raw, "linux/amd64", where="123.dkr.ecr/app@sha256:i")

    message = str(caught.value)
    assert "123.dkr.ecr/app@sha256:i" in message
    assert "it has: linux/arm64/v8." in message
    assert "unknown" not in message
    assert "--platform linux/amd64" in message


def test_given_an_index_of_only_attestations_when_selecting_then_the_error_says_so() -> None:
    with pytest.raises(UnsupportedImage, match="only attestations"):
        select_platform(index(attestation_for(AMD64_DIGEST)))


# --- blobs_of ---------------------------------------------------------------------


def test_given_a_repeated_layer_when_listing_blobs_then_the_config_comes_first_then_each_layer_once() -> None:
    document = docker_manifest()
    document["layers"].append(dict(document["layers"][0]))

    blobs = blobs_of(parse_manifest(as_bytes(document)))

    assert [(blob.digest, blob.size) for blob in blobs] == [
        (CONFIG_DIGEST, 1469),
        (LAYER_DIGESTS[0], 1000),
        (LAYER_DIGESTS[1], 1001),
    ]
    assert blobs[0].media_type == m.DOCKER_CONFIG

"""Reading image layouts from disk and pushing them through the ECR API (sandbox/oci.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.fixtures.images import KINDS, WrittenLayout, as_tar, digest_of, write_layout

from sandbox.oci import LayoutError, OciLayout, open_layout, push_layout

pytestmark = pytest.mark.unit

SINGLE_IMAGE_KINDS = [kind for kind in KINDS if kind != "two-images"]
PART_SIZE = 256 * 1024


class FakeEcr:
    """An in-memory ECR that behaves like the real one where a push can tell the difference.

    It records every call, stores uploaded bytes, checks part order and digests, and
    refuses manifests whose blobs or child manifests it does not have.
    """

    def __init__(self, part_size: int = PART_SIZE, repositories: tuple[str, ...] = ()) -> None:
        self.part_size = part_size
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.repositories: set[str] = set(repositories)
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, str]] = {}
        self.tags: dict[str, str] = {}
        self._uploads: dict[str, bytearray] = {}

    def _record(self, name: str, kwargs: dict[str, Any]) -> None:
        self.calls.append((name, kwargs))

    def calls_named(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for call, kwargs in self.calls if call == name]

    def create_repository(self, **kwargs: Any) -> dict[str, Any]:
        self._record("create_repository", kwargs)
        if kwargs["repositoryName"] in self.repositories:
            raise _client_error("RepositoryAlreadyExistsException", "CreateRepository")
        self.repositories.add(kwargs["repositoryName"])
        return {}

    def batch_check_layer_availability(self, **kwargs: Any) -> dict[str, Any]:
        self._record("batch_check_layer_availability", kwargs)
        digests = kwargs["layerDigests"]
        assert len(digests) <= 100
        return {
            "layers": [{"layerDigest": d, "layerAvailability": "AVAILABLE"} for d in digests if d in self.blobs],
            "failures": [
                {"layerDigest": d, "failureCode": "MissingLayerDigest"} for d in digests if d not in self.blobs
            ],
        }

    def initiate_layer_upload(self, **kwargs: Any) -> dict[str, Any]:
        self._record("initiate_layer_upload", kwargs)
        upload_id = f"upload-{len(self.calls_named('initiate_layer_upload'))}"
        self._uploads[upload_id] = bytearray()
        return {"uploadId": upload_id, "partSize": self.part_size}

    def upload_layer_part(self, **kwargs: Any) -> dict[str, Any]:
        self._record("upload_layer_part", {k: v for k, v in kwargs.items() if k != "layerPartBlob"})
        received = self._uploads[kwargs["uploadId"]]
        part = kwargs["layerPartBlob"]
        if kwargs["partFirstByte"] != len(received) or kwargs["partLastByte"] != len(received) + len(part) - 1:
            raise _client_error("InvalidLayerPartException", "UploadLayerPart")
        received.extend(part)
        return {"lastByteReceived": len(received) - 1}

    def complete_layer_upload(self, **kwargs: Any) -> dict[str, Any]:
        self._record("complete_layer_upload", kwargs)
        data = bytes(self._uploads.pop(kwargs["uploadId"]))
        (digest,) = kwargs["layerDigests"]
        if digest_of(data) != digest:
            raise _client_error("InvalidLayerException", "CompleteLayerUpload")
        self.blobs[digest] = data
        return {"layerDigest": digest}

    def put_image(self, **kwargs: Any) -> dict[str, Any]:
        self._record("put_image", kwargs)
        text = kwargs["imageManifest"]
        digest = digest_of(text.encode())
        if kwargs.get("imageDigest", digest) != digest:
            raise _client_error("InvalidParameterException", "PutImage")
        body = json.loads(text)
        blobs = [body["config"], *body.get("layers", [])] if "config" in body else []
        blobs += [{"digest": layer["blobSum"]} for layer in body.get("fsLayers", [])]
        if any(blob["digest"] not in self.blobs for blob in blobs):
            raise _client_error("LayersNotFoundException", "PutImage")
        if any(child["digest"] not in self.manifests for child in body.get("manifests", [])):
            raise _client_error("ReferencedImagesNotFoundException", "PutImage")
        self.manifests[digest] = (text, kwargs["imageManifestMediaType"])
        if "imageTag" in kwargs:
            self.tags[kwargs["imageTag"]] = digest
        return {"image": {"imageId": {"imageDigest": digest}}}


def _client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


def _blob_path(written: WrittenLayout, digest: str) -> Path:
    return written.path / "blobs" / "sha256" / digest.split(":", 1)[1]


@pytest.fixture(params=["dir", "tar", "tar.gz"])
def packaging(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _open(written: WrittenLayout, packaging: str) -> OciLayout:
    if packaging == "dir":
        return open_layout(written.path)
    return open_layout(as_tar(written.path, compress=packaging == "tar.gz"))


# ---- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SINGLE_IMAGE_KINDS)
def test_given_a_layout_of_each_kind_when_opened_then_the_image_and_its_blobs_are_the_written_ones(
    tmp_path: Path, kind: str, packaging: str
) -> None:
    written = write_layout(tmp_path / kind, kind)

    with _open(written, packaging) as layout:
        descriptor = layout.select()
        tree = layout.load(descriptor)

    assert descriptor.digest == written.top_digest
    assert tree.media_type == written.top_media_type
    assert tree.raw == written.top_bytes
    assert [blob.digest for blob in tree.all_blobs()] == list(written.blobs)
    assert [manifest.digest for manifest in tree.walk()] == list(written.manifests)


def test_given_a_buildx_index_when_loaded_then_platforms_and_attestations_are_children(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "index", "index")

    with open_layout(written.path) as layout:
        tree = layout.load(layout.select())

    children = {child.descriptor.platform_name: child for child in tree.children if not child.descriptor.is_attestation}
    attestations = [child.digest for child in tree.children if child.descriptor.is_attestation]
    assert {name: child.digest for name, child in children.items()} == {
        name: image.manifest_digest for name, image in written.images.items()
    }
    assert attestations == list(written.attestations)


@pytest.mark.parametrize(
    ("kind", "platform", "expected"),
    [
        ("index", "linux/arm64", "linux/arm64/v8"),
        ("index", "linux/arm64/v8", "linux/arm64/v8"),
        ("index", "linux/amd64", "linux/amd64"),
        ("docker-list", "linux/arm64", "linux/arm64/v8"),
    ],
)
def test_given_an_index_when_a_platform_is_asked_then_its_manifest_is_chosen(
    tmp_path: Path, kind: str, platform: str, expected: str
) -> None:
    written = write_layout(tmp_path / kind, kind)

    with open_layout(written.path) as layout:
        chosen = layout.platform_descriptor(layout.select(), platform)

    assert chosen.digest == written.images[expected].manifest_digest


def test_given_an_arm64_only_index_when_amd64_is_asked_then_the_error_lists_what_is_there(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "arm", "arm64-only")

    with open_layout(written.path) as layout, pytest.raises(LayoutError, match=r"no linux/amd64 image.*linux/arm64/v8"):
        layout.platform_descriptor(layout.select(), "linux/amd64")


@pytest.mark.parametrize("name", ["1.0", "sample-model:1.0", "docker.io/library/sample-model:1.0"])
def test_given_a_docker_save_layout_when_selected_by_any_of_its_names_then_the_image_is_found(
    tmp_path: Path, name: str
) -> None:
    written = write_layout(tmp_path / "saved", "docker-v2")

    with open_layout(as_tar(written.path)) as layout:
        assert layout.select(name).digest == written.top_digest


def test_given_a_name_without_a_tag_when_selected_then_latest_is_meant(tmp_path: Path) -> None:
    latest = write_layout(tmp_path / "latest", "docker-v2", tag="latest")
    other = write_layout(tmp_path / "other", "docker-v2", tag="2.0")

    with open_layout(latest.path) as layout:
        assert layout.select("sample-model").digest == latest.top_digest
    with open_layout(other.path) as layout, pytest.raises(LayoutError, match="no image is named"):
        layout.select("sample-model")


def test_given_a_docker_save_layout_when_names_are_listed_then_repo_tags_are_included(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "saved", "docker-v2")
    (tmp_path / "saved" / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "manifests": [_top_descriptor(written, annotations={})]})
    )

    with open_layout(written.path) as layout:
        names = layout.names(layout.select())

    assert names == ["sample-model:1.0"]


def _top_descriptor(written: WrittenLayout, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "mediaType": written.top_media_type,
        "digest": written.top_digest,
        "size": len(written.top_bytes),
        "annotations": annotations,
    }


def test_given_two_images_when_none_is_named_then_the_error_lists_both(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "two", "two-images")

    with open_layout(written.path) as layout, pytest.raises(LayoutError, match="holds 2 images") as error:
        layout.select()

    for image in written.images.values():
        assert image.manifest_digest in str(error.value)


def test_given_two_images_when_one_is_named_then_it_is_selected(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "two", "two-images")

    with open_layout(written.path) as layout:
        assert layout.select("1.0-arm64").digest == written.images["linux/arm64/v8"].manifest_digest
        assert len(layout.manifests()) == 2


def test_given_a_name_that_is_not_there_when_selected_then_the_error_lists_the_names(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "oci", "oci")

    with open_layout(written.path) as layout, pytest.raises(LayoutError, match=r"no image is named 'nope'.*1\.0"):
        layout.select("nope")


def test_given_a_tar_with_the_layout_one_directory_down_when_opened_then_it_is_found(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "wrapped" / "image", "oci")
    archive = tmp_path / "wrapped.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(written.path, arcname="image")

    with open_layout(archive) as layout:
        assert layout.select().digest == written.top_digest


def test_given_a_skopeo_dir_image_when_opened_then_its_manifest_json_is_the_top_manifest(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "oci", "docker-v2")
    skopeo_dir = _as_skopeo_dir(written, tmp_path / "dir")

    with open_layout(skopeo_dir) as layout:
        descriptor = layout.select()
        tree = layout.load(descriptor)
        renamed = layout.select("any-name-for-the-only-unnamed-image")

    assert layout.kind == "skopeo-dir"
    assert (descriptor.digest, descriptor.media_type) == (written.top_digest, written.top_media_type)
    assert renamed == descriptor
    assert [blob.digest for blob in tree.all_blobs()] == list(written.blobs)


def _as_skopeo_dir(written: WrittenLayout, target: Path) -> Path:
    """What `skopeo copy … dir:TARGET` writes: version, manifest.json, blobs named by hex."""
    target.mkdir()
    (target / "version").write_text("Directory Transport Version: 1.1\n")
    (target / "manifest.json").write_bytes(written.top_bytes)
    for digest in written.blobs:
        shutil.copy(_blob_path(written, digest), target / digest.split(":", 1)[1])
    return target


# ---- errors -------------------------------------------------------------------------------------


def test_given_a_missing_layer_when_loaded_then_the_error_names_the_blob_and_its_manifest(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "index", "index")
    _blob_path(written, written.big_layer).unlink()

    with open_layout(written.path) as layout, pytest.raises(LayoutError, match="2 blob") as error:
        layout.load(layout.select())

    message = str(error.value)
    assert written.big_layer in message
    assert written.images["linux/amd64"].manifest_digest in message


def test_given_a_missing_top_manifest_when_opened_then_the_error_says_which_file(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "oci", "oci")
    _blob_path(written, written.top_digest).unlink()

    with pytest.raises(LayoutError, match=f"blob {written.top_digest} is missing.*blobs/sha256/"):
        open_layout(written.path)


def test_given_a_truncated_layer_when_loaded_then_the_size_mismatch_is_reported(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "oci", "oci")
    path = _blob_path(written, written.big_layer)
    path.write_bytes(path.read_bytes()[:1000])

    with open_layout(written.path) as layout, pytest.raises(LayoutError, match="is 1000 bytes but the manifest says"):
        layout.load(layout.select())


def test_given_an_edited_manifest_when_loaded_then_the_digest_mismatch_is_reported(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "oci", "oci")
    _blob_path(written, written.top_digest).write_bytes(written.top_bytes.replace(b"amd64", b"arm64") + b" ")

    with open_layout(written.path) as layout, pytest.raises(LayoutError, match="hashes to sha256:"):
        layout.load(layout.select())


def test_given_no_oci_layout_file_when_opened_then_the_error_explains_it(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "oci", "oci")
    (written.path / "oci-layout").unlink()

    with pytest.raises(LayoutError, match=r"oci-layout: missing.*imageLayoutVersion"):
        open_layout(written.path)


def test_given_an_unknown_layout_version_when_opened_then_it_is_refused(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "oci", "oci")
    (written.path / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')

    with pytest.raises(LayoutError, match=r"imageLayoutVersion is '2\.0\.0'"):
        open_layout(written.path)


def test_given_a_legacy_docker_save_archive_when_opened_then_skopeo_conversion_is_suggested(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "manifest.json").write_text('[{"Config": "abc.json", "RepoTags": ["m:1"], "Layers": ["x/layer.tar"]}]')

    with pytest.raises(LayoutError, match=r"legacy `docker save`.*skopeo copy docker-archive:"):
        open_layout(as_tar(legacy))


@pytest.mark.parametrize("content", [None, "empty-dir"])
def test_given_no_image_at_the_path_when_opened_then_the_error_says_how_to_make_one(
    tmp_path: Path, content: str | None
) -> None:
    target = tmp_path / "image"
    if content:
        target.mkdir()

    with pytest.raises(LayoutError, match="skopeo copy"):
        open_layout(target)


def test_given_a_sha512_descriptor_when_opened_then_only_sha256_is_accepted(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "oci", "oci")
    descriptor = _top_descriptor(written, annotations={}) | {"digest": "sha512:" + "ab" * 64}
    (written.path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))

    with pytest.raises(LayoutError, match="only sha256"):
        open_layout(written.path)


def test_given_a_descriptor_contradicting_the_manifest_media_type_when_loaded_then_it_is_refused(
    tmp_path: Path,
) -> None:
    written = write_layout(tmp_path / "oci", "oci")
    descriptor = _top_descriptor(written, annotations={}) | {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json"
    }
    (written.path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))

    with open_layout(written.path) as layout, pytest.raises(LayoutError, match="descriptor says"):
        layout.load(layout.select())


# ---- pushing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SINGLE_IMAGE_KINDS)
def test_given_each_kind_when_pushed_then_ecr_holds_the_exact_manifest_under_the_tag(tmp_path: Path, kind: str) -> None:
    written = write_layout(tmp_path / kind, kind)
    ecr = FakeEcr()

    with open_layout(as_tar(written.path)) as layout:
        result = push_layout(layout, ecr, "models/sample", "v1")

    assert (result.digest, result.media_type) == (written.top_digest, written.top_media_type)
    assert ecr.tags == {"v1": written.top_digest}
    assert ecr.manifests[written.top_digest] == (written.top_bytes.decode(), written.top_media_type)
    assert set(ecr.blobs) == set(written.blobs)
    assert result.blobs == len(written.blobs)
    assert result.bytes == sum(len(data) for data in ecr.blobs.values())


def test_given_an_index_when_pushed_then_each_blob_is_uploaded_once_in_ordered_parts(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "index", "index")
    ecr = FakeEcr(part_size=PART_SIZE)

    with open_layout(written.path) as layout:
        push_layout(layout, ecr, "models/sample", "v1")

    completed = [call["layerDigests"][0] for call in ecr.calls_named("complete_layer_upload")]
    assert completed == list(written.blobs)
    big_parts = [
        call for call in ecr.calls_named("upload_layer_part") if call["uploadId"] == _upload_of(ecr, written.big_layer)
    ]
    big_size = _blob_path(written, written.big_layer).stat().st_size
    assert len(big_parts) == -(-big_size // PART_SIZE) > 1
    assert [part["partFirstByte"] for part in big_parts] == list(range(0, big_size, PART_SIZE))
    assert big_parts[-1]["partLastByte"] == big_size - 1


def _upload_of(ecr: FakeEcr, digest: str) -> str:
    return str(
        next(call["uploadId"] for call in ecr.calls_named("complete_layer_upload") if call["layerDigests"] == [digest])
    )


def test_given_an_index_when_pushed_then_children_go_first_by_digest_and_only_the_index_is_tagged(
    tmp_path: Path,
) -> None:
    written = write_layout(tmp_path / "index", "index")
    ecr = FakeEcr()

    with open_layout(written.path) as layout:
        result = push_layout(layout, ecr, "models/sample", "v1")

    puts = ecr.calls_named("put_image")
    assert [put["imageDigest"] for put in puts] == list(written.manifests)
    assert [("imageTag" in put) for put in puts] == [False] * (len(puts) - 1) + [True]
    assert set(result.manifests) == set(written.manifests) - {written.top_digest}
    assert [name for name, _ in ecr.calls].index("put_image") > max(
        i for i, (name, _) in enumerate(ecr.calls) if name == "complete_layer_upload"
    )


def test_given_a_pushed_image_when_pushed_again_then_nothing_is_uploaded(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "list", "docker-list")
    ecr = FakeEcr()

    with open_layout(written.path) as layout:
        push_layout(layout, ecr, "models/sample", "v1")
        ecr.calls.clear()
        again = push_layout(layout, ecr, "models/sample", "v1")

    assert ecr.calls_named("initiate_layer_upload") == []
    assert (again.blobs, again.bytes, again.reused) == (0, 0, len(written.blobs))
    assert ecr.tags == {"v1": written.top_digest}


def test_given_an_index_and_a_platform_when_pushed_then_only_that_image_is_pushed_and_tagged(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "index", "index")
    amd64 = written.images["linux/amd64"]
    ecr = FakeEcr()

    with open_layout(written.path) as layout:
        result = push_layout(layout, ecr, "models/sample", "v1", platform="linux/amd64")

    assert result.digest == amd64.manifest_digest
    assert ecr.tags == {"v1": amd64.manifest_digest}
    assert set(ecr.blobs) == {amd64.config_digest, *amd64.layer_digests}


def test_given_two_images_when_pushed_by_reference_then_the_named_one_is_pushed(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "two", "two-images")
    ecr = FakeEcr()

    with open_layout(written.path) as layout:
        result = push_layout(layout, ecr, "models/sample", "arm", reference="1.0-arm64")

    assert result.digest == written.images["linux/arm64/v8"].manifest_digest


def test_given_a_corrupt_layer_when_pushed_then_the_upload_is_not_completed(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "oci", "oci")
    path = _blob_path(written, written.big_layer)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    ecr = FakeEcr()

    with (
        open_layout(written.path) as layout,
        pytest.raises(LayoutError, match=f"not {written.big_layer}; the blob is corrupt"),
    ):
        push_layout(layout, ecr, "models/sample", "v1")

    completed = [call["layerDigests"][0] for call in ecr.calls_named("complete_layer_upload")]
    assert written.big_layer not in completed
    assert ecr.calls_named("put_image") == []


def test_given_a_missing_layer_when_pushed_then_nothing_is_sent_to_ecr(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "oci", "oci")
    _blob_path(written, written.big_layer).unlink()
    ecr = FakeEcr()

    with open_layout(written.path) as layout, pytest.raises(LayoutError, match=written.big_layer):
        push_layout(layout, ecr, "models/sample", "v1")

    assert ecr.calls == []


@pytest.mark.parametrize("existing", [(), ("models/sample",)])
def test_given_any_repository_state_when_pushed_then_the_repository_exists_afterwards(
    tmp_path: Path, existing: tuple[str, ...]
) -> None:
    written = write_layout(tmp_path / "oci", "oci")
    ecr = FakeEcr(repositories=existing)

    with open_layout(written.path) as layout:
        push_layout(layout, ecr, "models/sample", "v1")

    assert ecr.repositories == {"models/sample"}
    assert ecr.tags == {"v1": written.top_digest}


def test_given_a_skopeo_dir_image_when_pushed_then_the_digest_is_kept(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "oci", "docker-v2")
    ecr = FakeEcr()

    with open_layout(_as_skopeo_dir(written, tmp_path / "dir")) as layout:
        result = push_layout(layout, ecr, "models/sample", "v1")

    assert result.digest == written.top_digest == digest_of(ecr.manifests[written.top_digest][0].encode())


def test_given_the_fixture_writer_when_run_twice_then_digests_are_identical(tmp_path: Path) -> None:
    first = write_layout(tmp_path / "a", "index")
    second = write_layout(tmp_path / "b", "index")

    assert first.top_digest == second.top_digest
    assert (
        hashlib.sha256(as_tar(first.path).read_bytes()).digest()
        == hashlib.sha256(as_tar(second.path).read_bytes()).digest()
    )


def test_given_a_save_with_one_platform_of_an_index_when_that_platform_is_pushed_then_it_works(
    tmp_path: Path,
) -> None:
    # docker save with the containerd store keeps the whole index but only local platforms' blobs.
    written = write_layout(tmp_path / "index", "index")
    _blob_path(written, written.images["linux/arm64/v8"].manifest_digest).unlink()
    ecr = FakeEcr()

    with open_layout(written.path) as layout:
        with pytest.raises(LayoutError, match=r"linux/arm64/v8 manifest.*push one platform"):
            push_layout(layout, ecr, "models/sample", "v1")
        result = push_layout(layout, ecr, "models/sample", "v1", platform="linux/amd64")

    assert result.digest == written.images["linux/amd64"].manifest_digest

"""The sample image built by real tools, read back and pushed into moto's ECR.

umoci builds the image (sandbox/imagebuild.py); skopeo, when installed, proves that the
layout is one other tools accept and rewrites it into the formats sellers hand us.
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from tests.fixtures.images import write_layout

from sandbox.imagebuild import ImageBuildError, build_sample_image
from sandbox.oci import DOCKER_MANIFEST, OCI_MANIFEST, OciLayout, open_layout, push_layout

pytestmark = pytest.mark.integration

needs_umoci = pytest.mark.skipif(
    shutil.which("umoci") is None, reason="umoci is not installed (`apt-get install -y umoci`)"
)
needs_skopeo = pytest.mark.skipif(
    shutil.which("skopeo") is None, reason="skopeo is not installed (`apt-get install -y skopeo`)"
)
REGION = "us-east-1"


@pytest.fixture(scope="module")
def sample_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed (`apt-get install -y umoci`)")
    return build_sample_image(tmp_path_factory.mktemp("sample") / "image")


@pytest.fixture
def ecr(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        yield boto3.client("ecr", region_name=REGION)


def _layer_files(layout: OciLayout, digest: str) -> dict[str, tarfile.TarInfo]:
    data = gzip.decompress(layout.read_blob(digest))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {member.name.removeprefix("./"): member for member in tar.getmembers()}


def _skopeo(*args: str) -> bytes:
    return subprocess.run(["skopeo", *args], check=True, capture_output=True, timeout=120).stdout


# ---- umoci ----------------------------------------------------------------------------------------


@needs_umoci
def test_given_umoci_when_the_sample_is_built_then_it_is_a_debian_sagemaker_image(sample_image: Path) -> None:
    with open_layout(sample_image) as layout:
        tree = layout.load(layout.select("latest"))
        config_blob, *layers = tree.blobs
        config = layout.read_blob(config_blob.digest)
        base, app = (_layer_files(layout, layer.digest) for layer in layers)

    assert tree.media_type == OCI_MANIFEST
    assert b'"architecture":"amd64"' in config
    assert b'"os":"linux"' in config
    assert "etc/os-release" in base
    assert base["etc/os-release"].size > 0
    assert app["usr/local/bin/serve"].mode & 0o111
    assert "opt/program/predictor.py" in app


@needs_umoci
def test_given_the_same_inputs_when_built_twice_then_the_digest_is_the_same(sample_image: Path, tmp_path: Path) -> None:
    again = build_sample_image(tmp_path / "again")

    with open_layout(sample_image) as first, open_layout(again) as second:
        assert first.select().digest == second.select().digest


@needs_umoci
def test_given_another_source_date_epoch_when_built_then_the_digest_changes(
    sample_image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1600000000")

    other = build_sample_image(tmp_path / "other")

    with open_layout(sample_image) as first, open_layout(other) as second:
        assert first.select().digest != second.select().digest


@needs_umoci
def test_given_an_earlier_build_when_rebuilt_in_place_then_it_is_replaced(tmp_path: Path) -> None:
    target = build_sample_image(tmp_path / "image")

    build_sample_image(target)

    with open_layout(target) as layout:
        assert len(layout.manifests()) == 1


def test_given_a_directory_that_is_not_a_layout_when_built_into_then_it_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")

    with pytest.raises(ImageBuildError, match="refusing to replace"):
        build_sample_image(tmp_path)

    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_given_no_umoci_on_path_when_building_then_the_error_says_to_run_make_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))

    with pytest.raises(ImageBuildError, match=r"umoci is not installed.*make demo"):
        build_sample_image(tmp_path / "image")


# ---- skopeo -------------------------------------------------------------------------------------


@needs_umoci
@needs_skopeo
def test_given_the_sample_layout_when_skopeo_reads_it_then_it_sees_the_same_manifest(sample_image: Path) -> None:
    with open_layout(sample_image) as layout:
        tree = layout.load(layout.select())

    assert _skopeo("inspect", "--raw", f"oci:{sample_image}:latest") == tree.raw


@needs_umoci
@needs_skopeo
def test_given_kind_docker_v2_when_built_then_the_manifest_is_docker_v2_over_the_same_layers(
    sample_image: Path, tmp_path: Path
) -> None:
    docker = build_sample_image(tmp_path / "docker", kind="docker-v2")

    with open_layout(sample_image) as oci, open_layout(docker) as converted:
        oci_tree = oci.load(oci.select())
        docker_tree = converted.load(converted.select())

    assert docker_tree.media_type == DOCKER_MANIFEST
    assert [b.digest for b in docker_tree.blobs] == [b.digest for b in oci_tree.blobs]


@needs_umoci
@needs_skopeo
def test_given_a_skopeo_dir_copy_in_docker_format_when_opened_then_blobs_and_digest_match(
    sample_image: Path, tmp_path: Path
) -> None:
    target = tmp_path / "dir"
    _skopeo("copy", "--quiet", "--format", "v2s2", f"oci:{sample_image}:latest", f"dir:{target}")

    with open_layout(sample_image) as oci, open_layout(target) as copied:
        oci_tree = oci.load(oci.select())
        tree = copied.load(copied.select())

    assert copied.kind == "skopeo-dir"
    assert tree.media_type == DOCKER_MANIFEST
    assert tree.raw == (target / "manifest.json").read_bytes()
    assert [b.digest for b in tree.all_blobs()] == [b.digest for b in oci_tree.all_blobs()]


@needs_skopeo
def test_given_an_index_copied_by_skopeo_to_dir_when_opened_then_the_whole_index_is_read(tmp_path: Path) -> None:
    written = write_layout(tmp_path / "index", "index")
    target = tmp_path / "dir"
    _skopeo("copy", "--quiet", "--all", f"oci:{written.path}:1.0", f"dir:{target}")

    with open_layout(target) as layout:
        tree = layout.load(layout.select())

    assert tree.digest == written.top_digest
    assert [m.digest for m in tree.walk()] == list(written.manifests)


# ---- moto smoke test --------------------------------------------------------------------------------


@needs_umoci
def test_given_the_sample_image_when_pushed_to_moto_then_ecr_reports_its_digest_and_bytes(
    sample_image: Path, ecr: Any
) -> None:
    with open_layout(sample_image) as layout:
        tree = layout.load(layout.select())
        result = push_layout(layout, ecr, "sample/model", "v1")

    image = ecr.batch_get_image(repositoryName="sample/model", imageIds=[{"imageTag": "v1"}])["images"][0]
    assert image["imageId"]["imageDigest"] == result.digest == tree.digest
    assert image["imageManifest"].encode() == tree.raw
    assert image["imageManifestMediaType"] == OCI_MANIFEST


def test_given_a_buildx_index_when_pushed_to_moto_then_children_are_stored_by_digest(ecr: Any, tmp_path: Path) -> None:
    written = write_layout(tmp_path / "index", "index")

    with open_layout(written.path) as layout:
        push_layout(layout, ecr, "sample/model", "v1")

    details = ecr.describe_images(repositoryName="sample/model")["imageDetails"]
    tagged = {d["imageDigest"] for d in details if d.get("imageTags")}
    assert tagged == {written.top_digest}
    assert {d["imageDigest"] for d in details} == set(written.manifests)
    availability = ecr.batch_check_layer_availability(repositoryName="sample/model", layerDigests=list(written.blobs))
    assert availability["failures"] == []

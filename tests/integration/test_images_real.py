"""The real serving images (Debian bookworm + a SageMaker-style server), read back and run.

The first run builds them (debootstrap + umoci, about a minute here) into
~/.cache/mlpublish/images; later runs reuse them. Tests that run a container need root and
runc: they fail under CI and skip elsewhere when either is missing.
"""

from __future__ import annotations

import gzip
import json
import struct
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures import serving_images
from tests.fixtures.serving_images import Container, runc_container

from sandbox.imagebuild import ImageBuildError
from sandbox.images_real import KINDS, aarch64_elf, build_serving_image
from sandbox.oci import OCI_MANIFEST, open_layout

pytestmark = pytest.mark.integration
serving_image = serving_images.serving_image  # the session-scoped fixture

CSV = b"1,2,3\n4,5,6\n7,8,9\n"
CSV_HEADERS = {"Content-Type": "text/csv", "Accept": "text/csv"}
Build = Callable[[str], Path]


def _image(layout_path: Path) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(manifest, config, layer digests) of the layout's only image."""
    with open_layout(layout_path) as layout:
        descriptor = layout.select("latest")
        assert descriptor.media_type == OCI_MANIFEST
        manifest = json.loads(layout.read_blob(descriptor.digest))
        config = json.loads(layout.read_blob(manifest["config"]["digest"]))
    return manifest, config, [layer["digest"] for layer in manifest["layers"]]


def _layer_member(layout_path: Path, digest: str, wanted: set[str]) -> dict[str, tarfile.TarInfo | bytes]:
    """Members named in ``wanted`` of one layer (streamed: the Debian layer is 260 MB unpacked)."""
    found: dict[str, tarfile.TarInfo | bytes] = {}
    blob = layout_path / "blobs" / "sha256" / digest.removeprefix("sha256:")
    with gzip.open(blob) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name in wanted:
                extracted = tar.extractfile(member) if member.isfile() else None
                found[name] = extracted.read() if extracted else member
    return found


# ---- the layouts --------------------------------------------------------------------------------


def test_given_the_good_kind_when_built_then_it_is_a_debian_amd64_image_whose_entrypoint_serves(
    serving_image: Build,
) -> None:
    path = serving_image("good")

    _manifest, config, layers = _image(path)
    base = _layer_member(path, layers[0], {"etc/os-release", "usr/lib/os-release"})
    app = _layer_member(path, layers[1], {"usr/local/bin/entrypoint", "opt/program/predictor.py"})

    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/entrypoint"]
    assert config["config"]["Cmd"] == ["serve"]
    assert config["config"]["Labels"] == {"com.amazonaws.sagemaker.capabilities.accept-bind-to-port": "true"}
    link = base["etc/os-release"]
    assert isinstance(link, tarfile.TarInfo)
    assert link.issym()
    assert link.linkname == "../usr/lib/os-release"  # as Debian ships it
    os_release = base["usr/lib/os-release"]
    assert isinstance(os_release, bytes)
    assert b"ID=debian" in os_release
    assert b"VERSION_CODENAME=bookworm" in os_release
    assert isinstance(app["usr/local/bin/entrypoint"], bytes)
    assert b"serve)" in app["usr/local/bin/entrypoint"]
    assert "opt/program/predictor.py" in app


def test_given_each_broken_kind_when_built_then_it_is_the_good_image_plus_one_small_layer(
    serving_image: Build,
) -> None:
    _manifest, _config, good_layers = _image(serving_image("good"))

    for kind in KINDS[1:]:
        manifest, config, layers = _image(serving_image(kind))
        assert layers[:-1] == good_layers, kind
        assert manifest["layers"][-1]["size"] < 4096, kind
        assert config["architecture"] == ("arm64" if kind == "arm64" else "amd64"), kind


def test_given_the_arm64_kind_when_its_entrypoint_is_read_then_it_is_an_aarch64_elf(serving_image: Build) -> None:
    path = serving_image("arm64")
    _manifest, _config, layers = _image(path)

    entrypoint = _layer_member(path, layers[-1], {"usr/local/bin/entrypoint"})["usr/local/bin/entrypoint"]

    assert isinstance(entrypoint, bytes)
    assert entrypoint[:4] == b"\x7fELF"
    assert struct.unpack_from("<H", entrypoint, 18)[0] == 183  # EM_AARCH64


def test_given_a_built_image_when_asked_again_then_the_cache_answers_without_rebuilding(serving_image: Build) -> None:
    path = serving_image("good")
    index = (path / "index.json").stat().st_mtime_ns

    started = time.monotonic()
    again = build_serving_image("good")

    assert again == path
    assert time.monotonic() - started < 1
    assert (path / "index.json").stat().st_mtime_ns == index


def test_given_an_unknown_kind_when_built_then_the_error_lists_the_kinds(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match=r"unknown serving image kind 'gpu'.*good, no-server"):
        build_serving_image("gpu", cache_dir=tmp_path)


def test_given_no_debootstrap_when_a_build_is_needed_then_the_error_says_make_deb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda *_args, **_kwargs: None)

    with pytest.raises(ImageBuildError, match=r"debootstrap and umoci not installed.*make deb"):
        build_serving_image("good", cache_dir=tmp_path)


def test_given_a_user_who_is_not_root_when_a_build_is_needed_then_the_error_says_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda name, **_kwargs: f"/usr/bin/{name}")
    monkeypatch.setattr("os.geteuid", lambda: 1000)

    with pytest.raises(ImageBuildError, match=r"needs root"):
        build_serving_image("good", cache_dir=tmp_path)


def test_given_the_handmade_aarch64_elf_then_its_header_is_a_static_arm64_executable() -> None:
    elf = aarch64_elf(b"hi\n")

    e_type, e_machine, _version, entry, phoff = struct.unpack_from("<HHIQQ", elf, 16)
    p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff)
    assert elf[:7] == b"\x7fELF\x02\x01\x01"  # 64-bit, little-endian
    assert (e_type, e_machine) == (2, 183)  # ET_EXEC, EM_AARCH64
    assert (p_type, p_flags, p_offset) == (1, 5, 0)  # PT_LOAD, R+X, the whole file
    assert p_vaddr < entry < p_vaddr + p_filesz == p_vaddr + len(elf)
    assert elf.endswith(b"hi\n")


# ---- under runc ---------------------------------------------------------------------------------


def _started(container: Container, deadline: float = 15) -> Container:
    ping = container.wait_for_ping(deadline)
    assert ping.status == 200, f"{ping}; output:\n{container.output()}"
    return container


def test_given_the_good_image_under_runc_then_it_answers_ping_and_invocations(serving_image: Build) -> None:
    with runc_container(serving_image("good")) as container:
        _started(container)
        parameters = container.request("GET", "/execution-parameters")
        csv = container.request("POST", "/invocations", CSV, headers=CSV_HEADERS)
        as_json = container.request("POST", "/invocations", CSV, headers={"Content-Type": "text/csv"})
        output = container.output()
        bundle = container.bundle
        container_id = container.id

    assert json.loads(parameters.body) == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }
    assert (csv.status, csv.body) == (200, "3,6.0\n3,15.0\n3,24.0\n")
    assert json.loads(as_json.body)["predictions"][2] == {"fields": 3, "score": 24.0}
    assert "serving on port 8080" in output
    assert '"POST /invocations HTTP/1.1" 200' in output
    assert not bundle.exists()
    assert container.status() == "gone", container_id


def test_given_sagemaker_bind_to_port_under_runc_then_the_good_image_listens_there(serving_image: Build) -> None:
    with runc_container(serving_image("good"), env={"SAGEMAKER_BIND_TO_PORT": "9090"}) as container:
        ping = container.wait_for_ping(15, port=9090)
        on_8080 = container.request("GET", "/ping")

    assert ping.status == 200
    assert on_8080.error is not None
    assert "Connection refused" in on_8080.error


def test_given_a_model_artifact_under_runc_then_the_good_image_reads_it(serving_image: Build, tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text('{"bias": 0.5}')

    with runc_container(serving_image("good"), model_dir=tmp_path) as container:
        _started(container)
        csv = container.request("POST", "/invocations", b"1,2\n", headers=CSV_HEADERS)

    assert csv.body == "2,3.5\n"


def test_given_no_server_under_runc_then_it_prints_serving_and_exits(serving_image: Build) -> None:
    with runc_container(serving_image("no-server")) as container:
        ping = container.wait_for_ping(10)

        assert ping.status is None
        assert container.status() == "stopped"
        assert container.output() == "serving\n"


def test_given_wrong_port_under_runc_then_8080_refuses_and_8081_answers(serving_image: Build) -> None:
    with runc_container(serving_image("wrong-port")) as container:
        assert container.wait_for_ping(15, port=8081).status == 200
        on_8080 = container.request("GET", "/ping")

    assert on_8080.error is not None
    assert "Connection refused" in on_8080.error


def test_given_needs_internet_under_runc_then_it_cannot_resolve_pypi_and_exits(serving_image: Build) -> None:
    with runc_container(serving_image("needs-internet")) as container:
        ping = container.wait_for_ping(15)

        assert ping.status is None
        assert container.status() == "stopped"
        assert "cannot download https://pypi.org/" in container.output()


def test_given_errors_500_under_runc_then_a_request_with_a_record_over_the_limit_fails_every_time(
    serving_image: Build,
) -> None:
    with runc_container(serving_image("errors-500")) as container:
        _started(container)
        small = container.request("POST", "/invocations", b"0.1,0.2,0.3\n", headers=CSV_HEADERS)
        large = container.request("POST", "/invocations", b"0.4,0.5,0.6\n", headers=CSV_HEADERS)
        retried = container.request("POST", "/invocations", b"0.4,0.5,0.6\n", headers=CSV_HEADERS)
        output = container.output()

    assert small.status == 200
    assert (large.status, retried.status) == (500, 500)
    assert "ValueError: record 2 cannot be scored, its values sum over 1.0" in output


def test_given_slow_ping_under_runc_then_ping_times_out_while_it_runs(serving_image: Build) -> None:
    with runc_container(serving_image("slow-ping")) as container:
        ping = container.wait_for_ping(3)

        assert ping.status is None
        assert ping.error is not None
        assert "timed out" in ping.error
        assert container.status() == "running"


def test_given_oversize_response_under_runc_then_invocations_answers_over_6_mb(serving_image: Build) -> None:
    with runc_container(serving_image("oversize-response")) as container:
        _started(container)
        response = container.request("POST", "/invocations", CSV, headers=CSV_HEADERS)

    assert response.status == 200
    assert response.length > 6 * 1024 * 1024


def test_given_arm64_under_runc_on_x86_then_exec_fails_with_exec_format_error(serving_image: Build) -> None:
    with runc_container(serving_image("arm64")) as container:
        ping = container.wait_for_ping(10)

        assert ping.status is None
        assert container.status() == "stopped"
        # A host with qemu-user registered in binfmt_misc runs it instead: it prints and exits.
        assert container.output() in ("exec /usr/local/bin/entrypoint: exec format error\n", "serving (aarch64)\n")

"""The parts of local validation that need no container: records, batches, limits, unpacking."""

from __future__ import annotations

import gzip
import io
import json
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from sandbox.validation_local import (
    MB,
    Deadlines,
    LayoutImage,
    LocalValidationError,
    Unsupported,
    extract_model,
    limits_for,
    mini_batches,
    split_records,
    unpack_image,
)

pytestmark = pytest.mark.unit


# ---- records and mini-batches -------------------------------------------------------------------


def test_given_line_split_then_each_non_blank_line_is_a_record_with_its_newline() -> None:
    assert split_records(b"1,2\n\n3,4\n5,6", "Line") == [b"1,2\n", b"3,4\n", b"5,6"]


def test_given_no_split_then_the_whole_object_is_one_record() -> None:
    assert split_records(b"1,2\n3,4\n", "None") == [b"1,2\n3,4\n"]


def test_given_recordio_then_records_are_split_on_their_headers_with_padding() -> None:
    def record(payload: bytes) -> bytes:
        return struct.pack("<II", 0xCED7230A, len(payload)) + payload + b"\0" * (-len(payload) % 4)

    data = record(b"abcde") + record(b"xyz1")

    assert split_records(data, "RecordIO") == [record(b"abcde"), record(b"xyz1")]


def test_given_bytes_that_are_not_recordio_then_the_job_fails_naming_the_offset() -> None:
    with pytest.raises(LocalValidationError, match=r"not RecordIO .*byte 0"):
        split_records(b"1,2,3\n4,5,6\n", "RecordIO")


def test_given_tfrecord_then_records_are_split_on_their_lengths() -> None:
    def record(payload: bytes) -> bytes:
        return struct.pack("<Q", len(payload)) + b"crc1" + payload + b"crc2"

    assert split_records(record(b"hello") + record(b""), "TFRecord") == [record(b"hello"), record(b"")]


def test_given_multirecord_then_records_are_packed_up_to_the_payload_limit() -> None:
    records = [b"a" * 4, b"b" * 4, b"c" * 4]

    assert mini_batches(records, "MultiRecord", 8) == [b"aaaabbbb", b"cccc"]
    assert mini_batches(records, "SingleRecord", 8) == records


def test_given_a_record_over_the_payload_limit_then_the_job_fails_with_its_size_and_the_fix() -> None:
    with pytest.raises(LocalValidationError, match=r"record 2 .* over MaxPayloadInMB=1; split the input"):
        mini_batches([b"small", b"x" * (MB + 1)], "MultiRecord", MB)


# ---- limits and deadlines -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance_type", "vcpus", "memory_gib"),
    [("ml.m5.large", 2, 8.0), ("ml.c5.xlarge", 4, 8.0), ("ml.r6i.2xlarge", 8, 64.0), ("ml.g4dn.xlarge", 4, 16.0)],
)
def test_given_an_instance_type_then_its_vcpus_and_memory_bound_the_container(
    instance_type: str, vcpus: int, memory_gib: float
) -> None:
    limits = limits_for(instance_type)

    assert (limits["instance_vcpus"], limits["instance_memory_gib"]) == (vcpus, memory_gib)
    assert 1 <= limits["cpus"] <= vcpus
    assert 0 < limits["memory_bytes"] <= memory_gib * 1024**3


def test_given_a_scale_then_every_deadline_but_the_ping_timeout_shrinks() -> None:
    scaled = Deadlines().scaled(0.01)

    assert scaled.ping_startup == pytest.approx(2.4)
    assert scaled.invocation_timeout == pytest.approx(6.0)
    assert scaled.ping_timeout == 2.0


# ---- unpacking ----------------------------------------------------------------------------------


def _layer(entries: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """A gzipped tar layer: (name, file bytes | None for a directory, symlink target)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data, link in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def _image(layers: list[bytes]) -> LayoutImage:
    blobs = {f"sha256:{index:064x}": blob for index, blob in enumerate(layers)}
    blobs["sha256:" + "c" * 64] = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    manifest = {
        "config": {"digest": "sha256:" + "c" * 64},
        "layers": [
            {"digest": digest, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
            for digest in blobs
            if not digest.endswith("c" * 64)
        ],
    }
    opener: Callable[[str], IO[bytes]] = lambda digest: io.BytesIO(blobs[digest])  # noqa: E731
    return LayoutImage(manifest, opener)


def test_given_layers_with_whiteouts_then_the_root_filesystem_is_their_union(tmp_path: Path) -> None:
    lower = _layer(
        [
            ("etc", None, None),
            ("etc/gone", b"old", None),
            ("etc/kept", b"kept", None),
            ("cache", None, None),
            ("cache/a", b"a", None),
            ("app", b"a file, then a directory", None),
            ("link", None, "/etc/kept"),
        ]
    )
    upper = _layer(
        [
            ("etc/.wh.gone", b"", None),
            ("cache/.wh..wh..opq", b"", None),
            ("cache/b", b"b", None),
            ("app", None, None),
            ("app/main.py", b"print()", None),
            ("link", b"a file over a link", None),
        ]
    )

    unpack_image(_image([lower, upper]), tmp_path / "rootfs")

    root = tmp_path / "rootfs"
    assert not (root / "etc/gone").exists()
    assert (root / "etc/kept").read_bytes() == b"kept"
    assert sorted(p.name for p in (root / "cache").iterdir()) == ["b"]
    assert (root / "app/main.py").read_bytes() == b"print()"
    assert not (root / "link").is_symlink()
    assert (root / "link").read_bytes() == b"a file over a link"


def test_given_an_entry_escaping_the_root_then_unpacking_refuses_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = _layer([("escape", None, str(outside)), ("escape/owned", b"x", None)])

    with pytest.raises(LocalValidationError, match="cannot be unpacked"):
        unpack_image(_image([evil]), tmp_path / "rootfs")

    assert list(outside.iterdir()) == []


def test_given_a_truncated_layer_then_unpacking_fails_naming_the_layer_and_the_fix(tmp_path: Path) -> None:
    truncated = _layer([("big", b"x" * 100_000, None)])[:-200]

    with pytest.raises(LocalValidationError, match=r"layer sha256:0+ cannot be unpacked .* rebuild and push"):
        unpack_image(_image([truncated]), tmp_path / "rootfs")


def test_given_a_zstd_layer_then_the_sandbox_says_it_cannot_run_it(tmp_path: Path) -> None:
    image = _image([b"zstd bytes"])
    image.manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd"  # type: ignore[index]

    with pytest.raises(Unsupported, match="zstd"):
        unpack_image(image, tmp_path / "rootfs")


def test_given_a_model_tar_gz_then_it_is_extracted_as_sagemaker_does(tmp_path: Path) -> None:
    artifact = _layer([("model.json", b'{"bias": 1}', None), ("weights", None, None), ("weights/w.bin", b"w", None)])

    extract_model(artifact, tmp_path / "model", "s3://b/model.tar.gz")

    assert (tmp_path / "model/model.json").read_bytes() == b'{"bias": 1}'
    assert (tmp_path / "model/weights/w.bin").read_bytes() == b"w"


def test_given_a_zip_as_model_tar_gz_then_extraction_fails_saying_what_it_must_be(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.json", "{}")

    with pytest.raises(LocalValidationError, match=r"s3://b/model.tar.gz could not be extracted .* gzip-compressed"):
        extract_model(buffer.getvalue(), tmp_path / "model", "s3://b/model.tar.gz")

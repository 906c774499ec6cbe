"""Telling an image's OS from its own layers: os-release found through symlinks, overrides and whiteouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import pytest
from tests.fixtures.images import digest_of

from mlpublish.errors import ImageScanBlocked
from mlpublish.images.manifests import DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR
from mlpublish.images.osinfo import (
    BlobOpener,
    OsDetection,
    OsRelease,
    OsReleaseUnresolved,
    detect_os,
    parse_os_release,
)
from mlpublish.state import BlobRef

pytestmark = pytest.mark.unit

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'
UBUNTU = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n'
GENTOO = 'NAME=Gentoo\nID=gentoo\nPRETTY_NAME="Gentoo Linux"\nVERSION_ID="2.17"\n'
CHUNK = 1000  # small download chunks, so every read crosses chunk boundaries

Member = tuple[tarfile.TarInfo, bytes]


def file(name: str, text: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(text.encode())
    return info, text.encode()


def symlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


def hardlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info, b""


def directory(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, b""


def whiteout(path: str) -> Member:
    """What a layer holds when it deletes ``path`` (OCI image-spec layer.md)."""
    parent, _, name = path.rpartition("/")
    return file(f"{parent}/.wh.{name}")


def tar_of(*members: Member) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class FakeRegistry:
    """Serves blobs in small chunks as ECR's download does, and records what was opened."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.opened: list[str] = []

    def layer(self, *members: Member, gzipped: bool = True) -> BlobRef:
        data = tar_of(*members)
        blob = gzip.compress(data, mtime=0) if gzipped else data
        self.blobs[digest_of(blob)] = blob
        return BlobRef(
            digest=digest_of(blob), size=len(blob), media_type=DOCKER_LAYER_GZIP if gzipped else DOCKER_LAYER_TAR
        )

    @contextmanager
    def open_blob(self, repository: str, digest: str, registry_id: str | None = None) -> Iterator[Iterator[bytes]]:
        self.opened.append(digest)
        data = self.blobs[digest]
        yield (data[start : start + CHUNK] for start in range(0, len(data), CHUNK))

    @property
    def opener(self) -> BlobOpener:
        return partial(self.open_blob, "acme/sentiment")


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


def detect(registry: FakeRegistry, *layers: BlobRef, budget: int | None = None) -> OsDetection:
    if budget is None:
        return detect_os(list(layers), registry.opener)
    return detect_os(list(layers), registry.opener, budget=budget)


# --- where os-release is found -----------------------------------------------------------


def test_given_a_base_layer_with_etc_os_release_then_the_os_is_its_pretty_name(registry: FakeRegistry) -> None:
    base = registry.layer(directory("etc"), file("etc/os-release", DEBIAN))
    app = registry.layer(file("opt/program/predictor.py", "print('ready')\n"))

    detection = detect(registry, base, app)

    assert detection.os is not None
    assert (detection.os.id, detection.os.version_id) == ("debian", "12")
    assert detection.os.name == "Debian GNU/Linux 12 (bookworm)"
    assert detection.os.scannable
    assert registry.opened == [base.digest, app.digest]  # every layer: a later one may change it


def test_given_etc_os_release_as_a_symlink_to_usr_lib_then_the_linked_file_is_read(registry: FakeRegistry) -> None:
    base = registry.layer(file("usr/lib/os-release", DEBIAN), symlink("etc/os-release", "../usr/lib/os-release"))

    detection = detect(registry, base)

    assert detection.os is not None
    assert detection.os.name == "Debian GNU/Linux 12 (bookworm)"


def test_given_a_symlink_in_a_later_layer_to_a_file_of_an_earlier_one_then_the_file_is_read(
    registry: FakeRegistry,
) -> None:
    lower = registry.layer(file("usr/lib/os-release", UBUNTU), file("etc/os-release", GENTOO))
    upper = registry.layer(symlink("etc/os-release", "/usr/lib/os-release"))

    detection = detect(registry, lower, upper)

    assert detection.os is not None
    assert detection.os.id == "ubuntu"


def test_given_names_starting_with_dot_slash_as_docker_writes_them_then_os_release_is_found(
    registry: FakeRegistry,
) -> None:
    base = registry.layer(directory("./"), directory("./etc"), file("./etc/os-release", UBUNTU))

    detection = detect(registry, base)

    assert detection.os is not None
    assert detection.os.name == "Ubuntu 24.04.1 LTS"
    assert detection.os.id_like == ("debian",)


def test_given_only_usr_lib_os_release_then_it_is_the_fallback(registry: FakeRegistry) -> None:
    detection = detect(registry, registry.layer(file("usr/lib/os-release", DEBIAN)))

    assert detection.os is not None
    assert detection.os.id == "debian"


def test_given_a_hard_link_to_os_release_in_the_same_layer_then_the_linked_file_is_read(
    registry: FakeRegistry,
) -> None:
    base = registry.layer(file("usr/lib/os-release", DEBIAN), hardlink("etc/os-release", "usr/lib/os-release"))
    upper = registry.layer(whiteout("usr/lib/os-release"))

    detection = detect(registry, base, upper)

    assert detection.os is not None
    assert detection.os.id == "debian"


def test_given_an_uncompressed_tar_layer_then_it_is_read_as_it_is(registry: FakeRegistry) -> None:
    detection = detect(registry, registry.layer(file("etc/os-release", DEBIAN), gzipped=False))

    assert detection.os is not None
    assert detection.os.id == "debian"


# --- later layers win ------------------------------------------------------------------------


def test_given_a_later_layer_that_replaces_os_release_then_the_later_file_wins(registry: FakeRegistry) -> None:
    lower = registry.layer(file("etc/os-release", DEBIAN))
    upper = registry.layer(file("etc/os-release", UBUNTU))

    detection = detect(registry, lower, upper)

    assert detection.os is not None
    assert detection.os.id == "ubuntu"


def test_given_whiteouts_of_both_os_release_files_then_the_image_has_no_os(registry: FakeRegistry) -> None:
    lower = registry.layer(file("etc/os-release", DEBIAN), file("usr/lib/os-release", DEBIAN))
    upper = registry.layer(whiteout("etc/os-release"), whiteout("usr/lib/os-release"))

    detection = detect(registry, lower, upper)

    assert detection == OsDetection(None)
    assert detection.absent


def test_given_a_whiteout_of_etc_os_release_only_then_usr_lib_os_release_is_the_fallback(
    registry: FakeRegistry,
) -> None:
    lower = registry.layer(file("etc/os-release", GENTOO), file("usr/lib/os-release", DEBIAN))
    upper = registry.layer(whiteout("etc/os-release"))

    detection = detect(registry, lower, upper)

    assert detection.os is not None
    assert detection.os.id == "debian"


def test_given_an_opaque_etc_in_a_later_layer_then_the_earlier_etc_os_release_is_gone(
    registry: FakeRegistry,
) -> None:
    lower = registry.layer(file("etc/os-release", DEBIAN))
    upper = registry.layer(directory("etc"), file("etc/.wh..wh..opq"), file("etc/hostname", "model\n"))

    assert detect(registry, lower, upper).absent


def test_given_a_whiteout_of_etc_then_everything_below_it_is_gone(registry: FakeRegistry) -> None:
    lower = registry.layer(file("etc/os-release", DEBIAN))
    upper = registry.layer(file(".wh.etc"))

    assert detect(registry, lower, upper).absent


def test_given_a_file_deleted_and_added_again_in_a_later_layer_then_the_new_file_counts(
    registry: FakeRegistry,
) -> None:
    first = registry.layer(file("etc/os-release", DEBIAN))
    deleted = registry.layer(whiteout("etc/os-release"))
    added = registry.layer(file("etc/os-release", UBUNTU))

    detection = detect(registry, first, deleted, added)

    assert detection.os is not None
    assert detection.os.id == "ubuntu"


# --- no OS, or one ECR cannot scan --------------------------------------------------------


def test_given_an_image_built_from_scratch_then_every_layer_is_read_and_it_has_no_os(
    registry: FakeRegistry,
) -> None:
    layers = [
        registry.layer(file("usr/local/bin/serve", "#!/bin/sh\n")),
        registry.layer(file("opt/ml/model/weights.bin", "0" * 5000)),
    ]

    detection = detect(registry, *layers)

    assert detection.absent
    assert registry.opened == [layer.digest for layer in layers]


def test_given_an_os_ecr_cannot_scan_then_it_is_found_and_named_but_not_scannable(registry: FakeRegistry) -> None:
    detection = detect(registry, registry.layer(file("etc/os-release", GENTOO)))

    assert detection.os is not None
    assert (detection.os.id, detection.os.name) == ("gentoo", "Gentoo Linux")
    assert not detection.os.scannable


@pytest.mark.parametrize(
    ("os_id", "scannable"),
    [
        ("amzn", True),
        ("debian", True),
        ("ubuntu", True),
        ("centos", True),
        ("ol", True),
        ("alpine", True),
        ("rhel", True),
        ("rocky", False),
        ("almalinux", False),
        ("fedora", False),
        ("gentoo", False),
    ],
)
def test_given_an_os_id_then_only_the_families_ecr_basic_scanning_lists_are_scannable(
    os_id: str, scannable: bool
) -> None:
    assert OsRelease(id=os_id, id_like=("rhel", "debian")).scannable is scannable


# --- when the OS cannot be told ------------------------------------------------------------


def test_given_layers_larger_than_the_budget_then_the_os_is_unknown_without_downloading_them(
    registry: FakeRegistry,
) -> None:
    base = registry.layer(file("etc/os-release", DEBIAN))

    detection = detect(registry, base, budget=base.size - 1)

    assert detection.os is None
    assert not detection.absent
    assert detection.unknown is not None
    assert "more than the" in detection.unknown
    assert registry.opened == []


def test_given_a_registry_serving_more_than_the_budget_then_reading_stops_and_the_os_is_unknown(
    registry: FakeRegistry,
) -> None:
    weights = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000))  # compresses poorly
    served = registry.layer(file("etc/os-release", DEBIAN), file("opt/ml/model/weights.bin", weights))
    declared = served.model_copy(update={"size": 10})

    detection = detect(registry, declared, budget=CHUNK)

    assert (detection.os, detection.absent) == (None, False)
    assert detection.unknown is not None


def test_given_a_deadline_that_has_passed_then_reading_stops_and_the_os_is_unknown(registry: FakeRegistry) -> None:
    base = registry.layer(file("etc/os-release", DEBIAN))

    detection = detect_os([base], registry.opener, deadline=time.monotonic() - 1)

    assert (detection.os, detection.absent) == (None, False)
    assert detection.unknown == "reading the layers took longer than allowed"


# --- when os-release cannot be resolved in the layers read: an error, never "not detected" ----


def unresolved(registry: FakeRegistry, *layers: BlobRef) -> OsReleaseUnresolved:
    with pytest.raises(OsReleaseUnresolved) as caught:
        detect(registry, *layers)
    assert isinstance(caught.value, ImageScanBlocked)  # refused as an image ECR cannot scan
    assert caught.value.layers == tuple(layer.digest for layer in layers)
    return caught.value


def test_given_a_symlink_loop_between_the_two_os_release_paths_then_it_is_an_error_naming_the_loop_and_the_fix(
    registry: FakeRegistry,
) -> None:
    layer = registry.layer(
        symlink("etc/os-release", "../usr/lib/os-release"), symlink("usr/lib/os-release", "../../etc/os-release")
    )

    error = unresolved(registry, layer)

    assert error.problem.startswith(
        "/etc/os-release is a symlink loop: /etc/os-release -> /usr/lib/os-release -> /etc/os-release; "
        "/usr/lib/os-release is a symlink loop: /usr/lib/os-release -> /etc/os-release -> /usr/lib/os-release; "
    )
    assert "make /etc/os-release a regular file, or a relative symlink to ../usr/lib/os-release" in error.problem
    assert "UnscannableImage" in error.problem


def test_given_a_symlink_to_itself_then_it_is_a_loop(registry: FakeRegistry) -> None:
    error = unresolved(registry, registry.layer(symlink("etc/os-release", "os-release")))

    assert error.problem.startswith("/etc/os-release is a symlink loop: /etc/os-release -> /etc/os-release;")


def test_given_a_symlink_to_usr_lib_os_release_that_no_layer_has_then_it_is_a_dangling_link_error(
    registry: FakeRegistry,
) -> None:
    error = unresolved(registry, registry.layer(symlink("etc/os-release", "../usr/lib/os-release")))

    assert error.problem.startswith(
        "/etc/os-release is a dangling symlink: it points to /usr/lib/os-release, which no layer has; "
    )
    assert str(error).startswith("the image's OS cannot be told: /etc/os-release is a dangling symlink")


def test_given_usr_lib_os_release_deleted_by_a_later_layer_then_the_link_to_it_dangles(
    registry: FakeRegistry,
) -> None:
    lower = registry.layer(symlink("etc/os-release", "../usr/lib/os-release"), file("usr/lib/os-release", DEBIAN))
    upper = registry.layer(whiteout("usr/lib/os-release"))

    error = unresolved(registry, lower, upper)

    assert "dangling symlink: it points to /usr/lib/os-release" in error.problem


def test_given_a_symlink_to_a_path_outside_those_read_then_it_is_an_error_naming_the_target(
    registry: FakeRegistry,
) -> None:
    error = unresolved(registry, registry.layer(symlink("etc/os-release", "/nonexistent/os-release")))

    assert error.problem.startswith(
        "/etc/os-release is a symlink to /nonexistent/os-release, outside the os-release paths read "
        "(/etc/os-release, /usr/lib/os-release); "
    )


@pytest.mark.parametrize(
    ("member", "what"),
    [
        (directory("etc/os-release"), "/etc/os-release is a directory"),
        (hardlink("etc/os-release", "usr/share/os-release"), "/etc/os-release is a hard link to /usr/share/os-release"),
    ],
)
def test_given_os_release_that_is_not_a_regular_file_then_it_is_an_error_saying_what_it_is(
    registry: FakeRegistry, member: Member, what: str
) -> None:
    assert unresolved(registry, registry.layer(member)).problem.startswith(what)


def test_given_a_broken_etc_os_release_but_a_good_usr_lib_one_then_the_fallback_is_read_as_os_release_5_says(
    registry: FakeRegistry,
) -> None:
    layer = registry.layer(symlink("etc/os-release", "/nonexistent"), file("usr/lib/os-release", DEBIAN))

    detection = detect(registry, layer)

    assert detection.os is not None
    assert detection.os.id == "debian"


def test_given_a_layer_that_is_not_a_gzip_tar_then_it_is_an_error_naming_the_layer_and_the_fix(
    registry: FakeRegistry,
) -> None:
    base = registry.layer(file("etc/os-release", DEBIAN))
    broken = b"\x1f\x8b\x08\x00" + b"\x00" * 200
    registry.blobs[digest_of(broken)] = broken
    layer = BlobRef(digest=digest_of(broken), size=len(broken), media_type=DOCKER_LAYER_GZIP)

    error = unresolved(registry, base, layer)

    assert error.problem.startswith(
        f"/etc/os-release cannot be resolved: layer 2 of 2 ({layer.digest}) is not a readable, complete tar ("
    )
    assert error.problem.endswith("and push it again")
    assert "docker buildx build --platform linux/amd64" in error.problem


def test_given_a_gzip_layer_pushed_with_a_failing_checksum_then_it_is_an_error_rather_than_not_detected(
    registry: FakeRegistry,
) -> None:
    good = registry.layer(file("usr/local/bin/serve", "#!/bin/sh\n"))
    data = bytearray(registry.blobs[good.digest])
    data[-8] ^= 0x01  # the gzip trailer's CRC32: only reading to the end finds it
    layer = stored(registry, bytes(data), gzipped=False).model_copy(update={"media_type": DOCKER_LAYER_GZIP})

    assert "CRC check failed" in unresolved(registry, layer).problem


def test_given_a_layer_corrupted_on_the_way_then_the_os_is_unknown_and_the_copy_is_left_to_refuse_it(
    registry: FakeRegistry,
) -> None:
    layer = registry.layer(file("etc/os-release", DEBIAN))
    data = bytearray(registry.blobs[layer.digest])
    data[-8] ^= 0x01  # served so, but the digest names the good bytes
    registry.blobs[layer.digest] = bytes(data)

    detection = detect(registry, layer)

    assert (detection.os, detection.absent) == (None, False)
    assert detection.unknown is not None
    assert detection.unknown.startswith(f"layer {layer.digest} was served as other bytes (sha256:")


def stored(registry: FakeRegistry, data: bytes, *, gzipped: bool) -> BlobRef:
    """A layer of exactly these tar bytes (gzipped or not), stored under their own digest."""
    blob = gzip.compress(data, mtime=0) if gzipped else data
    registry.blobs[digest_of(blob)] = blob
    return BlobRef(
        digest=digest_of(blob), size=len(blob), media_type=DOCKER_LAYER_GZIP if gzipped else DOCKER_LAYER_TAR
    )


def end_of_members(whole: bytes) -> int:
    """Where the end-of-archive block of a tar starts."""
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        tar.getmembers()
        return tar.offset


@pytest.mark.parametrize("gzipped", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize(
    ("cut", "why"),
    [
        pytest.param(
            lambda whole: whole[: end_of_members(whole) - 1000],
            "unexpected end of data",
            id="inside-the-last-members-data",
        ),
        pytest.param(
            lambda whole: whole[: end_of_members(whole)],
            "it ends after 5632 bytes, before its last member and end-of-archive block (6144)",
            id="without-end-of-archive-block",
        ),
    ],
)
def test_given_a_tar_cut_short_after_os_release_then_it_is_an_error_although_a_stream_read_ends_quietly(
    registry: FakeRegistry, gzipped: bool, cut: Callable[[bytes], bytes], why: str
) -> None:
    # os-release first and whole: os-release was found, yet the layer was cut.
    whole = tar_of(file("etc/os-release", DEBIAN), file("opt/program/predictor.py", "#" * 4000 + "\n"))
    layer = stored(registry, cut(whole), gzipped=gzipped)

    error = unresolved(registry, layer)

    assert f"is not a readable, complete tar ({why})" in error.problem


def test_given_a_whole_tar_then_the_completeness_check_passes(registry: FakeRegistry) -> None:
    whole = tar_of(file("etc/os-release", DEBIAN), file("opt/program/predictor.py", "#" * 4000 + "\n"))

    detection = detect(registry, stored(registry, whole, gzipped=False))

    assert detection.os is not None


# --- the os-release format ------------------------------------------------------------------


def test_given_os_release_with_comments_quotes_and_escapes_then_the_values_are_unquoted() -> None:
    text = '# a comment\nNAME=\'Amazon Linux\'\nID="amzn"\nID_LIKE="centos rhel fedora"\nVERSION_ID="2023"\n'
    text += 'PRETTY_NAME="Amazon \\"Linux\\" 2023"\n\nBROKEN LINE\n'

    parsed = parse_os_release(text)

    assert parsed == OsRelease(
        id="amzn", id_like=("centos", "rhel", "fedora"), version_id="2023", pretty_name='Amazon "Linux" 2023'
    )


def test_given_os_release_without_id_or_pretty_name_then_the_id_is_linux_as_os_release_5_says() -> None:
    parsed = parse_os_release('VERSION_ID="1"\nPRETTY_NAME=\n')

    assert (parsed.id, parsed.name, parsed.scannable) == ("linux", "linux 1", False)


def test_given_a_very_long_pretty_name_then_the_name_is_cut() -> None:
    parsed = parse_os_release(f'ID=debian\nPRETTY_NAME="{"x" * 500}"\n')

    assert len(parsed.name) == 120
    assert parsed.name.endswith("...")

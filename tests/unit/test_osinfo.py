"""Telling an image's OS from its own layers: os-release found through symlinks, overrides and whiteouts."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import pytest
from tests.fixtures.images import digest_of
from tests.fixtures.layers import (
    GiB,
    LazyLayer,
    Member,
    MiB,
    directory,
    file,
    hardlink,
    incompressible,
    lazy_member,
    lazy_opener,
    symlink,
    tar_of,
    whiteout,
)

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


class FakeRegistry:
    """Serves blobs in small chunks as ECR's download does, and records what was opened."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.opened: list[str] = []
        self.served: dict[str, int] = {}  # bytes handed out per blob

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

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(data), CHUNK):
                chunk = data[start : start + CHUNK]
                self.served[digest] = self.served.get(digest, 0) + len(chunk)
                yield chunk

        yield chunks()

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
    assert registry.opened == [app.digest, base.digest]  # from the top: a later layer may change it
    assert detection.bytes_read == app.size + registry.served[base.digest]


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


# --- a 2 GiB base layer: read only as far as needed -----------------------------------------


def test_given_a_2_gib_base_layer_with_os_release_early_then_it_is_read_only_up_to_os_release() -> None:
    base = LazyLayer(
        directory("etc"),
        file("etc/os-release", UBUNTU),
        lazy_member("usr/local/cuda/lib64/libcublasLt.so.12", 2 * GiB),
    )

    detection = detect_os([base.ref], lazy_opener(base))

    assert detection.os is not None
    assert detection.os.name == "Ubuntu 24.04.1 LTS"
    assert base.declared > 2 * GiB
    assert detection.bytes_read == base.served <= 2 * MiB  # at most two download chunks of 2 GiB


def test_given_debians_etc_os_release_symlink_then_it_is_followed_deeper_into_the_2_gib_tar() -> None:
    base = LazyLayer(
        symlink("etc/os-release", "../usr/lib/os-release"),
        lazy_member("usr/lib/gcc/libstdc++.so.6", 20 * MiB),  # what comes between, in tar order
        file("usr/lib/os-release", DEBIAN),
        lazy_member("usr/lib/x86_64-linux-gnu/libcudnn.so.9", 2 * GiB),
    )

    detection = detect_os([base.ref], lazy_opener(base))

    assert detection.os is not None
    assert detection.os.id == "debian"
    assert 20 * MiB < detection.bytes_read == base.served <= 22 * MiB


def test_given_the_symlink_in_an_upper_layer_then_it_is_followed_into_the_2_gib_base_layer(
    registry: FakeRegistry,
) -> None:
    base = LazyLayer(file("usr/lib/os-release", DEBIAN), lazy_member("usr/lib/python3/torch.so", 2 * GiB))
    upper_ref = registry.layer(symlink("etc/os-release", "../usr/lib/os-release"), file("opt/program/serve"))
    upper = (upper_ref, registry.blobs[upper_ref.digest])

    detection = detect_os([base.ref, upper_ref], lazy_opener(base, upper))

    assert detection.os is not None
    assert detection.os.id == "debian"
    assert detection.bytes_read == upper_ref.size + base.served
    assert base.served <= 2 * MiB


def test_given_os_release_in_an_upper_layer_then_the_2_gib_base_layer_is_never_opened(
    registry: FakeRegistry,
) -> None:
    base = LazyLayer(file("etc/os-release", GENTOO), lazy_member("usr/lib/libhuge.so", 2 * GiB))
    upper_ref = registry.layer(file("etc/os-release", UBUNTU))
    upper = (upper_ref, registry.blobs[upper_ref.digest])

    detection = detect_os([base.ref, upper_ref], lazy_opener(base, upper))

    assert detection.os is not None
    assert detection.os.id == "ubuntu"
    assert base.served == 0


def test_given_a_whiteout_above_the_2_gib_base_layer_then_its_os_release_is_gone_and_the_fallback_is_read(
    registry: FakeRegistry,
) -> None:
    base = LazyLayer(
        file("etc/os-release", GENTOO),
        file("usr/lib/os-release", DEBIAN),
        lazy_member("usr/lib/libhuge.so", 2 * GiB),
    )
    upper_ref = registry.layer(whiteout("etc/os-release"))
    upper = (upper_ref, registry.blobs[upper_ref.digest])

    detection = detect_os([base.ref, upper_ref], lazy_opener(base, upper))

    assert detection.os is not None
    assert detection.os.id == "debian"
    assert base.served <= 2 * MiB


def test_given_a_2_gib_base_layer_without_os_release_then_the_budget_runs_out_and_the_os_is_uncertain() -> None:
    base = LazyLayer(file("usr/local/bin/serve", "#!/bin/sh\n"), lazy_member("opt/ml/model/weights.bin", 2 * GiB))

    detection = detect_os([base.ref], lazy_opener(base), budget=8 * MiB)

    assert (detection.os, detection.absent) == (None, False)
    assert detection.unknown == "the read budget of 8 MiB ran out after 9 MiB, in layer 1 of 1"
    assert detection.bytes_read == base.served == 9 * MiB


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

    assert detection == OsDetection(None, bytes_read=upper.size)
    assert detection.absent
    assert registry.opened == [upper.digest]  # what the whiteouts hide is not read


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
    assert registry.opened == [layer.digest for layer in reversed(layers)]
    assert detection.bytes_read == sum(layer.size for layer in layers)


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


def test_given_layers_declared_larger_than_the_budget_then_the_bytes_served_are_what_counts(
    registry: FakeRegistry,
) -> None:
    base = registry.layer(file("etc/os-release", DEBIAN))
    declared_huge = base.model_copy(update={"size": 64 * GiB})

    detection = detect(registry, declared_huge, budget=10 * CHUNK)

    assert detection.os is not None
    assert detection.bytes_read == base.size <= 10 * CHUNK


def test_given_an_upper_layer_larger_than_the_budget_then_the_os_is_uncertain_and_says_how_much_was_read(
    registry: FakeRegistry,
) -> None:
    base = registry.layer(file("etc/os-release", DEBIAN))
    weights = registry.layer(file("opt/ml/model/weights.bin", incompressible(20 * CHUNK)))

    detection = detect(registry, base, weights, budget=5 * CHUNK)

    assert (detection.os, detection.absent) == (None, False)
    assert detection.bytes_read == 6 * CHUNK  # the chunk that went over is counted too
    assert detection.unknown == "the read budget of 4.9 KiB ran out after 5.9 KiB, in layer 2 of 2"
    assert registry.opened == [weights.digest]  # the base, whose file would settle it, is never reached


def test_given_a_registry_serving_more_than_declared_then_reading_stops_at_the_budget(
    registry: FakeRegistry,
) -> None:
    served = registry.layer(file("opt/ml/model/weights.bin", incompressible(2000 * 64)))
    declared = served.model_copy(update={"size": 10})

    detection = detect(registry, declared, budget=CHUNK)

    assert (detection.os, detection.absent) == (None, False)
    assert detection.unknown is not None
    assert detection.bytes_read == 2 * CHUNK


def test_given_a_deadline_that_has_passed_then_reading_stops_and_the_os_is_unknown(registry: FakeRegistry) -> None:
    base = registry.layer(file("etc/os-release", DEBIAN))

    detection = detect_os([base], registry.opener, deadline=time.monotonic() - 1)

    assert (detection.os, detection.absent) == (None, False)
    assert detection.unknown == f"the time allowed for reading layers ran out after {base.size} bytes, in layer 1 of 1"


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
    assert registry.opened == [layer.digest]
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


def test_given_a_layer_read_to_its_end_corrupted_on_the_way_then_the_os_is_unknown_and_the_copy_refuses_it(
    registry: FakeRegistry,
) -> None:
    base = registry.layer(file("etc/os-release", DEBIAN))
    app = registry.layer(file("opt/program/serve", "#!/bin/sh\n"))
    data = bytearray(registry.blobs[app.digest])
    data[-8] ^= 0x01  # served so, but the digest names the good bytes
    registry.blobs[app.digest] = bytes(data)

    detection = detect(registry, base, app)

    assert (detection.os, detection.absent) == (None, False)
    assert detection.unknown is not None
    assert detection.unknown.startswith(f"layer {app.digest} was served as other bytes (sha256:")


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
def test_given_an_upper_layer_cut_short_then_it_is_an_error_although_a_stream_read_ends_quietly(
    registry: FakeRegistry, gzipped: bool, cut: Callable[[bytes], bytes], why: str
) -> None:
    base = registry.layer(file("etc/os-release", DEBIAN))
    whole = tar_of(file("opt/program/serve", "#!/bin/sh\n"), file("opt/program/predictor.py", "#" * 4000 + "\n"))
    layer = stored(registry, cut(whole), gzipped=gzipped)

    error = unresolved(registry, base, layer)

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

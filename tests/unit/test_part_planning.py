"""How a large object's multipart copy is planned: part sizes, part and range counts, the
limits, and which parts each range (one Map iteration) copies."""

from __future__ import annotations

import hashlib

import pytest

from mlpublish import objects
from mlpublish.errors import ArtifactCopyFailed
from mlpublish.objects import (
    GiB,
    MiB,
    multipart_etag,
    part_bytes,
    part_count,
    part_size_for,
    range_count,
    range_parts,
)
from mlpublish.state import PartUpload

pytestmark = pytest.mark.unit

TiB = 1024 * GiB


def upload_for(size: int) -> PartUpload:
    part_size = part_size_for(size)
    parts = part_count(size, part_size)
    per_range, ranges = range_count(parts)
    return PartUpload(
        upload_id="u", part_size=part_size, parts=parts, parts_per_range=per_range, ranges=ranges, last_range=ranges - 1
    )


@pytest.mark.parametrize(
    ("size", "part_size", "parts"),
    [
        (65 * MiB, 64 * MiB, 2),
        (5 * GiB, 64 * MiB, 80),
        (625 * GiB, 64 * MiB, 10_000),  # the largest object at the preferred part size
        (625 * GiB + 1, 65 * MiB, 9_847),
        (1 * TiB, 105 * MiB, 9_987),
        (objects.S3_MAX_OBJECT_SIZE, 5 * GiB, 10_000),
    ],
)
def test_given_an_object_size_then_parts_are_64_mib_or_as_large_as_10000_parts_need(
    size: int, part_size: int, parts: int
) -> None:
    assert part_size_for(size) == part_size
    assert part_count(size, part_size) == parts
    assert objects.S3_MIN_PART_SIZE <= part_size <= objects.S3_MAX_PART_SIZE
    assert part_size % MiB == 0


def test_given_any_size_up_to_s3s_limit_then_the_parts_stay_within_s3s_limits() -> None:
    for size in [65 * MiB, 7 * GiB + 3, 700 * GiB, 3 * TiB + 12345, 48 * TiB, objects.S3_MAX_OBJECT_SIZE]:
        part_size = part_size_for(size)
        parts = part_count(size, part_size)
        assert parts <= objects.S3_MAX_PARTS
        assert objects.S3_MIN_PART_SIZE <= part_size <= objects.S3_MAX_PART_SIZE
        assert (parts - 1) * part_size < size <= parts * part_size


def test_given_an_object_larger_than_s3_holds_then_it_is_refused_with_the_figure_and_the_limit() -> None:
    size = objects.S3_MAX_OBJECT_SIZE + 1

    with pytest.raises(ArtifactCopyFailed) as caught:
        part_size_for(size)

    assert f"{size:,} bytes" in caught.value.message
    assert f"{objects.S3_MAX_OBJECT_SIZE:,} bytes (48.8 TiB)" in caught.value.message
    assert round(objects.S3_MAX_OBJECT_SIZE / TiB, 1) == 48.8  # S3's "50 TB": 10,000 parts of 5 GiB


def test_given_parts_then_their_byte_ranges_cover_the_object_once_with_a_shorter_last_part() -> None:
    size, part_size = 200 * MiB + 7, 64 * MiB

    ranges = [part_bytes(number, size, part_size) for number in range(1, part_count(size, part_size) + 1)]

    assert ranges == [
        (0, 64 * MiB - 1),
        (64 * MiB, 128 * MiB - 1),
        (128 * MiB, 192 * MiB - 1),
        (192 * MiB, 200 * MiB + 6),
    ]


@pytest.mark.parametrize(
    ("parts", "per_range", "ranges"),
    [(2, 4, 1), (4, 4, 1), (5, 4, 2), (80, 4, 20), (128, 4, 32), (129, 5, 26), (10_000, 313, 32)],
)
def test_given_a_part_count_then_ranges_are_at_most_32_of_at_least_4_parts(
    parts: int, per_range: int, ranges: int
) -> None:
    assert range_count(parts) == (per_range, ranges)


@pytest.mark.parametrize("size", [65 * MiB, 5 * GiB, 1 * TiB, objects.S3_MAX_OBJECT_SIZE])
def test_given_an_upload_then_its_ranges_hold_every_part_once_in_order(size: int) -> None:
    upload = upload_for(size)

    numbers = [
        number
        for index in range(upload.ranges)
        for number in range(range_parts(upload, index)[0], range_parts(upload, index)[1] + 1)
    ]

    assert numbers == list(range(1, upload.parts + 1))
    assert upload.last_range == upload.ranges - 1


def test_given_the_largest_object_then_the_plan_in_the_state_is_as_small_as_for_a_small_one() -> None:
    small, largest = upload_for(65 * MiB), upload_for(objects.S3_MAX_OBJECT_SIZE)

    small_json, largest_json = small.model_dump_json(), largest.model_dump_json()

    assert largest.parts == 10_000
    assert len(largest_json) - len(small_json) < 16  # wider numbers only, no list of parts
    assert len(largest_json) < 512


def test_given_part_etags_then_the_multipart_etag_is_the_md5_of_their_digests_and_the_count() -> None:
    parts = [b"first part", b"second part"]
    etags = [f'"{hashlib.md5(part).hexdigest()}"' for part in parts]

    expected = hashlib.md5(b"".join(hashlib.md5(part).digest() for part in parts)).hexdigest()
    assert multipart_etag(etags) == f"{expected}-2"

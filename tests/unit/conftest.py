"""Unit tests run without network: any socket other than a Unix socket fails the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_socket import disable_socket, enable_socket


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    # The same as `pytest --disable-socket --allow-unix-socket`, for tests/unit only.
    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()

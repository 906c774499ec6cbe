"""Unit tests cannot reach the network (tests/unit/conftest.py); Unix sockets stay allowed."""

from __future__ import annotations

import socket

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import HTTPClientError
from pytest_socket import SocketBlockedError

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore:A test tried to use socket:UserWarning")]


def test_given_a_unit_test_when_it_opens_an_internet_socket_then_it_is_refused() -> None:
    with pytest.raises(SocketBlockedError):
        socket.create_connection(("192.0.2.1", 443), timeout=1)


def test_given_a_unit_test_when_it_calls_aws_then_the_call_is_refused_before_leaving_the_machine(
    aws_credentials: None,
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1", config=Config(retries={"max_attempts": 1}))

    with pytest.raises(HTTPClientError, match="A test tried to use socket"):
        s3.list_buckets()


def test_given_a_unit_test_when_it_opens_a_unix_socket_then_it_is_allowed() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    left.sendall(b"ok")
    assert right.recv(2) == b"ok"
    left.close()
    right.close()

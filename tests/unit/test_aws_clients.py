"""mlpublish.aws: one boto3 Session per container, a client per service and region made on first use."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from mlpublish import aws

pytestmark = pytest.mark.unit


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch, aws_credentials: None) -> list[boto3.session.Session]:
    """Every boto3 Session made from here on."""
    made: list[boto3.session.Session] = []

    class CountedSession(boto3.session.Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(boto3.session, "Session", CountedSession)
    return made


def test_given_clients_of_several_services_and_regions_when_made_then_one_session_makes_them_all(
    sessions: list[boto3.session.Session],
) -> None:
    made = [aws.client("s3", "us-west-2"), aws.client("ecr", "us-west-2"), aws.client("ecr", "us-east-2")]
    aws.client("sts", "us-west-2", max_attempts=2)

    assert sessions == [aws.session()]
    assert [(c.meta.service_model.service_name, c.meta.region_name) for c in made] == [
        ("s3", "us-west-2"),
        ("ecr", "us-west-2"),
        ("ecr", "us-east-2"),
    ]


def test_given_nothing_called_yet_then_no_session_exists(sessions: list[boto3.session.Session]) -> None:
    assert sessions == []


def test_given_a_client_made_when_asked_again_for_its_service_and_region_then_it_is_the_same_client(
    sessions: list[boto3.session.Session],
) -> None:
    first = aws.client("ecr", "us-east-2")

    assert aws.client("ecr", "us-east-2") is first
    assert aws.client("ecr", "us-west-2") is not first


def test_given_clients_when_made_then_they_retry_adaptively_with_the_attempts_asked_for(
    sessions: list[boto3.session.Session],
) -> None:
    # botocore keeps max_attempts (retries) as total_max_attempts (the first call + retries).
    assert aws.client("s3", "us-west-2").meta.config.retries == {"mode": "adaptive", "total_max_attempts": 9}
    assert aws.client("sns", "us-west-2", max_attempts=2).meta.config.retries == {
        "mode": "adaptive",
        "total_max_attempts": 3,
    }
    assert aws.client("s3", "us-west-2").meta.config.read_timeout == 60


def test_given_clients_forgotten_when_a_client_is_asked_for_then_a_new_session_makes_it(
    sessions: list[boto3.session.Session],
) -> None:
    before = aws.client("s3", "us-west-2")

    aws.forget_clients()
    after = aws.client("s3", "us-west-2")

    assert after is not before
    assert len(sessions) == 2

"""Fixtures shared by every test layer: fake AWS credentials, moto, a Lambda context, releases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import botocore.loaders
import pytest
import yaml
from moto import mock_aws
from tests.fixtures.releases import SOURCE_REGION, release_document

from mlpublish import aws
from sandbox.ext_s3 import S3Extension


class _SearchPaths(list[str]):
    """boto3 appends its data path to the loader of every session it makes: keep one copy."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


@pytest.fixture(scope="session", autouse=True)
def _parse_sdk_models_once() -> Iterator[None]:
    """Share one botocore data loader between all sessions.

    Under moto (and with the per-test client caches cleared) every client comes from a new
    session, and every session parses the SDK's JSON models again: seconds per test run.
    The loader only caches botocore's own data files, so no behaviour under test changes.
    """
    create_loader = botocore.loaders.create_loader
    loader = create_loader()
    loader._search_paths = _SearchPaths(loader.search_paths)

    def shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
        # A test that sets AWS_DATA_PATH gets a loader of its own.
        return loader if search_path_string is None else create_loader(search_path_string)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("botocore.session.create_loader", shared_loader)
        yield


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """The Session, clients and the account are cached per container; a test is a new container."""
    aws.forget_clients()
    yield
    aws.forget_clients()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, so that no test can reach a real account by accident."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", SOURCE_REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture
def moto_aws(aws_credentials: None) -> Iterator[None]:
    """Every AWS service in moto for the duration of the test, with the sandbox's S3 (copies
    honour their pinned ETag, the publishing buckets' TLS-only policy admits SDK requests)."""
    with mock_aws(), S3Extension():
        yield


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "mlpublish-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-west-2:123456789012:function:mlpublish-test"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def release_yaml() -> Callable[..., str]:
    """``release_yaml(document=None, **overrides)``: release file text (see tests/fixtures/releases.py)."""

    def make(document: dict[str, Any] | None = None, **overrides: Any) -> str:
        return yaml.safe_dump(document if document is not None else release_document(**overrides), sort_keys=False)

    return make

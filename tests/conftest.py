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

# Real seconds of the slowest test files (setup + calls, a run with 4 workers on 2 cores). Under
# xdist's --dist loadfile a file runs on one worker; the longest start first, so that none of them
# starts last and runs on alone while the other workers are idle (xdist would order files by their
# number of tests). Every other file follows in collection order; tests keep their order in a file.
SLOWEST_FILES = {
    "tests/e2e/test_faults.py": 220,
    "tests/e2e/test_check.py": 211,
    "tests/e2e/test_failures.py": 163,
    "tests/integration/test_images_real.py": 160,
    "tests/e2e/test_lambda_environments.py": 153,
    "tests/e2e/test_iam.py": 129,
    "tests/e2e/test_algorithm_release.py": 118,
    "tests/e2e/test_real_validation.py": 114,
    "tests/e2e/test_announcement_outage.py": 95,
    "tests/e2e/test_triggers.py": 79,
    "tests/e2e/test_serve.py": 75,
    "tests/e2e/test_publish.py": 73,
    "tests/e2e/test_large_copies.py": 49,
    "tests/integration/test_cold_imports.py": 43,
    "tests/e2e/test_notification_filters.py": 42,
    "tests/integration/test_lambda_env_handler_imports.py": 40,
}


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False  # keep the order below (xdist's own sorts by test count)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first (see SLOWEST_FILES); a stable sort keeps every other order."""
    items.sort(key=lambda item: -SLOWEST_FILES.get(item.nodeid.split("::", 1)[0], 0))


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

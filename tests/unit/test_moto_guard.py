"""What the sandbox patches in moto, in one place: an upgrade that moves any of it fails here.

The sandbox replaces private moto methods and module attributes (sandbox/*.py). Each entry
below is one of them with the signature the replacement was written against; moto is pinned
exactly in requirements/dev.txt, and this test says what to re-check when the pin moves.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import moto
import pytest
from moto.awslambda.models import LambdaFunction
from moto.cloudformation.models import Stack
from moto.ecr.models import ECRBackend
from moto.ecr.responses import ECRResponse
from moto.events.models import Rule
from moto.events.utils import EventTemplateParser
from moto.moto_server import werkzeug_app
from moto.s3.models import FakeBucket, FakeKey, S3Backend
from moto.s3.responses import S3Response
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.timestamp import Timestamp
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils import boto_client
from moto.sts.models import STSBackend

pytestmark = pytest.mark.unit

PATCHED: list[tuple[str, Callable[..., Any], list[str]]] = [
    ("ext_lambda", LambdaFunction._invoke_lambda, ["self", "event"]),
    (
        "ext_lambda",
        STSBackend.assume_role,
        ["self", "region_name", "role_session_name", "role_arn", "policy", "duration", "external_id"],
    ),
    ("ext_stepfunctions", boto_client.boto_client_for, ["region", "service", "state_credentials"]),
    ("clock", WaitFunction._wait_interval, ["self", "env", "wait_seconds"]),
    ("clock", Timestamp._get_wait_seconds, ["self", "env"]),
    (
        "ext_ecr",
        ECRBackend.upload_layer_part,
        ["self", "repository_name", "upload_id", "part_first_byte", "part_last_byte", "layer_part_blob", "registry_id"],
    ),
    (
        "ext_ecr",
        ECRBackend.complete_layer_upload,
        ["self", "repository_name", "upload_id", "layer_digests", "registry_id"],
    ),
    (
        "ext_ecr",
        ECRBackend.put_image,
        ["self", "repository_name", "image_manifest", "image_tag", "image_manifest_mediatype", "digest"],
    ),
    ("ext_ecr", ECRBackend.start_image_scan, ["self", "registry_id", "repository_name", "image_id"]),
    ("ext_ecr", ECRBackend.describe_image_scan_findings, ["self", "registry_id", "repository_name", "image_id"]),
    ("ext_ecr", ECRResponse.get_download_url_for_layer, ["self"]),
    ("ext_ecr", ECRResponse.get_authorization_token, ["self"]),
    # Called (not replaced) by the registry endpoint: its uploads are moto's.
    ("ecr_registry", ECRBackend.initiate_layer_upload, ["self", "repository_name", "registry_id"]),
    ("ecr_registry", ECRBackend._get_repository, ["self", "name", "registry_id"]),
    ("ext_s3", S3Response.copy_object, ["self"]),
    ("ext_s3", S3Response.upload_part_copy, ["self"]),
    ("ext_s3", FakeBucket.get_permission, ["self", "action", "resource"]),
    (
        "ext_s3",
        S3Backend.upload_part_copy,
        [
            "self",
            "dest_bucket_name",
            "multipart_id",
            "part_id",
            "src_bucket_name",
            "src_key_name",
            "src_version_id",
            "start_byte",
            "end_byte",
        ],
    ),
    ("ext_stepfunctions", AmazonStateLanguageParser.parse, ["definition"]),  # ParsedDefinitions
    ("ext_stepfunctions", Preprocessor.visit, ["self", "tree"]),  # builds the program from a kept tree
    ("stack", Stack.parse_template, ["template"]),  # _json_templates
    ("ext_accounts", ECRResponse.ecr_backend.fget, ["self"]),
    ("ext_accounts", S3Response._key_response, ["self", "request", "full_url"]),
    ("ext_accounts", S3Response._bucket_response, ["self", "request", "full_url"]),
    ("ext_accounts", Rule.send_to_targets, ["self", "original_event", "transform_input"]),
]


def test_given_the_pinned_moto_then_it_is_the_version_the_sandbox_was_written_against() -> None:
    assert moto.__version__ == "5.2.5"


@pytest.mark.parametrize(("module", "target", "parameters"), PATCHED, ids=[t.__qualname__ for _, t, _ in PATCHED])
def test_given_a_patched_moto_callable_then_its_signature_is_unchanged(
    module: str, target: Callable[..., Any], parameters: list[str]
) -> None:
    assert list(inspect.signature(target).parameters) == parameters, f"re-check sandbox/{module}.py"


def test_given_the_patched_moto_attributes_then_they_exist() -> None:
    assert "<account>" not in EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE  # ext_events restores it
    assert retrier_decl.time.sleep  # clock replaces the retrier's time module
    key = FakeKey("k", b"value", account_id="123456789012", region_name="us-east-1")
    assert callable(key.lock.acquire)  # ext_s3 reads part ranges under the key's lock
    assert key._value_buffer.readable()  # ... from its buffer
    key.dispose()
    for name in ("create_model_package", "describe_model_package", "list_model_packages"):
        assert callable(getattr(SageMakerModelBackend, name)), name  # ext_sagemaker
    for name in ("DomainDispatcherApplication", "MotoRequestHandler", "create_backend_app"):
        assert hasattr(werkzeug_app, name), name  # server


def test_given_the_pinned_moto_then_it_serves_no_algorithms_and_the_sandbox_adds_them() -> None:
    handlers = {"create_algorithm", "describe_algorithm", "list_algorithms", "delete_algorithm", "delete_model_package"}
    assert not handlers & set(vars(SageMakerResponse))  # ext_sagemaker adds them; a moto that has them: re-check
    assert isinstance(SageMakerResponse.sagemaker_backend, property)  # per account (credentials) and region

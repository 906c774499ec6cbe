"""Step Functions calls other services as the state machine's role, in the stack's account;
SendTaskFailure keeps its cause.

moto 5.2.5's ASL interpreter makes its service calls (Lambda Invoke, ``sns:publish``,
``events:putEvents``, ``aws-sdk:*``) with a boto3 client signed by the access key "ak", which
moto maps to its default account (123456789012) whatever account the state machine is in: a
stack deployed in a seller's own account would invoke functions that do not exist there.
This extension signs those clients with credentials of the state machine's role (an STS
session in the stack's account), as Step Functions does, so every call lands in that account;
given the emulator's endpoint, the calls go over HTTP like everyone else's, so the emulator
sees them (IAM audit, fault injection).

moto 5.2.5's SendTaskFailure response drops the request's ``cause``: the task fails with the
error name alone, so a Catch sees no Cause and a failure's reasons are lost. ``TaskFailureCause``
passes it on, as Step Functions does.

moto 5.2.5 parses a definition with its ANTLR grammar (pure Python: about a second for the
pipeline's definition on a busy machine) when a state machine is created and again when each
execution starts. ``ParsedDefinitions`` parses each definition text once and builds the
evaluation components from that parse tree afresh for every caller, so no execution shares
state with another; what runs is exactly what moto would have built.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import threading
from contextlib import ExitStack
from typing import Any
from unittest.mock import patch

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from moto.core.responses import ActionResult, EmptyResult
from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils import boto_client
from moto.stepfunctions.responses import StepFunctionResponse

from sandbox.extension import Extension


class StateMachineCredentials(Extension):
    """Sign the interpreter's service calls with ``access_key`` (and its secret and token)."""

    def __init__(self, access_key: str, secret_key: str, session_token: str, *, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        self.credentials = {
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "aws_session_token": session_token,
        }

    def client_for(self, region: str, service: str, state_credentials: Any = None) -> BaseClient:
        """moto's ``boto_client_for`` with the state machine's credentials."""
        return boto3.client(
            service_name=service,
            region_name=region,
            config=Config(
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
            ),
            endpoint_url=self.endpoint,
            **self.credentials,
        )

    def _patch(self, stack: ExitStack) -> None:
        """Replace ``boto_client_for`` wherever the interpreter imported it by name."""
        import moto.stepfunctions.parser.asl.component.state.exec as executors

        for found in pkgutil.walk_packages(executors.__path__, executors.__name__ + "."):
            importlib.import_module(found.name)  # every module that may call boto_client_for
        original = boto_client.boto_client_for
        for name, module in list(sys.modules.items()):
            if name.startswith("moto.stepfunctions.parser") and getattr(module, "boto_client_for", None) is original:
                stack.enter_context(patch.object(module, "boto_client_for", self.client_for))


class TaskFailureCause(Extension):
    """SendTaskFailure with its ``cause`` (moto keeps only the error name)."""

    def _patch(self, stack: ExitStack) -> None:
        def send_task_failure(response: StepFunctionResponse) -> ActionResult:
            response.stepfunction_backend.send_task_failure(  # type: ignore[call-arg]  # the parser backend takes it
                response._get_param("taskToken"), error=response._get_param("error"), cause=response._get_param("cause")
            )
            return EmptyResult()

        stack.enter_context(patch.object(StepFunctionResponse, "send_task_failure", send_task_failure))


#: Parse trees by definition text, shared by every sandbox in the process (a tree is only read).
_PARSE_TREES: dict[str, Any] = {}  # antlr4 ParserRuleContext per definition text
_PARSE_TREES_LOCK = threading.Lock()


class ParsedDefinitions(Extension):
    """``AmazonStateLanguageParser.parse`` with each definition's parse tree kept: the grammar runs
    once per definition text; the components (the program) are preprocessed anew on every call,
    as moto does. A definition that does not parse is parsed again, and fails again, each time."""

    def _patch(self, stack: ExitStack) -> None:
        original = AmazonStateLanguageParser.parse

        def parse(definition: str) -> tuple[EvalComponent, Any]:
            with _PARSE_TREES_LOCK:
                tree = _PARSE_TREES.get(definition)
            if tree is None:
                program, tree = original(definition)  # raises as moto does
                with _PARSE_TREES_LOCK:
                    _PARSE_TREES[definition] = tree
                return program, tree
            return Preprocessor().visit(tree), tree

        stack.enter_context(patch.object(AmazonStateLanguageParser, "parse", staticmethod(parse)))

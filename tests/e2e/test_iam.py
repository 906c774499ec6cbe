"""Every AWS call a handler makes is allowed by the IAM policy template.yaml gives it.

moto does not enforce IAM; without this check a missing permission would show only on AWS.
The calls are recorded while releases run through every path (each trigger, a repeat, a
validation failure); the policies come from the template translated as SAM does.
"""

from __future__ import annotations

import fnmatch
import os
from collections import defaultdict
from contextlib import redirect_stdout
from typing import Any
from unittest.mock import patch

import pytest
import yaml
from tests.fixtures.images import write_layout
from tests.fixtures.models import large_model
from tests.fixtures.outage import wait_until_deferred_announcement_backed_off

from sandbox.api_faults import ApiFault
from sandbox.oci import open_layout
from sandbox.report import delivery_report
from sandbox.runner import ROOT, RunOptions, Sandbox, load_release
from sandbox.stack import _prepare, load_template, translate

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "events" / "release.example.yaml"
ALGORITHM = ROOT / "events" / "release.algorithm.yaml"
FROM_ALGORITHM = ROOT / "events" / "release.from-algorithm.yaml"
LISTED = "listed"  # the example with a listing section, written by the fixture
LARGE_MODEL = "large-model"  # a model.tar.gz of 65 MiB, written by the fixture
PRODUCT = "prod-acmesentiment01"
SCENARIOS = [
    # An algorithm, listed in the seller's product (the Catalog API, us-east-1), then a model
    # package built on it (CreateAlgorithm, DescribeAlgorithm in ResolveRelease and CheckValidation).
    {
        "trigger": "ecr-push",
        "release": LISTED,
        "then_package": FROM_ALGORITHM,
        # Its offer prices inference on ml.m5.large and training on ml.m5.xlarge; the listing prices
        # training on ml.m5.2xlarge (UpdatePricingTerms on the offer, in the same change set).
        "catalog_products": {PRODUCT: ("ml.m5.large", "ml.m5.xlarge.a.t")},
    },
    {"trigger": "ecr-push", "repeat": True},
    # As a seller deploys it for upload triggers: the artifact bucket is watched.
    {"trigger": "s3-upload", "repeat": True, "parameter_overrides": {"WatchedBuckets": "acme-ml-artifacts"}},
    # A model over one part (64 MiB) is copied in parts (PlanArtifacts, CopyArtifactParts,
    # CompleteArtifact); the repeat finds it in place.
    {"trigger": "manual", "repeat": True, "model_data": LARGE_MODEL},
    {"trigger": "ecr-push", "validation": "failed"},
    # SNS and EventBridge down: the announcement goes to the queue, DeliverAnnouncement backs off
    # and, once they recover, delivers it.
    {
        "trigger": "ecr-push",
        "validation": "failed",
        "api_faults": [
            ApiFault.parse("5xx:sns:Publish:times=10000"),
            ApiFault.parse("5xx:events:PutEvents:times=10000"),
        ],
        "queued": True,
    },
    # Lambda down: no announcement can be built, so the state machine announces the raw error
    # with its own SNS and EventBridge tasks (UnformattedFailure).
    {"trigger": "manual", "api_faults": [ApiFault.parse("5xx:lambda:Invoke:times=1000")]},
]


STATE_MACHINE = "StateMachine"


def granted_actions() -> dict[str, list[str]]:
    """Allowed actions per function logical id (and for the state machine, "StateMachine"),
    from the translated template's roles."""
    template, _ = _prepare(load_template(ROOT / "template.yaml"), ROOT)
    with patch.dict(os.environ, {"AWS_DEFAULT_REGION": "us-west-2"}):  # samtranslator wants one
        resources = translate(template, {})["Resources"]
    granted: dict[str, list[str]] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            granted[logical_id] = role_actions(resources[resource["Properties"]["Role"]["Fn::GetAtt"][0]])
        elif resource["Type"] == "AWS::StepFunctions::StateMachine":
            granted[STATE_MACHINE] = role_actions(resources[resource["Properties"]["RoleArn"]["Fn::GetAtt"][0]])
    return granted


def role_actions(role: dict[str, Any]) -> list[str]:
    actions: list[str] = []
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement.get("Effect") == "Allow":
                action = statement["Action"]
                actions.extend([action] if isinstance(action, str) else action)
    return actions


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """IAM actions per function logical id, over every scenario."""
    image = write_layout(tmp_path_factory.mktemp("image"), "oci").path
    listed = tmp_path_factory.mktemp("releases") / "listed.yaml"
    document = yaml.safe_load(ALGORITHM.read_text())
    document["listing"] = {
        "product_id": PRODUCT,
        "release_notes": "Scores English reviews.",
        "access_role_arn": "arn:aws:iam::123456789012:role/AwsMarketplaceSageMakerIngestion",
        "usage_instructions": "Send text/csv.",
        "sample_notebook_url": "https://github.com/acme/sentiment/blob/main/sample.ipynb",
        "repository_url": "https://github.com/acme/sentiment",
        "input": {"description": "Reviews.", "sample": {"batch_transform_text": "great"}},
        "output": {"description": "Scores.", "sample": {"batch_transform_text": "0.9"}},
        "recommended_instance_types": {
            "batch_transform": "ml.m5.large",
            "realtime_inference": "ml.m5.large",
            "training": "ml.m5.xlarge",
        },
        "pricing": {"hourly_price": "1.00"},
    }
    listed.write_text(yaml.safe_dump(document))
    model = large_model(tmp_path_factory.mktemp("models") / "model.tar.gz", 65 * 1024 * 1024)
    recorded: dict[str, set[str]] = defaultdict(set)
    for scenario in SCENARIOS:
        release = {LISTED: listed}.get(str(scenario.get("release")), scenario.get("release", EXAMPLE))
        package = scenario.get("then_package")
        settings = {key: value for key, value in scenario.items() if key not in {"release", "then_package", "queued"}}
        if settings.get("model_data") == LARGE_MODEL:
            settings["model_data"] = model
        options = RunOptions(release=release, **{"validation": "completed", **settings})  # type: ignore[arg-type]
        sandbox = Sandbox(load_release(release), options)
        log_file = tmp_path_factory.mktemp("logs") / "lambda.log"
        with log_file.open("w") as log, redirect_stdout(log), sandbox.running():
            layout = open_layout(image)
            _, delivery = sandbox.seed_and_trigger(layout)
            if package is not None:
                arn = delivery_report(sandbox, delivery, source_digest="")["model_package_arn"]
                sandbox.publish_package_on(arn, load_release(package), package.read_bytes())
            if options.repeat:
                sandbox.redeliver()
            if scenario.get("queued"):  # AWS recovers, and the announcement queue is drained
                wait_until_deferred_announcement_backed_off(sandbox)
                sandbox.api_faults.recover()
                sandbox.poller.wait_idle()
            assert sandbox.stack is not None
            logical = {physical: name for name, physical in sandbox.stack.resources.items()}
        logical[STATE_MACHINE] = STATE_MACHINE  # its service integrations, signed as its role
        for principal, actions in sandbox.audit.actions.items():
            recorded[logical[principal]].update(actions)
    return recorded


def test_given_every_release_path_when_handlers_call_aws_then_their_policies_allow_each_call(
    calls: dict[str, set[str]],
) -> None:
    granted = granted_actions()
    missing = {
        function: sorted(
            action
            for action in actions
            if not any(fnmatch.fnmatchcase(action, pattern) for pattern in granted[function])
        )
        for function, actions in calls.items()
    }

    assert {function: actions for function, actions in missing.items() if actions} == {}


def test_given_every_release_path_then_each_step_function_was_exercised(calls: dict[str, set[str]]) -> None:
    # Guards the check above: a function that made no call was not checked at all.
    silent = {name for name in granted_actions() if name not in calls}
    # The state machine's own calls are checked too: invoking each function, stage events, and
    # SNS for a failure whose announcement could not be built. BuildAnnouncement sends the others,
    # to the announcement queue when SNS and EventBridge are down.
    assert {"lambda:InvokeFunction", "sns:Publish", "events:PutEvents"} <= calls[STATE_MACHINE]
    assert {"sns:Publish", "events:PutEvents", "sqs:SendMessage"} <= calls["BuildAnnouncementFunction"]
    assert {"sns:Publish", "events:PutEvents", "sqs:ChangeMessageVisibility"} <= calls["DeliverAnnouncementFunction"]

    assert silent == set()

"""template.yaml's hardening: encrypted notifications that AWS services can still deliver, TLS-only
buckets, a validation role bounded by the pipeline's key layout, and no execution data in logs.

Read from the template as CloudFormation reads it; the key layout comes from the domain's own
resolve and model package request, so a change of layout that the role does not follow fails here.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.releases import ACCOUNT, published_images, resolved_release

from mlpublish.sagemaker import model_package_request
from sandbox.stack import load_template

pytestmark = pytest.mark.unit

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
KEY_USE = {"kms:GenerateDataKey*", "kms:Decrypt"}
SOURCE_CONDITIONS = {"aws:SourceArn", "aws:SourceAccount", "aws:SourceOrgID"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: resource for name, resource in template["Resources"].items() if resource["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def branches(value: Any) -> list[Any]:
    """Every value ``value`` may take: both sides of each Fn::If, no AWS::NoValue, lists flattened."""
    if isinstance(value, dict) and "Fn::If" in value:
        _, when_true, when_false = value["Fn::If"]
        return branches(when_true) + branches(when_false)
    if isinstance(value, list):
        return [item for element in value for item in branches(element)]
    return [] if value == {"Ref": "AWS::NoValue"} else [value]


def alarm_actions(alarm: dict[str, Any]) -> list[Any]:
    return branches(alarm["Properties"].get("AlarmActions", []))


def condition_keys(statement: dict[str, Any]) -> set[str]:
    return {key for operator in statement.get("Condition", {}).values() for key in operator}


def key_of_topic(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    [topic] = of_type(template, "AWS::SNS::Topic").values()
    key_name, attribute = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"]
    assert attribute == "Arn"
    return key_name, template["Resources"][key_name]


def publishing_services(template: dict[str, Any]) -> set[str]:
    """The AWS services that publish to the topic: EventBridge for rules targeting it, CloudWatch
    for alarms notifying it, and every service principal its topic policy lets publish."""
    [topic_name] = of_type(template, "AWS::SNS::Topic")
    topic = {"Ref": topic_name}
    services = set()
    for rule in of_type(template, "AWS::Events::Rule").values():
        if any(target["Arn"] == topic for target in rule["Properties"].get("Targets", [])):
            services.add("events.amazonaws.com")
    for alarm in of_type(template, "AWS::CloudWatch::Alarm").values():
        if topic in alarm_actions(alarm):
            services.add("cloudwatch.amazonaws.com")
    for policy in of_type(template, "AWS::SNS::TopicPolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow" and "sns:Publish" in as_list(statement["Action"]):
                services.update(as_list(statement["Principal"].get("Service", [])))
    return services


def test_given_the_notification_topic_then_it_is_encrypted_with_a_rotated_key_of_the_stack_not_the_aws_managed_one(
    template: dict[str, Any],
) -> None:
    _, key = key_of_topic(template)

    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True


def test_given_the_topics_key_then_every_service_publishing_to_the_topic_may_use_it(template: dict[str, Any]) -> None:
    _, key = key_of_topic(template)
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    services = publishing_services(template)
    allowed = {
        service
        for statement in statements
        if statement["Effect"] == "Allow" and set(as_list(statement["Action"])) >= KEY_USE
        for service in as_list(statement["Principal"].get("Service", []))
    }

    assert {"events.amazonaws.com", "cloudwatch.amazonaws.com"} <= services
    assert services - allowed == set()


def test_given_the_topics_key_then_eventbridges_use_is_not_conditioned_on_a_source_it_does_not_send(
    template: dict[str, Any],
) -> None:
    # EventBridge passes no aws:SourceArn/SourceAccount to KMS: such a condition drops every delivery.
    _, key = key_of_topic(template)
    [events] = [
        statement
        for statement in key["Properties"]["KeyPolicy"]["Statement"]
        if "events.amazonaws.com" in as_list(statement["Principal"].get("Service", []))
    ]

    assert condition_keys(events) & SOURCE_CONDITIONS == set()


def test_given_the_state_machine_then_its_role_may_use_the_topics_key_through_sns_only(
    template: dict[str, Any],
) -> None:
    key_name, _ = key_of_topic(template)
    [machine] = of_type(template, "AWS::Serverless::StateMachine").values()
    grants = [
        statement
        for policy in machine["Properties"]["Policies"]
        if isinstance(policy, dict) and "Statement" in policy
        for statement in policy["Statement"]
        if statement["Resource"] == {"Fn::GetAtt": [key_name, "Arn"]}
    ]

    assert [set(as_list(statement["Action"])) >= KEY_USE for statement in grants] == [True]
    assert grants[0]["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "sns.${AWS::Region}.amazonaws.com"}}
    }


def test_given_the_queues_eventbridge_delivers_to_then_they_and_their_dead_letter_queues_use_sse_sqs(
    template: dict[str, Any],
) -> None:
    # SSE-SQS needs no key policy; a KMS key on such a queue would drop EventBridge's deliveries.
    queues = of_type(template, "AWS::SQS::Queue")
    fed = {
        target["Arn"]["Fn::GetAtt"][0]
        for rule in of_type(template, "AWS::Events::Rule").values()
        for target in rule["Properties"].get("Targets", [])
        if "Fn::GetAtt" in target["Arn"] and target["Arn"]["Fn::GetAtt"][0] in queues
    }
    dead_letters = {
        queues[name]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for name in fed
        if "RedrivePolicy" in queues[name]["Properties"]
    }

    assert fed != set()
    assert {
        name: (queues[name]["Properties"].get("SqsManagedSseEnabled"), queues[name]["Properties"].get("KmsMasterKeyId"))
        for name in fed | dead_letters
    } == dict.fromkeys(fed | dead_letters, (True, None))


def test_given_each_bucket_of_the_template_then_its_policy_denies_every_request_without_tls(
    template: dict[str, Any],
) -> None:
    policies = {
        policy["Properties"]["Bucket"]["Ref"]: policy["Properties"]["PolicyDocument"]["Statement"]
        for policy in of_type(template, "AWS::S3::BucketPolicy").values()
    }

    for bucket in of_type(template, "AWS::S3::Bucket"):
        assert {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [{"Fn::GetAtt": [bucket, "Arn"]}, {"Fn::Sub": "${" + bucket + ".Arn}/*"}],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        } in [{key: value for key, value in s.items() if key != "Sid"} for s in policies.get(bucket, [])]


# --- the validation role ------------------------------------------------------------------


def validation_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    [policy] = template["Resources"]["ValidationRole"]["Properties"]["Policies"]
    return list(policy["PolicyDocument"]["Statement"])


def derived_arns(resource: Any) -> list[str]:
    """The ARN patterns of a resource for a stack with derived publishing buckets (PublishingBucketName empty)."""
    arns = []
    for item in as_list(resource):
        chosen = item
        if isinstance(item, dict) and "Fn::If" in item:
            condition, chosen, _named = item["Fn::If"]
            assert condition == "DerivePublishingBucket"
        for each in as_list(chosen):
            text = each["Fn::Sub"] if isinstance(each, dict) else each
            arns.append(text.replace("${AWS::AccountId}", ACCOUNT))
    return arns


def s3_grants(template: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in validation_statements(template) if action in as_list(s["Action"])]


def allowed_object(template: dict[str, Any], action: str, uri: str) -> bool:
    arn = "arn:aws:s3:::" + uri.removeprefix("s3://")
    return any(
        fnmatch.fnmatchcase(arn, pattern)
        for grant in s3_grants(template, action)
        for pattern in derived_arns(grant["Resource"])
    )


def sagemaker_uris(template: dict[str, Any]) -> tuple[list[str], str]:
    """The S3 URIs validation reads (model data, validation input) and the prefix it writes to."""
    release = resolved_release()
    request = model_package_request(release, published_images(release))
    profile = request["ValidationSpecification"]["ValidationProfiles"][0]["TransformJobDefinition"]
    reads = [container["ModelDataUrl"] for container in request["InferenceSpecification"]["Containers"]]
    reads.append(profile["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
    return reads, profile["TransformOutput"]["S3OutputPath"]


def test_given_a_release_then_the_validation_role_may_read_what_validation_reads_and_write_its_output(
    template: dict[str, Any],
) -> None:
    reads, output = sagemaker_uris(template)
    [listing] = s3_grants(template, "s3:ListBucket")
    input_key = reads[-1].split("/", 3)[3]  # an S3Prefix input: SageMaker lists it

    assert [uri for uri in reads if not allowed_object(template, "s3:GetObject", uri)] == []
    assert allowed_object(template, "s3:PutObject", output + "part-00000.out")
    # an algorithm's validation transform reads the model its validation training wrote there
    assert allowed_object(template, "s3:GetObject", output + "training/job/output/model.tar.gz")
    assert any(
        fnmatch.fnmatchcase(input_key, prefix) for prefix in as_list(listing["Condition"]["StringLike"]["s3:prefix"])
    )


@pytest.mark.parametrize(
    ("action", "key"),
    [
        ("s3:GetObject", "releases/acme.yaml"),
        ("s3:GetObject", "mlpublish/os-release/v1/0123.json"),
        ("s3:GetObject", "private/data.csv"),
        ("s3:PutObject", "artifacts/acme-sentiment/1.2.0/inference/0/model.tar.gz"),
        ("s3:PutObject", "private/data.csv"),
    ],
)
def test_given_the_validation_role_then_it_reaches_no_object_outside_the_prefix_of_its_use(
    template: dict[str, Any], action: str, key: str
) -> None:
    reads, _ = sagemaker_uris(template)
    bucket = reads[0].removeprefix("s3://").split("/", 1)[0]

    assert not allowed_object(template, action, f"s3://{bucket}/{key}")


def test_given_the_validation_role_then_it_grants_nothing_on_every_resource_without_a_condition(
    template: dict[str, Any],
) -> None:
    # GetAuthorizationToken has no resource of its own; everything else is scoped or conditioned.
    unbounded = [
        s["Action"]
        for s in validation_statements(template)
        if "*" in as_list(s["Resource"]) and "Condition" not in s and s["Action"] != ["ecr:GetAuthorizationToken"]
    ]

    assert unbounded == []


# --- execution logs -----------------------------------------------------------------------


def test_given_the_state_machine_then_it_logs_every_transition_but_not_the_execution_data(
    template: dict[str, Any],
) -> None:
    # A release's state carries its containers' Environment values.
    [machine] = of_type(template, "AWS::Serverless::StateMachine").values()
    logging = machine["Properties"]["Logging"]

    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ALL", False)


# --- the announcements' last resort ---------------------------------------------------------

ASL = Path(__file__).resolve().parents[2] / "statemachine" / "publish.asl.json"


def announcement_queue(template: dict[str, Any]) -> tuple[str, str]:
    """The queue the state machine defers announcements to, and its dead-letter queue."""
    [machine] = of_type(template, "AWS::Serverless::StateMachine").values()
    queue = machine["Properties"]["DefinitionSubstitutions"]["AnnouncementQueueUrl"]["Ref"]
    dead_letter = template["Resources"][queue]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    return queue, dead_letter


def test_given_the_announcement_queue_then_it_and_its_dead_letter_queue_are_sse_sqs_and_keep_messages_14_days(
    template: dict[str, Any],
) -> None:
    queue, dead_letter = announcement_queue(template)
    properties = {name: template["Resources"][name]["Properties"] for name in (queue, dead_letter)}

    assert {name: (p.get("SqsManagedSseEnabled"), p.get("KmsMasterKeyId")) for name, p in properties.items()} == {
        queue: (True, None),
        dead_letter: (True, None),
    }
    assert {p["MessageRetentionPeriod"] for p in properties.values()} == {14 * 24 * 3600}
    assert properties[queue]["RedrivePolicy"]["maxReceiveCount"] >= 50


def test_given_the_announcement_queue_then_alarms_watch_its_dead_letters_and_its_oldest_message_and_are_outputs(
    template: dict[str, Any],
) -> None:
    queue, dead_letter = announcement_queue(template)
    watched = {
        (alarm["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0], alarm["Properties"]["MetricName"]): name
        for name, alarm in of_type(template, "AWS::CloudWatch::Alarm").items()
        if "Dimensions" in alarm["Properties"]
    }
    outputs = {name: output["Value"] for name, output in template["Outputs"].items()}

    dead_letters = watched[(dead_letter, "ApproximateNumberOfMessagesVisible")]
    delayed = watched[(queue, "ApproximateAgeOfOldestMessage")]
    assert template["Resources"][dead_letters]["Properties"]["Threshold"] == 0
    for alarm in (dead_letters, delayed):
        name = template["Resources"][alarm]["Properties"]["AlarmName"]["Fn::Sub"]
        assert any(
            isinstance(value, dict) and str(value.get("Fn::Sub", "")).endswith(f":alarm:{name}")
            for value in outputs.values()
        )
    assert outputs["AnnouncementQueueUrl"] == {"Ref": queue}


def test_given_the_state_machine_then_it_may_send_to_the_announcement_queue_and_no_other(
    template: dict[str, Any],
) -> None:
    queue, _ = announcement_queue(template)
    [machine] = of_type(template, "AWS::Serverless::StateMachine").values()
    sends = [
        statement
        for policy in machine["Properties"]["Policies"]
        if isinstance(policy, dict) and "Statement" in policy
        for statement in policy["Statement"]
        if any(action.startswith("sqs:") for action in as_list(statement["Action"]))
    ]

    assert [(as_list(s["Action"]), s["Resource"]) for s in sends] == [
        (["sqs:SendMessage"], {"Fn::GetAtt": [queue, "Arn"]})
    ]


def test_given_the_deliver_function_then_it_drains_the_announcement_queue_reporting_failed_records_alone(
    template: dict[str, Any],
) -> None:
    queue, _ = announcement_queue(template)
    function = template["Resources"]["DeliverAnnouncementFunction"]["Properties"]
    [event] = function["Events"].values()
    grants = [
        statement
        for policy in function["Policies"]
        if isinstance(policy, dict) and "Statement" in policy
        for statement in policy["Statement"]
    ]

    assert event["Properties"]["Queue"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert template["Resources"][queue]["Properties"]["VisibilityTimeout"] >= 6 * function["Timeout"]
    # Its own grants: the topic's key through SNS only, and the back-off on that queue only.
    assert {s["Sid"]: s["Resource"] for s in grants} == {
        "EncryptNotifications": {"Fn::GetAtt": ["NotificationKey", "Arn"]},
        "BackOff": {"Fn::GetAtt": [queue, "Arn"]},
    }


def test_given_an_announcement_state_then_what_its_channel_does_not_take_goes_to_the_announcement_queue() -> None:
    states = json.loads(ASL.read_text())["States"]
    channels = {
        name: state
        for name, state in states.items()
        if state.get("Resource", "").startswith(("arn:aws:states:::sns:", "arn:aws:states:::events:"))
        # progress, not an announcement: lost in an outage (tests/unit/test_timeline.py)
        and state["Parameters"].get("Entries", [{}])[0].get("DetailType") != "Release Stage Changed"
    }

    assert set(channels) == {"NotifyAnnouncement", "RaiseAnnouncementEvent"}
    for state in channels.values():
        [catch] = state["Catch"]
        deferral = states[catch["Next"]]
        assert catch["ErrorEquals"] == ["States.ALL"]
        assert deferral["Resource"] == "arn:aws:states:::sqs:sendMessage"
        assert deferral["Parameters"]["QueueUrl"] == "${AnnouncementQueueUrl}"


def function_statements(template: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in template["Resources"][name]["Properties"].get("Policies", [])
        if isinstance(policy, dict) and "Statement" in policy
        for statement in policy["Statement"]
    ]


def test_given_any_function_then_it_reads_objects_only_of_buckets_the_stack_names(template: dict[str, Any]) -> None:
    functions = of_type(template, "AWS::Serverless::Function")
    readers = []
    for name in functions:
        for statement in function_statements(template, name):
            if "s3:GetObject" not in as_list(statement["Action"]):
                continue
            readers.append(name)
            resources = json.dumps(statement["Resource"])
            assert "arn:aws:s3:::*" not in resources, f"{name} may read every bucket: {resources}"
            assert '"*"' not in resources, f"{name} may read everything: {resources}"

    assert {"TriggerFunction", "ResolveReleaseFunction", "CopyArtifactsFunction"} <= set(readers)


@pytest.mark.parametrize("name", ["TriggerFunction", "ResolveReleaseFunction"])
def test_given_the_functions_that_read_sources_first_then_their_image_reads_follow_source_repositories(
    template: dict[str, Any], name: str
) -> None:
    image_reads = [
        statement
        for statement in function_statements(template, name)
        if any(action.startswith("ecr:") for action in as_list(statement["Action"]))
    ]

    assert image_reads
    for statement in image_reads:
        assert statement["Resource"]["Fn::If"][0] == "HasSourceRepositories"
        assert statement["Resource"]["Fn::If"][1] == {"Fn::Split": [",", {"Ref": "SourceRepositories"}]}

"""Turn a finished delivery into the sandbox's JSON report (and a readable summary)."""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.exceptions import ClientError

from mlpublish.state import PublishedImage
from sandbox.runner import Delivery, Sandbox


def _history(sandbox: Sandbox, execution_arn: str) -> list[dict[str, Any]]:
    sfn = sandbox.aws("stepfunctions")
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def _outputs(events: list[dict[str, Any]], state_name: str) -> list[Any]:
    """Outputs of every time the named state exited (Map iterations included)."""
    found = []
    for event in events:
        details = event.get("stateExitedEventDetails")
        if details and details.get("name") == state_name and details.get("output"):
            found.append(json.loads(details["output"]))
    return found


def _release_record(sandbox: Sandbox, summary: Any) -> dict[str, Any]:
    """The resolved release ResolveRelease kept in the pipeline bucket, which the state's
    summary names (mlpublish/records.py); empty when there is none."""
    if not isinstance(summary, dict) or "record" not in summary:
        return {}
    bucket, _, key = str(summary["record"]).removeprefix("s3://").partition("/")
    body = sandbox.aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    record: dict[str, Any] = json.loads(body)
    return record


def _largest_state(events: list[dict[str, Any]]) -> int:
    """The largest state input or output, in bytes (Step Functions allows 256 KiB)."""
    sizes = [
        len(details[key].encode())
        for event in events
        for details in (event.get("stateEnteredEventDetails"), event.get("stateExitedEventDetails"))
        if details
        for key in ("input", "output")
        if details.get(key)
    ]
    return max(sizes, default=0)


def _sns_messages(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "subject": item.get("Subject"),
            "message": item.get("Message"),
            "outcome": item.get("MessageAttributes", {}).get("outcome", {}).get("Value"),
            # what a subscription's filter policy matches on (outcome, product, version, kind, region)
            "attributes": {name: value.get("Value") for name, value in item.get("MessageAttributes", {}).items()},
        }
        for item in raw
    ]


#: The states of each wait of the state machine, from its first to the choice that leaves it.
WAITS = {
    "validation": ("PrepareValidation", "AwaitValidation", "ValidationWaitedOut", "ValidationComplete"),
    "package_validation": (
        "PreparePackageValidation",
        "AwaitPackageValidation",
        "PackageValidationWaitedOut",
        "PackageValidationComplete",
    ),
    "listing": ("AwaitListing", "ListingWaitedOut", "ListingComplete"),
}


def delivery_report(sandbox: Sandbox, delivery: Delivery, *, source_digest: str) -> dict[str, Any]:
    notifications = _sns_messages(sandbox.drain("notifications"))
    events = sandbox.drain("events")
    report: dict[str, Any] = {
        "status": delivery.status,
        "execution_arn": delivery.execution_arn,
        "model_package_arn": None,
        "publishing_region": sandbox.publishing_region,
        "source_image_digest": source_digest,
        "published_image_digest": None,
        "published_media_type": None,
        "published_manifest": None,
        "notifications": notifications,
        "events": events,
        "state_transitions": 0,
        "history_events": 0,
        "wait_transitions": {},
        "validation_known_after": {},
        "virtual_seconds": round(delivery.clock_after - delivery.clock_before, 3),
        "failure": None,
        "blobs_copied": 0,
        "blobs_skipped": 0,
        "bytes_copied": 0,
        "model_packages": model_packages(sandbox),
        "algorithms": algorithms(sandbox),
        "deduplicated": False,
        "max_state_bytes": 0,
        "images": [],
        "os": [],
        "stack": stack_report(sandbox),
        "lambda": sandbox.lambdas.stats() if sandbox.lambdas else {},
        "published_objects": [],
        "model_package": None,
        "notices": sandbox.notices(),
        "faults_fired": [f"{fault.kind}:{fault.function}" for fault in sandbox.lambdas.fired]
        if sandbox.lambdas
        else [],
        "api_faults": sandbox.api_faults.report(),
        "validation": {"mode": sandbox.validation_mode, "jobs": []},
    }
    if delivery.deduplicated:
        # No new execution: the trigger found this content already published or in flight.
        report["deduplicated"] = True
        return report
    history = _history(sandbox, delivery.execution_arn)
    report["state_transitions"] = sum(1 for event in history if event["type"].endswith("StateEntered"))
    report["history_events"] = len(history)  # Step Functions ends an execution at 25,000
    entered = [
        event.get("stateEnteredEventDetails", {}).get("name")
        for event in history
        if event["type"].endswith("StateEntered")
    ]
    # The state transitions each wait cost (task-token waits, their fallback looks, the choice after).
    report["wait_transitions"] = {wait: sum(1 for name in entered if name in states) for wait, states in WAITS.items()}
    # Virtual seconds from the end of each validation to the first describe that saw it.
    report["validation_known_after"] = {
        arn: sandbox.sagemaker.known_after(arn) for arn in [*report["model_packages"], *report["algorithms"]]
    }
    report["max_state_bytes"] = _largest_state(history)
    # The resolved release ResolveRelease kept (a caught failure has none): read once.
    resolved = [
        image
        for state in _outputs(history, "ResolveRelease")[-1:]
        for image in _release_record(sandbox, state.get("release")).get("images", [])
    ]
    # How ResolveRelease told each image's OS: layer bytes read (0: remembered for its digest).
    report["os"] = [
        {key: image.get(key) for key in ("container", "os", "os_bytes_read", "os_uncertain", "os_remembered")}
        for image in resolved
    ]
    order = [name for name, *_ in sandbox.spec.images()]
    # PutManifest's compact results, with what the release record knows (the pinned digests).
    pinned = {image["container"]: image["source"]["digest"] for image in resolved}
    images = sorted(
        (
            PublishedImage.model_validate({"source_digest": pinned.get(image["container"]), **image}).model_dump()
            for image in _outputs(history, "PutManifest")
        ),
        key=lambda image: order.index(image["container"]),
    )
    for image in images:
        report["blobs_copied"] += image["blobs_copied"]
        report["blobs_skipped"] += image["blobs_skipped"]
        report["bytes_copied"] += image["bytes_copied"]
    report["images"] = [
        {
            "container": image["container"],
            "source_image_digest": image["source_digest"],  # None: ResolveRelease's record is gone
            "published_image_digest": image["digest"],
            "published_media_type": image["media_type"],
            "conversion": image["conversion"],
        }
        for image in images
    ]
    if images:
        first = images[0]
        report["published_image_digest"] = first["digest"]
        report["published_media_type"] = first["media_type"]
        report["published_manifest"] = published_manifest(sandbox, first["repository"], first["digest"])
    else:
        # The copy failed before a manifest was published: count what the batch copies did.
        # CopyBlob's result is at $.copied of its state; a batch counts once, when done.
        for output in _outputs(history, "CopyBlob"):
            copied = output["copied"]
            if copied["done"]:
                report["blobs_copied"] += copied["blobs_copied"]
                report["blobs_skipped"] += copied["blobs_skipped"]
                report["bytes_copied"] += copied["bytes_copied"]
    # A failed CreateModelPackage exits with the error in place of its result.
    created = [output["resource"]["arn"] for output in _outputs(history, "CreateModelPackage") if "resource" in output]
    if created:
        run = sandbox.sagemaker.local_runs.get(created[-1])
        if run is not None and run.done.is_set():
            report["validation"]["jobs"] = run.jobs
        report["model_package_arn"] = created[-1]
        report["model_package"] = describe_model_package(sandbox, created[-1])
        report["published_objects"] = published_objects(sandbox, report["model_package"])
    failures = [event["detail"] for event in events if event.get("detail-type") == "Release Failed"]
    if failures:
        detail = failures[-1]
        report["failure"] = {key: detail.get(key) for key in ("stage", "error", "reason", "reasons")}
    elif delivery.status != "SUCCEEDED":
        # Ended without its own announcement (on AWS the stack's execution-failure rules
        # report it): show what Step Functions says.
        described = sandbox.aws("stepfunctions").describe_execution(executionArn=delivery.execution_arn)
        report["failure"] = {
            "stage": None,
            "error": described.get("error"),
            "reason": described.get("cause"),
            "reasons": [],
        }
    return report


def stack_report(sandbox: Sandbox) -> dict[str, Any]:
    """Where and how the stack was deployed."""
    stack = sandbox.stack
    if stack is None:
        return {}
    return {
        "name": stack.name,
        "region": stack.region,
        "account": stack.account_id,
        "config_env": sandbox.options.config_env,
        "parameters": dict(sorted(stack.parameters.items())),
    }


def _known_region(region: str) -> bool:
    """A region the emulator has (a release may name one that does not exist, e.g. us-east-3)."""
    return region in boto3.session.Session().get_available_regions("sagemaker")


def model_packages(sandbox: Sandbox) -> list[str]:
    if not _known_region(sandbox.publishing_region):
        return []
    sm = sandbox.aws("sagemaker", sandbox.publishing_region)
    return sorted(item["ModelPackageArn"] for item in sm.list_model_packages()["ModelPackageSummaryList"])


def algorithms(sandbox: Sandbox) -> list[str]:
    if not _known_region(sandbox.publishing_region):
        return []
    sm = sandbox.aws("sagemaker", sandbox.publishing_region)
    return sorted(item["AlgorithmArn"] for item in sm.list_algorithms()["AlgorithmSummaryList"])


def describe_model_package(sandbox: Sandbox, arn: str) -> dict[str, Any] | None:
    """DescribeModelPackage (DescribeAlgorithm) of what the release created, as JSON-ready data."""
    region = arn.split(":")[3]
    sagemaker = sandbox.aws("sagemaker", region)
    try:
        if ":algorithm/" in arn:
            described = sagemaker.describe_algorithm(AlgorithmName=arn)
        else:
            described = sagemaker.describe_model_package(ModelPackageName=arn)
    except ClientError:
        return None
    described.pop("ResponseMetadata", None)
    document: dict[str, Any] = json.loads(json.dumps(described, default=str))
    return document


def published_objects(sandbox: Sandbox, package: dict[str, Any] | None) -> list[dict[str, str]]:
    """Every S3 location the model package references (model data, validation input and
    output), with the region of its bucket."""
    if not package:
        return []
    uris: list[str] = []
    for container in package.get("InferenceSpecification", {}).get("Containers", []):
        if container.get("ModelDataUrl"):
            uris.append(container["ModelDataUrl"])
    for source in (package.get("SourceAlgorithmSpecification") or {}).get("SourceAlgorithms", []):
        if source.get("ModelDataUrl"):
            uris.append(source["ModelDataUrl"])
    for profile in package.get("ValidationSpecification", {}).get("ValidationProfiles", []):
        training = profile.get("TrainingJobDefinition", {})
        for channel in training.get("InputDataConfig", []):
            uris.append(channel.get("DataSource", {}).get("S3DataSource", {}).get("S3Uri", ""))
        if training.get("OutputDataConfig", {}).get("S3OutputPath"):
            uris.append(training["OutputDataConfig"]["S3OutputPath"])
        job = profile.get("TransformJobDefinition", {})
        source = job.get("TransformInput", {}).get("DataSource", {}).get("S3DataSource", {}).get("S3Uri")
        output = job.get("TransformOutput", {}).get("S3OutputPath")
        uris += [uri for uri in (source, output) if uri]
    s3 = sandbox.aws("s3")
    found = []
    for uri in uris:
        bucket = uri.removeprefix("s3://").split("/", 1)[0]
        try:
            region = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
        except ClientError:
            region = "missing"
        found.append({"uri": uri, "region": region})
    return found


def published_manifest(sandbox: Sandbox, repository: str, digest: str) -> Any:
    ecr = sandbox.aws("ecr", sandbox.publishing_region)
    images = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageDigest": digest}])["images"]
    return json.loads(images[0]["imageManifest"]) if images else None

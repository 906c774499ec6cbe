"""The sandbox's SageMaker runs a model package's or an algorithm's validation on what was published.

``PublishedValidator`` is the ``local`` validator of :class:`sandbox.ext_sagemaker.
SageMakerValidation`: given the package moto stores, it reads each container's image from
the sandbox's ECR in the package's region (the manifest moto holds, the blobs the ECR
extension stored), the model artifacts and validation input from its S3, and runs the
validation profile's transform job with :mod:`sandbox.validation_local`. Given an algorithm,
it runs each profile's training job on the training image with the channels' data from S3,
then the transform job on the inference containers serving the model that training wrote
(to the profile's S3OutputPath, as SageMaker writes it). Nothing is read from the seller's
files: what is validated is what the pipeline published.

SageMaker does not document how it names the training jobs of an algorithm's validation:
the sandbox names each ``<algorithm>-<profile>`` (cut to 63 characters), which places the
trained model at ``S3OutputPath/<that name>/output/model.tar.gz``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from typing import IO, Any

from moto.ecr.models import ecr_backends
from moto.s3.models import s3_backends

from mlpublish.release import parse_s3_uri
from sandbox.ext_ecr import EcrExtension
from sandbox.ext_sagemaker import Algorithm, LocalRun
from sandbox.validation_local import (
    Cancelled,
    ContainerUnderTest,
    Deadlines,
    JobResult,
    LayoutImage,
    TrainingJob,
    TransformJob,
    Unsupported,
    run_algorithm_profile,
    run_transform_job,
)

_ARN = re.compile(r"arn:aws[a-z-]*:sagemaker:([a-z0-9-]+):(\d{12}):")
_IMAGE = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^@:]+)(?::[^@]+)?(?:@(sha256:[0-9a-f]{64}))?$")


class MotoS3Storage:
    """S3 of one account in the sandbox, read and written as the validation role would."""

    def __init__(self, account: str) -> None:
        self.backend = s3_backends[account]["aws"]

    def read(self, uri: str) -> bytes:
        bucket, key = parse_s3_uri(uri)
        found = self.backend.get_object(bucket, key)
        if found is None:
            raise KeyError(f"{uri}: no such object")
        return bytes(found.value)

    def list(self, uri_prefix: str) -> list[str]:
        bucket, prefix = parse_s3_uri(uri_prefix)
        keys = self.backend.get_bucket(bucket).keys
        return [f"s3://{bucket}/{key}" for key in sorted(keys.keys()) if key.startswith(prefix)]

    def write(self, uri: str, body: bytes) -> None:
        bucket, key = parse_s3_uri(uri)
        self.backend.put_object(bucket, key, body)


class PublishedValidator:
    """Runs a created package's validation profiles on its published images."""

    def __init__(self, ecr: EcrExtension, deadlines: Deadlines, stopping: threading.Event | None = None) -> None:
        self.ecr, self.deadlines = ecr, deadlines
        self.stopping = stopping or threading.Event()

    def __call__(self, package: Any) -> LocalRun:
        if isinstance(package, Algorithm):
            return self._algorithm(package)
        run = LocalRun(str(package.arn))
        match = _ARN.match(str(package.arn))
        if match is None:
            run.not_run = f"unexpected model package ARN {package.arn}"
            return run
        account = match.group(2)
        containers = [
            self._container(index, definition)
            for index, definition in enumerate((package.inference_specification or {}).get("Containers") or [])
        ]
        storage = MotoS3Storage(account)
        for profile in (package.validation_specification or {}).get("ValidationProfiles") or []:
            job = TransformJob(profile["ProfileName"], profile["TransformJobDefinition"])
            try:
                result = run_transform_job(job, containers, storage, self.deadlines, cancel=self.stopping)
            except Unsupported as exc:
                run.not_run = f"container not run: {exc}"
                return run
            except Cancelled as exc:
                run.not_run = str(exc)
                return run
            run.jobs.append(result.as_dict())
            if result.failure_reason is not None:
                run.failures[job.profile_name] = result.failure_reason
        return run

    def _algorithm(self, algorithm: Algorithm) -> LocalRun:
        """Each profile's training job, then its transform job on the model it trained."""
        run = LocalRun(algorithm.arn)
        match = _ARN.match(algorithm.arn)
        if match is None:
            run.not_run = f"unexpected algorithm ARN {algorithm.arn}"
            return run
        request = algorithm.request
        training = request["TrainingSpecification"]
        trainer = self._container(
            0, {"Image": training["TrainingImage"], "ImageDigest": training.get("TrainingImageDigest")}
        )
        inference = [
            self._container(index, definition)
            for index, definition in enumerate((request.get("InferenceSpecification") or {}).get("Containers") or [])
        ]
        storage = MotoS3Storage(match.group(2))
        for profile in (request.get("ValidationSpecification") or {}).get("ValidationProfiles") or []:
            name = profile["ProfileName"]
            job_name = re.sub(r"[^a-zA-Z0-9]+", "-", f"{algorithm.name}-{name}")[:63].strip("-")
            transform = profile.get("TransformJobDefinition")
            try:
                results = run_algorithm_profile(
                    TrainingJob(name, job_name, profile["TrainingJobDefinition"]),
                    trainer,
                    TransformJob(name, transform) if transform else None,
                    inference,
                    storage,
                    self.deadlines,
                    cancel=self.stopping,
                )
            except Unsupported as exc:
                run.not_run = f"container not run: {exc}"
                return run
            except Cancelled as exc:
                run.not_run = str(exc)
                return run
            run.jobs += [result.as_dict() for result in results]
            failed = next((result for result in results if not result.passed), None)
            if failed is not None:
                run.failures[name] = _profile_failure(failed)
        return run

    def _container(self, index: int, definition: Mapping[str, Any]) -> ContainerUnderTest:
        uri = str(definition["Image"])
        match = _IMAGE.match(uri)
        if match is None:
            raise Unsupported(f"image {uri} is not in an ECR registry of the sandbox")
        account, region, repository, digest = match.groups()
        digest = digest or definition.get("ImageDigest")
        image = next(
            (
                item
                for item in ecr_backends[account][region].repositories[repository].images
                if item.image_digest == digest
            ),
            None,
        )
        if image is None:
            raise Unsupported(f"image {uri} is not in the sandbox's ECR")
        manifest = json.loads(image.image_manifest)
        if "layers" not in manifest:
            raise Unsupported(f"image {uri} is an index; the pipeline publishes single-platform images")

        def open_blob(blob_digest: str) -> IO[bytes]:
            return self.ecr.blob_path(blob_digest).open("rb")

        name = str(definition.get("ContainerHostname") or repository.rsplit("/", 1)[-1])
        name = name if index == 0 else f"{name}-{index + 1}"
        return ContainerUnderTest(
            name=name,
            image_uri=uri,
            image=LayoutImage(manifest, open_blob),
            environment=dict(definition.get("Environment") or {}),
            model_data_url=definition.get("ModelDataUrl"),
        )


def _profile_failure(result: JobResult) -> str:
    """The profile's FailureReason: a failed training job's prefixed as the sandbox's virtual
    outcome words it; a transform job's reason already names its job."""
    assert result.failure_reason is not None  # nosec B101  # a failed job has a reason
    if result.job == "training":
        return f"Training job validation failed: {result.failure_reason}"
    return result.failure_reason

"""Named errors of the pipeline.

The state machine retries and catches by class name (Lambda reports ``errorType`` as the
exception's class name), so these names are part of the contract with
``statemachine/publish.asl.json``. Every message says what is wrong, where, and what to do.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: a failure the pipeline announces with its stage and reason."""

    def __init__(self, message: str, *, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reasons = list(reasons or [])

    def __str__(self) -> str:
        if not self.reasons:
            return self.message
        return self.message + "\n" + "\n".join(f"- {reason}" for reason in self.reasons)


class RecordRefused(PipelineError):
    """A trigger record that can never start anything (malformed, or its file is gone): logged
    with why and dropped, since retrying it would only fill the dead-letter queue."""


class InvalidRelease(PipelineError):
    """The release specification is invalid (field path + reason in ``reasons``)."""


class ReleaseNotFound(PipelineError):
    """The release file or one of the images/objects it names does not exist."""


class PreflightFailed(PipelineError):
    """A Marketplace rule is broken; publishing would fail later, so stop now."""


class UnsupportedImage(PipelineError):
    """The image cannot be published as a single-platform Docker v2 schema 2 manifest."""


class BlobDigestMismatch(PipelineError):
    """A blob's bytes do not hash to its digest: the source served corrupt data."""


class ImageCopyFailed(PipelineError):
    """The registry refused a blob or manifest during the copy."""


class ArtifactCopyFailed(PipelineError):
    """A model artifact or validation object could not be copied."""


class SourceChanged(PipelineError):
    """A pinned source (image digest or object ETag) changed while the release ran."""


class ImageScanBlocked(PipelineError):
    """ECR image scanning found Critical/High vulnerabilities or could not scan the image."""


class ResourceConflict(PipelineError):
    """A SageMaker resource with the release's name exists with other content."""


class ResourceRejected(PipelineError):
    """SageMaker refused to create the resource (invalid request, quota, permissions)."""


class ValidationFailed(PipelineError):
    """SageMaker validation or image scanning of the model package failed."""


class ValidationTimedOut(PipelineError):
    """SageMaker validation did not finish within the release's time limit."""


class ListingFailed(PipelineError):
    """AWS Marketplace did not add the version: the change set failed (every error listed)."""


class ReleaseRecordUnusable(PipelineError):
    """The resolved release a step needs (mlpublish/records.py) is gone or was changed."""


class TransientAwsError(PipelineError):
    """Throttling or a 5xx from AWS after the SDK's own retries; the state machine retries."""


class AnnouncementNotDelivered(PipelineError):
    """SNS or EventBridge did not take a deferred announcement; the announcement queue keeps it
    and delivers it again later."""

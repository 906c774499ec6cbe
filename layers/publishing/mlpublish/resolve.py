"""Resolve a release: load the spec, pin every source, check the rules, name what is made.

Pinning (image tag -> digest, object -> ETag) happens once, here. Later steps use only the
pinned values, so a tag pushed again or an object overwritten mid-release cannot mix two
versions into one model package. The fingerprint of the pins names the execution and the
model package, which makes a repeated trigger for the same content a no-op.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from mlpublish import preflight
from mlpublish.aws import error_code, transient_errors
from mlpublish.errors import ImageScanBlocked, InvalidRelease, PreflightFailed, ReleaseNotFound, SourceChanged
from mlpublish.images.copy import RegistryFactory, _resolve, check_publishable, copy_target
from mlpublish.images.manifests import blobs_of, layers_of, parse_manifest
from mlpublish.images.osinfo import ImagePlatform, OsReleaseUnresolved, read_platform
from mlpublish.images.osrecords import OsRecords
from mlpublish.objects import publishing_bucket
from mlpublish.release import ImageRef, ReleaseSpec, canonical_json, parse_release, parse_s3_uri, validate_release
from mlpublish.settings import PublishingConfig
from mlpublish.state import DOCKER_V2_MANIFEST, BlobRef, PinnedImage, PinnedObject, PinSet, Release, StartInput


def load_spec(s3: Any, release_uri: str) -> ReleaseSpec:
    bucket, key = parse_s3_uri(release_uri)
    try:
        with transient_errors(f"reading {release_uri}"):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in {"NoSuchKey", "NoSuchBucket", "404", "AccessDenied"}:
            raise ReleaseNotFound(
                f"release file {release_uri} cannot be read ({error_code(exc)}); upload it or fix the URI"
            ) from exc
        raise
    return parse_release(body, source=release_uri)


def spec_of(start: StartInput, s3: Any) -> ReleaseSpec:
    if start.release_uri is not None:
        return load_spec(s3, start.release_uri)
    return parse_release_document(start.release or {})


def parse_release_document(document: dict[str, Any]) -> ReleaseSpec:
    # Validated as it is: a round trip through json.dumps and YAML broke non-BMP characters
    # (json escapes them as surrogate pairs, which PyYAML does not join).
    return validate_release(document, source="the inline release")


def release_objects(spec: ReleaseSpec) -> list[tuple[str, str | None, str]]:
    """(role, container or channel, s3 uri) of every object the release needs in the publishing region."""
    return [(role, name, uri) for role, name, _, uri in spec.objects()]


def pin_image(ecr: Any, ref: ImageRef, *, where: str) -> str:
    """The digest the image reference points to now."""
    image_id = {"imageDigest": ref.digest} if ref.digest else {"imageTag": ref.reference}
    try:
        with transient_errors(f"describing {where}"):
            found = ecr.describe_images(registryId=ref.registry_id, repositoryName=ref.repository, imageIds=[image_id])[
                "imageDetails"
            ]
    except ClientError as exc:
        if error_code(exc) in {"ImageNotFoundException", "RepositoryNotFoundException"}:
            raise ReleaseNotFound(
                f"{where}: image {ref.repository}:{ref.reference} is not in ECR {ref.region} "
                f"({error_code(exc)}); push it or fix the image URI"
            ) from exc
        raise
    if not found:
        raise ReleaseNotFound(f"{where}: image {ref.repository}:{ref.reference} is not in ECR {ref.region}")
    return str(found[0]["imageDigest"])


def pin_object(s3: Any, uri: str, *, where: str) -> tuple[str, int]:
    bucket, key = parse_s3_uri(uri)
    try:
        with transient_errors(f"reading {uri}"):
            head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = error_code(exc)
        if code in {"404", "NoSuchKey", "NoSuchBucket", "403", "AccessDenied"}:
            # S3 answers 403 for a missing object to a caller that may not list the bucket, and
            # for any object of another account's bucket whose policy does not grant the read.
            denied = (
                "; in a bucket of another account, its bucket policy must grant the stack's account s3:GetObject"
                if code in {"403", "AccessDenied"}
                else ""
            )
            raise ReleaseNotFound(f"{where}: {uri} cannot be read ({code}); upload it or fix the URI{denied}") from exc
        raise
    return str(head["ETag"]).strip('"'), int(head["ContentLength"])


def pin(spec: ReleaseSpec, *, ecr_for: Any, s3: Any, known: PinSet | None = None) -> PinSet:
    """Pin every image and object; pins already known (from the trigger) are kept."""
    known = known or PinSet()
    images = dict(known.images)
    for name, where, _, ref in spec.images():
        if name not in images:
            images[name] = pin_image(ecr_for(ref.region), ref, where=where)
    etags, sizes = dict(known.etags), dict(known.sizes)
    for _, _, where, uri in spec.objects():
        if uri not in etags or uri not in sizes:
            etags[uri], sizes[uri] = pin_object(s3, uri, where=where)
    return PinSet(images=images, etags=etags, sizes=sizes)


def fingerprint(spec: ReleaseSpec, pins: PinSet, publishing_region: str) -> str:
    digest = hashlib.sha256()
    digest.update(canonical_json(spec).encode())
    digest.update(publishing_region.encode())
    for name in sorted(pins.images):
        digest.update(f"\0{name}={pins.images[name]}".encode())
    for uri in sorted(pins.etags):
        digest.update(f"\0{uri}={pins.etags[uri]}".encode())
    return digest.hexdigest()


def resource_name(spec: ReleaseSpec, fingerprint_hex: str) -> str:
    """``<product>-<version>-<fp8>``: valid as a SageMaker EntityName (1-63, [a-zA-Z0-9-])."""
    base = re.sub(r"[^a-zA-Z0-9]+", "-", f"{spec.product.name}-{spec.product.version}").strip("-")
    return f"{base[:54].rstrip('-')}-{fingerprint_hex[:8]}"


def execution_name(spec: ReleaseSpec, fingerprint_hex: str, attempt: int = 1) -> str:
    """Step Functions execution names: 1-80 of [0-9A-Za-z_-]; deterministic per content."""
    base = re.sub(r"[^a-zA-Z0-9]+", "-", f"{spec.product.name}-{spec.product.version}").strip("-")
    name = f"{base[:60].rstrip('-')}-{fingerprint_hex[:12]}"
    return name if attempt == 1 else f"{name}-r{attempt}"


def resolve(
    start: StartInput,
    *,
    spec: ReleaseSpec,
    pins: PinSet,
    account_id: str,
    source_region: str,
    publishing: PublishingConfig,
    validation_role_arn: str,
) -> Release:
    """Build the pinned Release after checking every Marketplace rule.

    The release publishes in its own publishing_region (the stack's PublishingRegion when it
    names none), and everything it copies goes to that region's publishing bucket.
    """
    publishing_region = spec.publishing_region or publishing.default_region
    preflight.check_release(
        spec,
        account_id=account_id,
        publishing_region=publishing_region,
        publishing=publishing,
        object_sizes=pins.sizes,
    )
    destination_bucket = publishing_bucket(publishing, account_id=account_id, region=publishing_region)
    fp = fingerprint(spec, pins, publishing_region)
    name = resource_name(spec, fp)
    images = [
        PinnedImage(
            container=name,
            source=ref.model_copy(update={"digest": pins.images[name]}),
            platform=platform,
            destination_repository=ref.repository,
        )
        for name, _, platform, ref in spec.images()
    ]
    objects = []
    for role, container, uri in release_objects(spec):
        bucket, key = parse_s3_uri(uri)
        etag = pins.etags[uri]
        filename = key.rsplit("/", 1)[-1]
        scopes = {
            "model_data": container or "source-algorithm",
            "package_model_data": "package",
            "validation_input": "validation",
        }
        scope = scopes.get(role) or f"training/{container}"
        objects.append(
            PinnedObject(
                role=role,
                container=container,
                source_bucket=bucket,
                source_key=key,
                etag=etag,
                size=pins.sizes[uri],
                destination_bucket=destination_bucket,
                # Content-addressed by ETag: a new upload never overwrites what an existing
                # model package points to.
                destination_key=(
                    f"artifacts/{spec.product.name}/{spec.product.version}/{scope}/"
                    f"{etag.replace('-', '_')[:32]}/{filename}"
                ),
            )
        )
    release = Release(
        spec=spec,
        release_uri=start.release_uri,
        trigger=start.trigger,
        fingerprint=fp,
        resource_name=name,
        account_id=account_id,
        source_region=source_region,
        publishing_region=publishing_region,
        publishing_bucket=destination_bucket,
        validation_role_arn=validation_role_arn,
        validation_output_uri=f"s3://{destination_bucket}/validation-output/{name}/",
        images=images,
        objects=objects,
    )
    preflight.check_state_size(release)
    return release


def resolve_release(
    start: StartInput,
    *,
    s3: Any,
    ecr_for: Callable[[str], Any],
    registry_for: RegistryFactory,
    account_id: str,
    source_region: str,
    publishing: PublishingConfig,
    validation_role_arn: str,
    os_records: OsRecords | None = None,
    sagemaker_for: Callable[[str], Any] | None = None,
) -> Release:
    """ResolveRelease: load the spec, pin its sources, check every rule and every image.

    A model package built from an algorithm is checked against the algorithm itself
    (``sagemaker_for`` gives the SageMaker client of a region): it must exist, be validated and
    certified, and validate on one of its transform instance types.

    Each image's OS, read from its layers (or, with ``os_records``, as recorded for its digest
    by an earlier read), is put on the release for the announcement, with the bytes read.
    ``ecr_for`` and ``registry_for`` give the ECR client and image registry of a region.
    """
    spec = spec_of(start, s3)
    preflight.check_sources(spec, account_id=account_id, sources=publishing.sources)  # before any read
    pins = pin(spec, ecr_for=ecr_for, s3=s3, known=start.pins)
    release = resolve(
        start,
        spec=spec,
        pins=pins,
        account_id=account_id,
        source_region=source_region,
        publishing=publishing,
        validation_role_arn=validation_role_arn,
    )
    if spec.source_algorithm is not None:
        if sagemaker_for is None:
            raise TypeError("resolving a model package built from an algorithm needs sagemaker_for")
        preflight.check_source_algorithm(spec, sagemaker_for(release.publishing_region))
    layers = check_sources(release, s3=s3, registry_for=registry_for)
    try:
        found = check_publishable(release.images, release.publishing_region, registry_for, os_records)
    except OsReleaseUnresolved as exc:
        raise ImageScanBlocked(
            f"ECR cannot tell the OS of {', '.join(_image_names(release, layers, exc.layers))}, so it cannot scan "
            "it, and AWS Marketplace rejects images it cannot scan (UnscannableImage); nothing was copied:",
            reasons=[exc.problem],
        ) from exc
    images = [
        image.model_copy(
            update={
                "os": detection.os.name if detection.os is not None else None,
                "os_bytes_read": detection.bytes_read,
                "os_uncertain": detection.unknown,
                "os_remembered": detection.remembered,
            }
        )
        for image, detection in ((image, found[image.container]) for image in release.images)
    ]
    return release.model_copy(update={"images": images})


def check_sources(release: Release, *, s3: Any, registry_for: RegistryFactory) -> dict[str, tuple[str, ...]]:
    """Preflight on what the pinned sources hold, before anything is copied: each image's config
    declares a platform validation runs, its layers fit ECR and its copy the state's budget, each
    model artifact starts as a gzip-compressed tar.

    Raises PreflightFailed listing every problem; returns each container's layer digests.
    """
    spec = release.spec
    problems: list[str] = []
    layers: dict[str, tuple[str, ...]] = {}
    seen: dict[tuple[str, str | None, str, str | None], tuple[tuple[str, ...], list[str]]] = {}
    fields = {name: field for name, field, _, _ in spec.images()}
    for image in release.images:
        source = image.source
        key = (source.region, source.registry_id, source.repository, source.digest)
        if key not in seen:
            image_layers, config, platform = _read_image(image, release.publishing_region, registry_for)
            name = f"{source.host}/{source.repository}@{source.digest}"
            field = fields[image.container]
            blobs = [config, *{layer.digest: layer for layer in image_layers}.values()]
            found = [
                preflight.image_platform_problem(spec, field, name, config.digest, platform),
                *preflight.layer_size_problems(field, name, image_layers),
                preflight.image_state_problem(field, name, image, release.publishing_region, blobs),
            ]
            seen[key] = (tuple(layer.digest for layer in image_layers), [problem for problem in found if problem])
        layers[image.container], image_problems = seen[key]
        problems += image_problems
    index_of = {container.name: index for index, container in enumerate(spec.containers)}
    read: set[str] = set()
    for item in release.objects:
        if item.role != "model_data" or item.source_uri in read:
            continue
        read.add(item.source_uri)
        head = _first_bytes(s3, item, preflight.MODEL_DATA_PEEK)
        field = f"containers.{index_of[item.container]}.model_data" if item.container else "source_algorithm.model_data"
        problem = preflight.model_data_problem(field, item.source_uri, head, item.size)
        if problem is not None:
            problems.append(problem)
    if problems:
        raise PreflightFailed(
            f"release {spec.product.name} {spec.product.version} has {len(problems)} source(s) the pipeline cannot "
            "copy or SageMaker cannot validate; nothing was copied. Fix them and start the release again:",
            reasons=problems,
        )
    return layers


def _read_image(
    image: PinnedImage, publishing_region: str, registry_for: RegistryFactory
) -> tuple[list[BlobRef], BlobRef, ImagePlatform]:
    """The layers of the manifest the copy will publish (with their sizes), its config and platform."""
    source = image.source
    registry = registry_for(source.region)
    # The copy's own resolution (pinned digest, platform from an index, Docker v2), so that
    # what is checked is exactly what is published.
    published = _resolve(copy_target(image, publishing_region), registry).published
    manifest = parse_manifest(published.raw, DOCKER_V2_MANIFEST)
    config = blobs_of(manifest)[0]
    platform = read_platform(config, partial(registry.open_blob, source.repository, registry_id=source.registry_id))
    return layers_of(manifest), config, platform


def _first_bytes(s3: Any, item: PinnedObject, count: int) -> bytes:
    """The first ``count`` bytes of the pinned object (a ranged GetObject), or all of a smaller one."""
    if item.size == 0:
        return b""
    try:
        with transient_errors(f"reading {item.source_uri}"):
            response = s3.get_object(
                Bucket=item.source_bucket, Key=item.source_key, Range=f"bytes=0-{count - 1}", IfMatch=f'"{item.etag}"'
            )
            return bytes(response["Body"].read(count))
    except ClientError as exc:
        if error_code(exc) in {"PreconditionFailed", "412"}:
            raise SourceChanged(
                f"{item.source_uri} was overwritten after the release pinned it (ETag {item.etag}); "
                "start the release again to publish the new upload"
            ) from exc
        if error_code(exc) in {"NoSuchKey", "NoSuchBucket", "404", "403", "AccessDenied"}:
            raise ReleaseNotFound(
                f"{item.source_uri} cannot be read ({error_code(exc)}); upload it or fix the URI"
            ) from exc
        raise


def _image_names(release: Release, layers: dict[str, tuple[str, ...]], unresolved: tuple[str, ...]) -> list[str]:
    """The containers whose image has the layers os-release could not be resolved in."""
    return [
        f"container {image.container} ({image.source.host}/{image.source.repository}@{image.source.digest})"
        for image in release.images
        if layers.get(image.container) == unresolved
    ] or ["an image"]


def parse_start(event: dict[str, Any]) -> StartInput:
    try:
        return StartInput.model_validate(event)
    except ValidationError as exc:
        reasons = [f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors()]
        raise InvalidRelease(
            'execution input is invalid; start with {"release_uri": "s3://BUCKET/releases/FILE.yaml"}',
            reasons=reasons,
        ) from exc

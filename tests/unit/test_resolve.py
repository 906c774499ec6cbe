"""Resolving a release: the fingerprint, the names derived from it, pinned objects, the execution input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import string
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.fixtures.images import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    Layer,
    base_layer,
    big_layer,
    canonical,
    digest_of,
    gzipped,
    image_config,
    make_tar,
    scratch_layer,
)
from tests.fixtures.moto_world import DOCKER_MANIFEST, manifest
from tests.fixtures.releases import (
    ACCOUNT,
    ARTIFACT_BUCKET,
    EXAMPLE,
    INPUT_KEY,
    MODEL_KEY,
    PUBLISHING_REGION,
    SOURCE_REGION,
    release_document,
    release_spec,
)

from mlpublish.errors import (
    BlobDigestMismatch,
    ImageScanBlocked,
    InvalidRelease,
    PreflightFailed,
    ReleaseNotFound,
    SourceChanged,
    TransientAwsError,
)
from mlpublish.images.osrecords import OsRecords
from mlpublish.images.registry import FetchedManifest
from mlpublish.objects import publishing_bucket
from mlpublish.preflight import PUBLISHING_REGIONS, STATE_BUDGET
from mlpublish.release import Product, ReleaseSpec, canonical_json, parse_release
from mlpublish.resolve import (
    execution_name,
    fingerprint,
    parse_release_document,
    parse_start,
    pin,
    resolve,
    resolve_release,
    resource_name,
)
from mlpublish.settings import PublishingConfig
from mlpublish.state import PinSet, StartInput, Trigger

pytestmark = pytest.mark.unit

ENTITY_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
EXECUTION_NAME = re.compile(r"^[0-9A-Za-z_-]{1,80}$")
MODEL_URI = f"s3://{ARTIFACT_BUCKET}/{MODEL_KEY}"
INPUT_URI = f"s3://{ARTIFACT_BUCKET}/{INPUT_KEY}"
DIGEST = "sha256:" + "1" * 64
MODEL_ETAG = "0f343b0931126a20f133d67c2b018a3b"
INPUT_ETAG = "9e107d9d372bb6826bd81d3542a419d6"
PUBLISHING_BUCKET = f"mlpublish-{ACCOUNT}-{PUBLISHING_REGION}"
SELLERS_BUCKET = "acme-marketplace-artifacts"
DEFAULT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlpublish-validation"


def stack(default_region: str = "us-east-1", bucket_name: str = "") -> PublishingConfig:
    """A stack deployed with these PublishingRegion and PublishingBucketName, allowing every region."""
    return PublishingConfig(
        default_region=default_region, allowed_regions=tuple(sorted(PUBLISHING_REGIONS)), bucket_name=bucket_name
    )


def pins(**changes: Any) -> PinSet:
    values: dict[str, Any] = {
        "images": {"inference": DIGEST},
        "etags": {MODEL_URI: MODEL_ETAG, INPUT_URI: INPUT_ETAG},
        "sizes": {MODEL_URI: 50_000, INPUT_URI: 1_000},
    }
    values.update(changes)
    return PinSet(**values)


def resolved(spec: ReleaseSpec | None = None, pinset: PinSet | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
    arguments: dict[str, Any] = {
        "account_id": ACCOUNT,
        "source_region": SOURCE_REGION,
        "publishing": stack(),
        "validation_role_arn": DEFAULT_ROLE,
    }
    arguments.update(kwargs)
    start = StartInput(release_uri="s3://pipeline/releases/acme.yaml", trigger=Trigger(kind="manual"))
    return resolve(start, spec=spec or release_spec(), pins=pinset or pins(), **arguments)


def spec_for(name: str, version: str) -> ReleaseSpec:
    spec = release_spec()
    return spec.model_copy(update={"product": Product(name=name, version=version)})


# --- fingerprint ----------------------------------------------------------------------


def test_given_the_same_content_twice_then_the_fingerprint_is_the_same() -> None:
    document = release_document()
    reordered = {key: document[key] for key in reversed(list(document))}

    first = fingerprint(release_spec(document), pins(), PUBLISHING_REGION)
    second = fingerprint(release_spec(reordered), pins(), PUBLISHING_REGION)

    assert first == second
    assert re.fullmatch(r"[0-9a-f]{64}", first)


def test_given_a_release_written_before_algorithms_then_its_canonical_form_and_fingerprint_are_unchanged() -> None:
    # The canonical form of events/release.example.yaml as the pipeline computed it before
    # algorithm products existed (commit a19653f): an upgrade must not rename what a release
    # already published (its execution and model package are named after the fingerprint).
    spec = parse_release(EXAMPLE.read_text())

    canonical = canonical_json(spec)

    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "a61fcbecaef80622f65acf9ba4cf024dd98af96729d6de0de052b11b601b53e0"
    )
    assert "training" not in json.loads(canonical)


def _description_changed() -> ReleaseSpec:
    document = release_document()
    document["product"]["description"] = "Another description"
    return release_spec(document)


OTHER_DIGEST = "sha256:" + "2" * 64
OTHER_ETAG = "2" * 32


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda: (release_spec(), pins(images={"inference": OTHER_DIGEST}), PUBLISHING_REGION), id="image"),
        pytest.param(
            lambda: (release_spec(), pins(etags={MODEL_URI: OTHER_ETAG, INPUT_URI: INPUT_ETAG}), PUBLISHING_REGION),
            id="model-etag",
        ),
        pytest.param(
            lambda: (release_spec(), pins(etags={MODEL_URI: MODEL_ETAG, INPUT_URI: OTHER_ETAG}), PUBLISHING_REGION),
            id="input-etag",
        ),
        pytest.param(lambda: (_description_changed(), pins(), PUBLISHING_REGION), id="spec"),
        pytest.param(lambda: (release_spec(), pins(), "eu-west-1"), id="publishing-region"),
    ],
)
def test_given_one_pinned_value_changes_then_the_fingerprint_changes(change: Any) -> None:
    base = fingerprint(release_spec(), pins(), PUBLISHING_REGION)

    assert fingerprint(*change()) != base


def test_given_only_a_size_differs_then_the_fingerprint_is_the_same_because_the_etag_names_the_content() -> None:
    other_sizes = pins(sizes={MODEL_URI: 1, INPUT_URI: 2})

    assert fingerprint(release_spec(), other_sizes, PUBLISHING_REGION) == fingerprint(
        release_spec(), pins(), PUBLISHING_REGION
    )


# --- names ----------------------------------------------------------------------------

EDGE_PRODUCTS = [
    ("a", "1"),
    ("0", "Z"),
    ("acme-sentiment", "1.2.0"),
    ("a" * 40, "v" * 32),
    ("a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q-r-s-t", "1-2-3-4-5-6-7-8-9-10-11-12-13-1"),
    ("x" * 39 + "9", "1..2__3--4"),
    ("a" * 40, "123456789012.x"),  # the resource name's cut lands on a separator
    ("a" * 40, "1" * 18 + ".x"),  # the execution name's cut lands on a separator
    ("m" * 27, "V" + "." * 31),
]


def random_products(count: int, seed: int = 20240611) -> list[tuple[str, str]]:
    """Product names and versions as the release spec allows them, many of them long or odd."""
    rng = random.Random(seed)
    slug = string.ascii_lowercase + string.digits
    version_chars = string.ascii_letters + string.digits + "._-"
    products = []
    for _ in range(count):
        length = rng.choice([1, 2, rng.randint(3, 40), 40])
        middle = "".join(rng.choice(slug + "-" * 8) for _ in range(max(length - 2, 0)))
        name = (rng.choice(slug) + middle + rng.choice(slug))[:length] if length > 1 else rng.choice(slug)
        version_length = rng.choice([1, rng.randint(2, 32), 32])
        version = rng.choice(string.ascii_letters + string.digits) + "".join(
            rng.choice(version_chars) for _ in range(version_length - 1)
        )
        products.append((name, version))
    return products


@pytest.mark.parametrize(("name", "version"), EDGE_PRODUCTS + random_products(200))
def test_given_any_valid_product_name_and_version_then_the_resource_name_is_a_sagemaker_entity_name(
    name: str, version: str
) -> None:
    spec = spec_for(name, version)
    fp = fingerprint(spec, pins(), PUBLISHING_REGION)

    resource = resource_name(spec, fp)

    assert len(resource) <= 63
    assert ENTITY_NAME.match(resource), resource
    assert resource.endswith("-" + fp[:8])


@pytest.mark.parametrize(("name", "version"), EDGE_PRODUCTS + random_products(60, seed=7))
@pytest.mark.parametrize("attempt", [1, 2, 50])
def test_given_any_valid_product_then_the_execution_name_is_a_valid_step_functions_name(
    name: str, version: str, attempt: int
) -> None:
    spec = spec_for(name, version)
    fp = fingerprint(spec, pins(), PUBLISHING_REGION)

    name_ = execution_name(spec, fp, attempt)

    assert EXECUTION_NAME.match(name_), name_
    assert (name_.endswith(f"-r{attempt}")) == (attempt > 1)


def test_given_two_long_versions_sharing_a_prefix_then_their_names_still_differ() -> None:
    first = spec_for("a" * 40, "1.0.0-" + "x" * 20 + "-alpha")
    second = spec_for("a" * 40, "1.0.0-" + "x" * 20 + "-beta")
    fp_first = fingerprint(first, pins(), PUBLISHING_REGION)
    fp_second = fingerprint(second, pins(), PUBLISHING_REGION)

    assert resource_name(first, fp_first) != resource_name(second, fp_second)
    assert execution_name(first, fp_first) != execution_name(second, fp_second)


def test_given_the_example_then_the_names_read_product_version_and_fingerprint() -> None:
    spec = release_spec()
    fp = "0123456789abcdef" * 4

    assert resource_name(spec, fp) == "acme-sentiment-1-2-0-01234567"
    assert execution_name(spec, fp) == "acme-sentiment-1-2-0-0123456789ab"
    assert execution_name(spec, fp, 3) == "acme-sentiment-1-2-0-0123456789ab-r3"


# --- resolve --------------------------------------------------------------------------


def test_given_pinned_sources_then_destination_keys_are_addressed_by_the_source_etag() -> None:
    release = resolved()

    model = release.object_for("model_data", "inference")
    validation_input = release.object_for("validation_input")
    assert model is not None
    assert validation_input is not None
    assert model.destination_uri == (
        f"s3://{PUBLISHING_BUCKET}/artifacts/acme-sentiment/1.2.0/inference/{MODEL_ETAG}/model.tar.gz"
    )
    assert validation_input.destination_uri == (
        f"s3://{PUBLISHING_BUCKET}/artifacts/acme-sentiment/1.2.0/validation/{INPUT_ETAG}/input.csv"
    )
    assert (model.source_uri, model.etag, model.size) == (MODEL_URI, MODEL_ETAG, 50_000)


def test_given_a_new_upload_of_the_same_file_then_it_gets_a_new_destination_key() -> None:
    before = resolved().object_for("model_data", "inference")
    after = resolved(pinset=pins(etags={MODEL_URI: "f" * 32, INPUT_URI: INPUT_ETAG})).object_for(
        "model_data", "inference"
    )

    assert before is not None
    assert after is not None
    assert before.destination_key != after.destination_key
    assert before.destination_key.endswith("/model.tar.gz")
    assert after.destination_key.endswith("/model.tar.gz")


def test_given_a_multipart_etag_then_the_destination_key_stays_a_plain_path_segment() -> None:
    multipart = "d41d8cd98f00b204e9800998ecf8427e-12"

    release = resolved(pinset=pins(etags={MODEL_URI: multipart, INPUT_URI: INPUT_ETAG}))

    model = release.object_for("model_data", "inference")
    assert model is not None
    assert model.etag == multipart
    assert "/d41d8cd98f00b204e9800998ecf8427e/" in model.destination_key


def test_given_a_release_then_it_is_pinned_named_and_routed_to_the_publishing_region() -> None:
    spec = release_spec()

    release = resolved(spec)

    fp = fingerprint(spec, pins(), PUBLISHING_REGION)
    assert release.fingerprint == fp
    assert release.resource_name == resource_name(spec, fp)
    assert release.publishing_region == PUBLISHING_REGION  # the spec's, over the stack default
    assert release.validation_role_arn == DEFAULT_ROLE
    assert release.validation_output_uri == f"s3://{PUBLISHING_BUCKET}/validation-output/{release.resource_name}/"
    [image] = release.images
    assert image.source.digest == DIGEST
    assert image.source.tag == "1.2.0"
    assert image.destination_repository == "acme/sentiment"


def test_given_no_publishing_region_in_the_spec_then_the_stacks_applies() -> None:
    release = resolved(release_spec(publishing_region=None), publishing=stack("eu-west-1"))

    assert release.publishing_region == "eu-west-1"
    assert release.fingerprint == fingerprint(release_spec(publishing_region=None), pins(), "eu-west-1")


# --- the publishing bucket follows the release's region ----------------------------------


def test_given_a_us_east_2_release_on_a_us_east_1_stack_then_everything_goes_to_the_us_east_2_bucket() -> None:
    release = resolved(release_spec(publishing_region="us-east-2"), publishing=stack("us-east-1"))

    assert release.publishing_bucket == f"mlpublish-{ACCOUNT}-us-east-2"
    assert {item.destination_bucket for item in release.objects} == {f"mlpublish-{ACCOUNT}-us-east-2"}
    assert release.validation_output_uri.startswith(f"s3://mlpublish-{ACCOUNT}-us-east-2/")


def test_given_a_release_naming_no_region_then_the_stack_regions_bucket_is_used() -> None:
    release = resolved(release_spec(publishing_region=None), publishing=stack("eu-west-1"))

    assert release.publishing_bucket == f"mlpublish-{ACCOUNT}-eu-west-1"
    assert {item.destination_bucket for item in release.objects} == {f"mlpublish-{ACCOUNT}-eu-west-1"}


@pytest.mark.parametrize("region", sorted(PUBLISHING_REGIONS))
def test_given_any_publishing_region_then_its_bucket_name_is_a_valid_s3_name_that_names_it(region: str) -> None:
    name = publishing_bucket(stack(), account_id=ACCOUNT, region=region)

    assert name == f"mlpublish-{ACCOUNT}-{region}"
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name)


@pytest.mark.parametrize("named", [True, False], ids=["named", "stack-default"])
def test_given_a_sellers_bucket_and_a_release_for_its_region_then_the_sellers_bucket_is_used(named: bool) -> None:
    spec = release_spec(publishing_region="us-east-2" if named else None)

    release = resolved(spec, publishing=stack("us-east-2", bucket_name=SELLERS_BUCKET))

    assert release.publishing_bucket == SELLERS_BUCKET
    assert {item.destination_bucket for item in release.objects} == {SELLERS_BUCKET}
    assert release.validation_output_uri.startswith(f"s3://{SELLERS_BUCKET}/")


def test_given_a_sellers_bucket_and_a_release_for_another_region_then_resolve_refuses_it() -> None:
    with pytest.raises(PreflightFailed) as caught:
        resolved(release_spec(publishing_region="us-east-2"), publishing=stack("us-east-1", bucket_name=SELLERS_BUCKET))

    [reason] = caught.value.reasons
    assert reason.startswith("publishing_region: us-east-2 is not the stack's PublishingRegion us-east-1")
    assert SELLERS_BUCKET in reason


def test_given_a_release_for_a_region_the_stack_does_not_allow_then_resolve_refuses_it() -> None:
    narrow = PublishingConfig(default_region="us-east-1", allowed_regions=("us-east-1",))

    with pytest.raises(PreflightFailed) as caught:
        resolved(release_spec(publishing_region="us-east-2"), publishing=narrow)

    [reason] = caught.value.reasons
    assert "AllowedPublishingRegions" in reason


def with_environment(containers: int, variables: int, length: int) -> ReleaseSpec:
    """The example with ``containers`` containers, each with ``variables`` values of ``length`` characters."""
    document = release_document()
    template = document["containers"][0]
    environment = {f"SETTING_{index}": "x" * length for index in range(variables)}
    document["containers"] = [
        {**template, "name": f"step-{index}", "environment": environment} for index in range(containers)
    ]
    return release_spec(document)


def test_given_a_release_too_large_for_the_execution_state_then_resolve_names_the_large_part() -> None:
    spec = with_environment(containers=15, variables=16, length=1000)

    with pytest.raises(PreflightFailed) as caught:
        resolved(spec, pins(images={f"step-{index}": DIGEST for index in range(15)}))

    assert re.match(
        r"release acme-sentiment 1\.2\.0 takes \d+ KiB of pipeline state, more than its budget of 96 KiB ",
        caught.value.message,
    )
    environment, containers = caught.value.reasons
    assert environment.startswith("containers.*.environment: 240 variable(s) hold 237 KiB; keep long values")
    assert "in a file inside model_data or the image" in environment
    assert containers.startswith("containers: 15 container(s) take ")


def test_given_a_large_release_within_the_state_budget_then_it_resolves() -> None:
    spec = with_environment(containers=15, variables=4, length=1000)

    release = resolved(spec, pins(images={f"step-{index}": DIGEST for index in range(15)}))

    assert 60 * 1024 < len(release.model_dump_json()) <= STATE_BUDGET


def test_given_a_broken_marketplace_rule_then_resolve_refuses_before_naming_anything() -> None:
    with pytest.raises(PreflightFailed):
        resolved(account_id="111122223333")


# --- pin ------------------------------------------------------------------------------


class FakeEcr:
    def __init__(self, digest: str) -> None:
        self.digest, self.calls = digest, []  # type: ignore[var-annotated]

    def describe_images(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        return {"imageDetails": [{"imageDigest": self.digest}]}


class FakeS3:
    """HeadObject of objects given as ETag and size; ranged GetObject of the ``bodies`` given."""

    def __init__(
        self,
        objects: dict[tuple[str, str], tuple[str, int]],
        error: str = "404",
        bodies: dict[tuple[str, str], bytes] | None = None,
    ) -> None:
        self.objects, self.error, self.calls = objects, error, []  # type: ignore[var-annotated]
        self.bodies = bodies or {}
        self.reads: list[dict[str, Any]] = []

    def get_object(self, **request: Any) -> dict[str, Any]:
        self.reads.append(request)
        etag, _ = self.objects[(request["Bucket"], request["Key"])]
        if request.get("IfMatch") not in (None, f'"{etag}"'):
            raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "x"}}, "GetObject")
        body = self.bodies[(request["Bucket"], request["Key"])]
        first, last = map(int, request["Range"].removeprefix("bytes=").split("-"))
        return {"Body": io.BytesIO(body[first : last + 1])}

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        self.calls.append((Bucket, Key))
        if (Bucket, Key) not in self.objects:
            raise ClientError({"Error": {"Code": self.error, "Message": "x"}}, "HeadObject")
        etag, size = self.objects[(Bucket, Key)]
        return {"ETag": f'"{etag}"', "ContentLength": size}


def test_given_nothing_pinned_then_every_image_and_object_is_looked_up() -> None:
    ecr = FakeEcr(DIGEST)
    s3 = FakeS3({(ARTIFACT_BUCKET, MODEL_KEY): (MODEL_ETAG, 10), (ARTIFACT_BUCKET, INPUT_KEY): (INPUT_ETAG, 20)})
    regions: list[str] = []

    pinned = pin(release_spec(), ecr_for=lambda region: regions.append(region) or ecr, s3=s3)

    assert pinned == PinSet(
        images={"inference": DIGEST},
        etags={MODEL_URI: MODEL_ETAG, INPUT_URI: INPUT_ETAG},
        sizes={MODEL_URI: 10, INPUT_URI: 20},
    )
    assert regions == [SOURCE_REGION]
    assert ecr.calls == [
        {"registryId": ACCOUNT, "repositoryName": "acme/sentiment", "imageIds": [{"imageTag": "1.2.0"}]}
    ]


def test_given_pins_from_the_trigger_then_they_are_kept_and_not_looked_up_again() -> None:
    ecr = FakeEcr("sha256:" + "9" * 64)
    s3 = FakeS3({(ARTIFACT_BUCKET, INPUT_KEY): (INPUT_ETAG, 20)})
    known = PinSet(images={"inference": DIGEST}, etags={MODEL_URI: MODEL_ETAG}, sizes={MODEL_URI: 10})

    pinned = pin(release_spec(), ecr_for=lambda region: ecr, s3=s3, known=known)

    assert pinned.images == {"inference": DIGEST}
    assert pinned.etags == {MODEL_URI: MODEL_ETAG, INPUT_URI: INPUT_ETAG}
    assert ecr.calls == []
    assert s3.calls == [(ARTIFACT_BUCKET, INPUT_KEY)]


@pytest.mark.parametrize("code", ["404", "NoSuchBucket", "403"])
def test_given_an_object_that_cannot_be_read_then_release_not_found_names_the_field(code: str) -> None:
    s3 = FakeS3({(ARTIFACT_BUCKET, MODEL_KEY): (MODEL_ETAG, 10)}, error=code)

    with pytest.raises(ReleaseNotFound) as caught:
        pin(release_spec(), ecr_for=lambda region: FakeEcr(DIGEST), s3=s3)

    message = f"validation.input: {INPUT_URI} cannot be read ({code}); upload it or fix the URI"
    denied = "; in a bucket of another account, its bucket policy must grant the stack's account s3:GetObject"
    assert caught.value.message == message + (denied if code == "403" else "")


def test_given_s3_throttles_then_pinning_fails_as_transient_for_the_state_machine_to_retry() -> None:
    s3 = FakeS3({}, error="SlowDown")

    with pytest.raises(TransientAwsError):
        pin(release_spec(), ecr_for=lambda region: FakeEcr(DIGEST), s3=s3)


# --- resolve_release: what ResolveRelease does -------------------------------------------


class FakeRegistry:
    """Serves manifests by digest, as ECR's BatchGetImage does, and blobs in chunks."""

    def __init__(self, manifests: dict[str, bytes] | None = None) -> None:
        self.manifests = dict(manifests or {})
        self.blobs: dict[str, bytes] = {}
        self.calls: list[tuple[str, str, str | None]] = []
        self.served: dict[str, int] = {}  # bytes handed out per blob
        self.layers: set[str] = set()

    def get_manifest(self, repository: str, reference: str, registry_id: str | None = None) -> FetchedManifest:
        self.calls.append((repository, reference, registry_id))
        return FetchedManifest(self.manifests[reference], DOCKER_MANIFEST, reference)

    @contextmanager
    def open_blob(self, repository: str, digest: str, registry_id: str | None = None) -> Iterator[Iterator[bytes]]:
        data = self.blobs[digest]

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(data), 4096):
                self.served[digest] = self.served.get(digest, 0) + len(data[start : start + 4096])
                yield data[start : start + 4096]

        yield chunks()

    @property
    def layer_bytes(self) -> int:
        """Layer bytes served so far (image configs left out)."""
        return sum(count for digest, count in self.served.items() if digest in self.layers)

    def push(self, *layers: Layer, arch: str = "amd64", config: bytes | None = None) -> str:
        """A Docker v2 image of these layers (bottom first) built for linux/``arch``; returns its digest."""
        for layer in layers:
            self.blobs[layer.digest] = layer.blob
            self.layers.add(layer.digest)
        config = image_config(arch, None, list(layers)) if config is None else config
        self.blobs[digest_of(config)] = config
        raw = canonical(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": digest_of(config)},
                "layers": [
                    {"mediaType": DOCKER_LAYER_GZIP, "size": len(layer.blob), "digest": layer.digest}
                    for layer in layers
                ],
            }
        )
        self.manifests[digest_of(raw)] = raw
        return digest_of(raw)


SOURCE_IMAGE = f"{ACCOUNT}.dkr.ecr.{SOURCE_REGION}.amazonaws.com/acme/sentiment"


def os_layer(os_release: str) -> Layer:
    tar = make_tar([("etc/os-release", os_release.encode(), 0o644)])
    return Layer(gzipped(tar), digest_of(tar), "ADD rootfs.tar /")


def model_tar_gz(size: int = 100) -> bytes:
    return gzipped(make_tar([("model.json", b"0" * size, 0o644)]))


def resolve_inline(
    registry: FakeRegistry,
    digest: str,
    *,
    model: bytes | None = None,
    s3: FakeS3 | None = None,
    document: dict[str, Any] | None = None,
    os_records: OsRecords | None = None,
) -> Any:
    regions: list[str] = []
    model = model_tar_gz() if model is None else model
    s3 = s3 or FakeS3(
        {(ARTIFACT_BUCKET, MODEL_KEY): (MODEL_ETAG, len(model)), (ARTIFACT_BUCKET, INPUT_KEY): (INPUT_ETAG, 20)},
        bodies={(ARTIFACT_BUCKET, MODEL_KEY): model},
    )
    release = resolve_release(
        StartInput(release=document or release_document()),
        s3=s3,
        ecr_for=lambda region: FakeEcr(digest),
        registry_for=lambda region: regions.append(region) or registry,
        account_id=ACCOUNT,
        source_region=SOURCE_REGION,
        publishing=stack(),
        validation_role_arn=DEFAULT_ROLE,
        os_records=os_records,
    )
    assert set(regions) == {SOURCE_REGION}
    return release


def test_given_an_inline_release_then_resolve_release_pins_it_and_checks_its_image_in_the_source_registry() -> None:
    registry = FakeRegistry()
    digest = registry.push(base_layer("amd64"), big_layer()[1])

    release = resolve_inline(registry, digest)

    assert release.release_uri is None
    assert release.images[0].source.digest == digest
    assert {item.source_key: item.etag for item in release.objects} == {MODEL_KEY: MODEL_ETAG, INPUT_KEY: INPUT_ETAG}
    assert release.validation_role_arn == DEFAULT_ROLE
    assert set(registry.calls) == {("acme/sentiment", digest, ACCOUNT)}  # by the platform and the OS checks


def test_given_an_image_on_debian_then_resolve_release_records_its_os_for_the_announcement() -> None:
    registry = FakeRegistry()
    digest = registry.push(base_layer("amd64"), big_layer()[1])

    release = resolve_inline(registry, digest)

    assert [(image.container, image.os) for image in release.images] == [
        ("inference", "Debian GNU/Linux 12 (bookworm)")
    ]


def test_given_an_image_then_resolve_release_records_how_many_layer_bytes_it_read_to_tell_the_os() -> None:
    registry = FakeRegistry()
    base = base_layer("amd64")
    digest = registry.push(base, big_layer()[1])

    [image] = resolve_inline(registry, digest).images

    assert (image.os_bytes_read, image.os_uncertain, image.os_remembered) == (registry.layer_bytes, None, False)
    assert registry.layer_bytes == len(big_layer()[1].blob) + registry.served[base.digest]


class RecordBucket:
    """The pipeline bucket as ResolveRelease's S3 client sees it: GetObject and PutObject by key."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "x"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:
        self.objects[Key] = Body
        return {}


def test_given_an_unchanged_image_when_resolved_again_then_no_layer_byte_is_downloaded() -> None:
    registry = FakeRegistry()
    digest = registry.push(base_layer("amd64"), big_layer()[1])
    records = OsRecords(RecordBucket(), "mlpublish-pipeline")
    first = resolve_inline(registry, digest, os_records=records)
    read_first = registry.layer_bytes

    again = resolve_inline(registry, digest, os_records=records)

    assert read_first > 0
    assert registry.layer_bytes == read_first  # the re-run downloaded 0 layer bytes
    assert again.images[0].os == first.images[0].os == "Debian GNU/Linux 12 (bookworm)"
    assert (again.images[0].os_bytes_read, again.images[0].os_remembered) == (0, True)


def test_given_a_changed_image_when_resolved_then_its_layers_are_read_again() -> None:
    registry = FakeRegistry()
    records = OsRecords(RecordBucket(), "mlpublish-pipeline")
    resolve_inline(registry, registry.push(base_layer("amd64"), big_layer()[1]), os_records=records)
    read_first = registry.layer_bytes
    changed = registry.push(os_layer('ID=ubuntu\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n'), big_layer()[1])

    [image] = resolve_inline(registry, changed, os_records=records).images

    assert (image.os, image.os_remembered) == ("Ubuntu 24.04.1 LTS", False)
    assert registry.layer_bytes - read_first == image.os_bytes_read > 0


def test_given_an_unscannable_image_remembered_then_the_refusal_names_the_record_to_delete() -> None:
    registry = FakeRegistry()
    digest = registry.push(os_layer('ID=gentoo\nPRETTY_NAME="Gentoo Linux"\n'))
    records = OsRecords(RecordBucket(), "mlpublish-pipeline")
    with pytest.raises(ImageScanBlocked):
        resolve_inline(registry, digest, os_records=records)
    read_first = registry.layer_bytes

    with pytest.raises(ImageScanBlocked) as caught:
        resolve_inline(registry, digest, os_records=records)

    assert registry.layer_bytes == read_first
    [reason] = caught.value.reasons
    assert "is built on Gentoo Linux (os-release ID gentoo), which ECR basic scanning does not support" in reason
    assert "as recorded in s3://mlpublish-pipeline/mlpublish/os-release/v1/" in reason


def test_given_an_image_built_from_scratch_then_resolve_release_blocks_it_before_anything_is_copied() -> None:
    registry = FakeRegistry()
    digest = registry.push(scratch_layer(), big_layer()[1])

    with pytest.raises(ImageScanBlocked) as caught:
        resolve_inline(registry, digest)

    assert "AWS Marketplace rejects images it cannot scan (UnscannableImage)" in caught.value.message
    assert "Base each image on Amazon Linux, Debian, Ubuntu, Alpine, RHEL, CentOS or Oracle Linux" in (
        caught.value.message
    )
    [reason] = caught.value.reasons
    assert reason.startswith(f"container inference: {SOURCE_IMAGE}@{digest} has no /etc/os-release or ")
    assert "FROM scratch" in reason


def test_given_an_image_on_an_os_ecr_cannot_scan_then_resolve_release_blocks_it_naming_the_os() -> None:
    registry = FakeRegistry()
    digest = registry.push(os_layer('ID=gentoo\nPRETTY_NAME="Gentoo Linux"\n'))

    with pytest.raises(ImageScanBlocked) as caught:
        resolve_inline(registry, digest)

    assert caught.value.reasons == [
        f"container inference: {SOURCE_IMAGE}@{digest} is built on Gentoo Linux (os-release ID gentoo), "
        "which ECR basic scanning does not support"
    ]


def two_containers() -> dict[str, Any]:
    """The example with a second container running another image, sharing the model data."""
    document = release_document()
    second = dict(document["containers"][0], name="postprocess", image=f"{SOURCE_IMAGE}:post")
    document["containers"].append(second)
    return document


def test_given_an_image_whose_os_release_is_a_symlink_loop_then_resolve_release_refuses_it_naming_the_container() -> (
    None
):
    registry = FakeRegistry()
    loop = make_tar_with_links(
        ("etc/os-release", "../usr/lib/os-release"), ("usr/lib/os-release", "../../etc/os-release")
    )
    digest = registry.push(Layer(gzipped(loop), digest_of(loop), "ADD rootfs.tar /"))

    with pytest.raises(ImageScanBlocked) as caught:
        resolve_inline(registry, digest)

    assert caught.value.message == (
        f"ECR cannot tell the OS of container inference ({SOURCE_IMAGE}@{digest}), so it cannot scan it, and AWS "
        "Marketplace rejects images it cannot scan (UnscannableImage); nothing was copied:"
    )
    [reason] = caught.value.reasons
    assert reason.startswith(
        "/etc/os-release is a symlink loop: /etc/os-release -> /usr/lib/os-release -> /etc/os-release;"
    )
    assert reason.endswith(
        "make /etc/os-release a regular file, or a relative symlink to ../usr/lib/os-release that is one (as "
        "distributions' base images have it), and push the image again"
    )


def test_given_an_image_whose_layer_is_not_a_readable_tar_then_resolve_release_refuses_it_instead_of_not_detected() -> (
    None
):
    registry = FakeRegistry()
    broken = Layer(b"\x1f\x8b\x08\x00" + b"\x00" * 64, digest_of(b""), "ADD broken.tar /")
    digest = registry.push(base_layer("amd64"), broken)

    with pytest.raises(ImageScanBlocked) as caught:
        resolve_inline(registry, digest)

    assert f"container inference ({SOURCE_IMAGE}@{digest})" in caught.value.message
    [reason] = caught.value.reasons
    assert reason.startswith(
        f"/etc/os-release cannot be resolved: layer 2 of 2 ({broken.digest}) is not a readable, complete tar ("
    )


def make_tar_with_links(*links: tuple[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


# --- what the sources hold: the platform an image is built for, the model artifact's format ---


def test_given_an_arm64_image_then_resolve_release_refuses_it_from_its_config_before_reading_a_layer() -> None:
    registry = FakeRegistry()
    digest = registry.push(base_layer("arm64"), arch="arm64")
    config = json.loads(registry.manifests[digest])["config"]["digest"]
    opened: list[str] = []
    open_blob = registry.open_blob
    registry.open_blob = lambda repository, blob, registry_id=None: (
        opened.append(blob)
        or open_blob(  # type: ignore[method-assign]
            repository, blob, registry_id
        )
    )

    with pytest.raises(PreflightFailed) as caught:
        resolve_inline(registry, digest)

    assert caught.value.message == (
        "release acme-sentiment 1.2.0 has 1 source(s) the pipeline cannot copy or SageMaker cannot validate; "
        "nothing was copied. "
        "Fix them and start the release again:"
    )
    assert caught.value.reasons == [
        f"containers.0.image: {SOURCE_IMAGE}@{digest} is built for linux/arm64 (its image config {config} says "
        "so), but SageMaker validates it with a batch transform job on ml.m5.large, and batch transform instance "
        "types (ml.m5, ml.c5, ml.m6i, ml.p3, ml.g4dn, ml.g5, ...) are x86-64 only, so it must be linux/amd64; "
        "build for linux/amd64: docker buildx build --platform linux/amd64 --provenance=false --sbom=false "
        "--output type=registry,oci-mediatypes=false,compression=gzip,force-compression=true ..., and push it again"
    ]
    assert opened == [config]  # the OS is not read from the layers of an image refused already


def test_given_an_index_whose_amd64_entry_is_an_arm64_image_then_the_config_not_the_index_decides() -> None:
    registry = FakeRegistry()
    child = registry.push(base_layer("arm64"), arch="arm64")
    index = canonical(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {
                    "mediaType": DOCKER_MANIFEST,
                    "size": len(registry.manifests[child]),
                    "digest": child,
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        }
    )
    registry.manifests[digest_of(index)] = index

    with pytest.raises(PreflightFailed) as caught:
        resolve_inline(registry, digest_of(index))

    [reason] = caught.value.reasons
    assert f"{SOURCE_IMAGE}@{digest_of(index)} is built for linux/arm64 (its image config" in reason


@pytest.mark.parametrize(
    ("config", "built_for"),
    [
        pytest.param({"os": "windows", "architecture": "amd64"}, "windows/amd64", id="windows"),
        pytest.param({"os": "linux", "architecture": "arm", "variant": "v7"}, "linux/arm/v7", id="arm-v7"),
    ],
)
def test_given_an_image_config_for_another_platform_then_it_is_named_as_the_config_writes_it(
    config: dict[str, str], built_for: str
) -> None:
    registry = FakeRegistry()
    digest = registry.push(base_layer("amd64"), config=canonical(config))

    with pytest.raises(PreflightFailed) as caught:
        resolve_inline(registry, digest)

    assert f"is built for {built_for} (its image config" in caught.value.reasons[0]


@pytest.mark.parametrize(
    "config", [{"os": "linux", "architecture": "amd64", "variant": "v3"}, {"os": "linux", "architecture": "x86_64"}, {}]
)
def test_given_an_amd64_image_or_a_config_naming_no_platform_then_the_platform_rule_holds(
    config: dict[str, str],
) -> None:
    registry = FakeRegistry()
    digest = registry.push(base_layer("amd64"), config=canonical(config))

    assert resolve_inline(registry, digest).images[0].os == "Debian GNU/Linux 12 (bookworm)"


def test_given_a_registry_serving_another_config_than_the_manifest_names_then_nothing_is_copied() -> None:
    registry = FakeRegistry()
    digest = registry.push(base_layer("amd64"))
    config = json.loads(registry.manifests[digest])["config"]["digest"]
    registry.blobs[config] = image_config("arm64", None, [base_layer("amd64")])

    with pytest.raises(BlobDigestMismatch, match=f"the registry served image config {config} as"):
        resolve_inline(registry, digest)


def zip_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


MODEL_FIX = (
    "but SageMaker extracts model data as a gzip-compressed tar into /opt/ml/model; make one from the directory "
    "SageMaker should find in /opt/ml/model with `tar czf model.tar.gz -C model .` and upload it there"
)


@pytest.mark.parametrize(
    ("model", "what"),
    [
        pytest.param(zip_of("model.json", b"{}"), "a ZIP archive (it starts with PK)", id="zip"),
        pytest.param(make_tar([("model.json", b"{}", 0o644)]), "an uncompressed tar", id="tar"),
        pytest.param(
            gzipped(b'{"weights": [1, 2]}' * 40),
            "gzip-compressed, but what it compresses is not a tar (no ustar header)",
            id="gzip-json",
        ),
        pytest.param(
            gzipped(b"{}"), "gzip-compressed, but what it compresses is 2 bytes, too short for a tar", id="gzip-short"
        ),
        pytest.param(
            b"\x1f\x8b\x08\x00garbage" * 10,
            "a broken gzip stream (Error -3 while decompressing data: ",
            id="gzip-broken",
        ),
        pytest.param(
            b"PyTorch weights", "not gzip-compressed (it starts with 50 79 54 6f, not the gzip magic 1f 8b)", id="raw"
        ),
    ],
)
def test_given_model_data_that_is_not_a_gzipped_tar_then_resolve_release_refuses_it_saying_what_it_is(
    model: bytes, what: str
) -> None:
    registry = FakeRegistry()
    digest = registry.push(base_layer("amd64"))

    with pytest.raises(PreflightFailed) as caught:
        resolve_inline(registry, digest, model=model)

    [reason] = caught.value.reasons
    assert reason.startswith(f"containers.0.model_data: {MODEL_URI} is {what}")
    assert reason.endswith(MODEL_FIX)


def test_given_a_large_model_tar_gz_then_only_its_first_64_kib_are_read_once_for_every_container() -> None:
    registry = FakeRegistry()
    document = two_containers()
    model = model_tar_gz(size=0) + os.urandom(1024 * 1024)  # a valid start; the rest is never looked at
    digest = registry.push(base_layer("amd64"))
    s3 = FakeS3(
        {(ARTIFACT_BUCKET, MODEL_KEY): (MODEL_ETAG, len(model)), (ARTIFACT_BUCKET, INPUT_KEY): (INPUT_ETAG, 20)},
        bodies={(ARTIFACT_BUCKET, MODEL_KEY): model},
    )

    release = resolve_inline(registry, digest, s3=s3, document=document)

    assert [image.container for image in release.images] == ["inference", "postprocess"]
    assert s3.reads == [
        {"Bucket": ARTIFACT_BUCKET, "Key": MODEL_KEY, "Range": "bytes=0-65535", "IfMatch": f'"{MODEL_ETAG}"'}
    ]


def test_given_model_data_overwritten_since_it_was_pinned_then_resolve_release_says_the_source_changed() -> None:
    registry = FakeRegistry()
    digest = registry.push(base_layer("amd64"))
    model = model_tar_gz()
    s3 = FakeS3(
        {(ARTIFACT_BUCKET, MODEL_KEY): ("f" * 32, len(model)), (ARTIFACT_BUCKET, INPUT_KEY): (INPUT_ETAG, 20)},
        bodies={(ARTIFACT_BUCKET, MODEL_KEY): model},
    )
    s3.head_object = lambda **request: {"ETag": f'"{MODEL_ETAG}"', "ContentLength": len(model)}  # type: ignore[method-assign]

    with pytest.raises(SourceChanged, match=f"{MODEL_URI} was overwritten after the release pinned it"):
        resolve_inline(registry, digest, s3=s3)


def test_given_an_arm64_image_and_a_zip_model_then_both_are_reported_at_once() -> None:
    registry = FakeRegistry()
    digest = registry.push(base_layer("arm64"), arch="arm64")

    with pytest.raises(PreflightFailed) as caught:
        resolve_inline(registry, digest, model=zip_of("model.json", b"{}"))

    assert [reason.split(":")[0] for reason in caught.value.reasons] == [
        "containers.0.image",
        "containers.0.model_data",
    ]


# --- sizes the copy cannot carry, refused before anything is read or copied --------------------


def push_with_layers(registry: FakeRegistry, sizes: list[int]) -> str:
    """An amd64 Debian image with layers of ``sizes`` after its base, which the manifest only names
    (nothing may read them); returns its digest."""
    digest = registry.push(base_layer("amd64"))
    document = json.loads(registry.manifests[digest])
    document["layers"] += [
        {"mediaType": DOCKER_LAYER_GZIP, "size": size, "digest": f"sha256:{index:064x}"}
        for index, size in enumerate(sizes, start=1)
    ]
    raw = canonical(document)
    registry.manifests[digest_of(raw)] = raw
    return digest_of(raw)


def recording_reads(registry: FakeRegistry) -> list[str]:
    opened: list[str] = []
    open_blob = registry.open_blob
    registry.open_blob = lambda repository, blob, registry_id=None: (  # type: ignore[method-assign]
        opened.append(blob) or open_blob(repository, blob, registry_id)
    )
    return opened


def test_given_an_image_with_a_layer_larger_than_ecr_takes_then_it_is_refused_before_a_layer_is_read() -> None:
    registry = FakeRegistry()
    too_large = 52_000 * 1024 * 1024 + 1
    digest = push_with_layers(registry, [1024, too_large])
    config = json.loads(registry.manifests[digest])["config"]["digest"]
    opened = recording_reads(registry)

    with pytest.raises(PreflightFailed) as caught:
        resolve_inline(registry, digest)

    [reason] = caught.value.reasons
    assert reason.startswith(
        f"containers.0.image: {SOURCE_IMAGE}@{digest} has a layer of 52,000 MiB ({too_large:,} bytes, "
        f"sha256:{2:064x}), more than the 52,000 MiB ECR takes in one layer"
    )
    assert opened == [config]  # its platform; no layer is read, nothing copied


def test_given_an_image_whose_copy_would_crowd_the_state_then_it_is_refused_with_the_figure_and_the_budget() -> None:
    registry = FakeRegistry()
    # Layers over a batch's bytes are each a batch of their own, with a result each in the state.
    digest = push_with_layers(registry, [300 * 1024 * 1024] * 1500)

    with pytest.raises(PreflightFailed) as caught:
        resolve_inline(registry, digest)

    [reason] = caught.value.reasons
    assert re.match(
        rf"containers\.0\.image: {re.escape(SOURCE_IMAGE)}@{digest} has 1501 layers, and copying it would carry "
        r"\d+ KiB of pipeline state \(a result per batch of blobs\), more than its budget of 96 KiB \(Step Functions "
        r"caps a state at 256 KiB\)",
        reason,
    )


def test_given_model_data_larger_than_s3_allows_then_resolve_release_refuses_it_before_reading_anything() -> None:
    registry = FakeRegistry()
    digest = registry.push(base_layer("amd64"))
    size = 49 * 1024**4
    s3 = FakeS3({(ARTIFACT_BUCKET, MODEL_KEY): (MODEL_ETAG, size), (ARTIFACT_BUCKET, INPUT_KEY): (INPUT_ETAG, 20)})

    with pytest.raises(PreflightFailed) as caught:
        resolve_inline(registry, digest, s3=s3)

    assert caught.value.reasons == [
        f"containers.0.model_data: {MODEL_URI} is 49.0 TiB ({size:,} bytes), more than the 48.8 TiB "
        "(53,687,091,200,000 bytes) an S3 object can be (10,000 parts of at most 5 GiB), so it cannot be copied into "
        "the publishing bucket; make it smaller (leave out what inference does not read, such as checkpoints and "
        "optimizer state) and upload it again"
    ]
    assert s3.reads == []  # sized by HeadObject: nothing read, nothing copied
    assert registry.calls == []


def test_given_an_image_whose_manifest_does_not_match_its_digest_then_resolve_release_refuses_it() -> None:
    digest = "sha256:" + "3" * 64
    registry = FakeRegistry({digest: manifest("1").encode()})

    with pytest.raises(BlobDigestMismatch, match=f"not the {digest} asked for"):
        resolve_inline(registry, digest)


# --- the execution input --------------------------------------------------------------


def test_given_a_manual_start_with_a_release_uri_then_it_is_a_manual_trigger_without_pins() -> None:
    start = parse_start({"release_uri": "s3://pipeline/releases/acme.yaml"})

    assert start.trigger == Trigger(kind="manual")
    assert start.pins == PinSet()


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({}, "input: Value error, give exactly one of release_uri (s3://BUCKET/KEY) or release"),
        (
            {"release_uri": "s3://b/k.yaml", "release": {"product": {}}},
            "input: Value error, give exactly one of release_uri (s3://BUCKET/KEY) or release",
        ),
        ({"release_url": "s3://b/k.yaml"}, "release_url: Extra inputs are not permitted"),
        ({"release_uri": "s3://b/k.yaml", "trigger": {"kind": "cron"}}, "trigger.kind: Input should be "),
    ],
)
def test_given_an_invalid_execution_input_then_invalid_release_shows_how_to_start(
    event: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidRelease) as caught:
        parse_start(event)

    assert caught.value.message == (
        'execution input is invalid; start with {"release_uri": "s3://BUCKET/releases/FILE.yaml"}'
    )
    assert any(found.startswith(reason) for found in caught.value.reasons), caught.value.reasons


def test_given_an_inline_release_then_it_is_validated_like_a_file_and_named_inline() -> None:
    document = release_document()
    document["product"]["description"] = "Reviews 😀 in English"
    assert parse_release_document(document).product.description == "Reviews 😀 in English"

    document["product"]["name"] = "Not A Slug"
    with pytest.raises(InvalidRelease) as caught:
        parse_release_document(document)
    assert caught.value.message.startswith("the inline release is not a valid release specification")
    assert [reason.split(":")[0] for reason in caught.value.reasons] == ["product.name"]

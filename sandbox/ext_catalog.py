"""The AWS Marketplace Catalog API for machine-learning products, which moto does not have.

moto 5.2.5 has no marketplace-catalog service (no backend, no URL pattern; its
meteringmarketplace backend owns the ``aws-marketplace`` signing name). This extension serves
StartChangeSet, DescribeChangeSet, ListChangeSets, DescribeEntity, ListEntities (products and
offers) and CancelChangeSet for the catalog ``AWSMarketplace``, to boto3 clients in process
(mock_aws) and over the sandbox's HTTP endpoint alike, per account (the account of the
request's credentials, as moto's own backends), in us-east-1 only. Products are seeded
(:meth:`CatalogExtension.seed_product`), one ``MachineLearningProduct@1.0`` entity (and its
public ``Offer@1.0``) per call.

What it emulates
* Requests are checked server-side against botocore's marketplace-catalog model (required
  members, lengths, counts, enums; then ``botocore.validate.ParamValidator``) but not its
  patterns: EntityType ``^[a-zA-Z]+$`` would refuse ``MachineLearningProduct@1.0`` [BC-mc].
  Then the documented rules: Catalog ``AWSMarketplace``; Details or DetailsDocument, not both;
  no ChangeType twice on one entity in a set; an entity in a running change set is locked
  (ResourceInUseException, 423) [BC-mc]; ClientRequestToken makes StartChangeSet idempotent.
* AddDeliveryOptions' DetailsDocument is checked against the MachineLearningProduct@1.0 shapes
  [SHAPES] with the API doc's required fields [API-ml-add]: every required field, lengths, the
  URL and title patterns, RecommendedInstanceTypes ``^\\S{1,24}$``, no unknown key
  (``SageMaker…DeliveryOptionDetails`` as [SHAPES] and the doc's AddDeliveryOptions example
  spell it). These are refused at once with ValidationException.
* A change set runs on the virtual clock: PREPARING, then APPLYING, then SUCCEEDED or FAILED
  with FailureCode CLIENT_ERROR and each change's ErrorDetailList. Its resources are checked as
  it starts (the service checks them while preparing; the product stays locked until the set
  ends) and the errors are reported when it ends, with the codes [API-ml-add] lists:
  INVALID_ASSET_ARN (the ARN breaks [SHAPES]' pattern or names another account),
  ASSET_NOT_FOUND (no such model package / algorithm in the seller's account and the ARN's
  region: moto's packages, the algorithms of :mod:`sandbox.ext_sagemaker`),
  ASSET_VALIDATION_EXCEPTION (not certified for Marketplace, or its validation is not
  Completed), DUPLICATE_ASSET (the ARN is already a version's source), DUPLICATE_VERSION_TITLE,
  INCOMPATIBLE_DELIVERY_OPTIONS (not exactly one delivery option per version, or not exactly
  one kind of details in it), INVALID_RECOMMENDED_INSTANCE_TYPE (not one of the resource's
  supported instance types for that use), INVALID_ACCESS_ROLE (the AccessRoleArn breaks
  [SHAPES]' pattern or names another account), UPDATE_PRICING_REQUIRED (a dimension of the
  resource has no price on the product's public offer and no UpdatePricingTerms in the same
  change set gives it one [API-ml-add]). On success the product gains the version
  (Versions[].Sources, DeliveryOptions[].Id, …, as the entitytype shapes [SHAPES] lay them out)
  and its instance types become Dimensions. RestrictDeliveryOptions makes delivery options
  ``Restricted``; at least one version must stay unrestricted [API-ml-add]; an id the product
  does not have fails the set.
* UpdatePricingTerms on the product's public ``Offer@1.0`` ([API-ml-pricing]: the API
  reference's "Update pricing terms" for ML products): DetailsDocument ``PricingModel`` (Usage,
  Free, Contract) and ``Terms``; a UsageBasedPricingTerm has CurrencyCode USD and exactly one
  RateCards entry of ``{DimensionKey, Price}``; a FreeTrialPricingTerm has Duration and Grants
  of ``{DimensionKey}``; shape errors are refused at once. Dimension keys are
  ``INSTANCE_TYPE.m.i.b`` (batch transform), ``.m.i.r`` (real-time), ``.a.t`` (training) and
  ``m.i.c`` (per inference) [API-ml-pricing]; a real-time type counts as priced when ``m.i.c``
  is (assumed, from the reference's example). When the set runs, a rate card that drops an
  existing rate fails INVALID_RATE_CARD and one pricing a dimension the product will not have
  fails INCOMPATIBLE_PRODUCT (codes and messages as an AMI tool records AWS giving them for AMI
  offers; assumed the same for ML). On success the offer's Terms are the given ones.
  ListEntities finds the public offer by ``OfferFilters`` ProductId and Targeting ``None``
  [BC-mc].
* When a change set ends, the Catalog's event goes to the default bus of us-east-1 in the
  seller's account: source ``aws.marketplacecatalog``, detail-type ``Change Set Succeeded``,
  ``Change Set Failed`` or ``Change Set Cancelled``, resources the change set's ARN, detail
  {requestId, Catalog, ChangeSetId, ChangeSetName, StartTime, EndTime} and no error details
  (the Catalog API reference's notification examples; a consumer describes the set for its
  errors). ``emit_events=False`` loses them, as a broken delivery would.
* ``ChangeSetOutcome`` sets the virtual minutes and can force a failure (CLIENT_ERROR with
  given error details, or SERVER_FAULT) per product, as ``ValidationOutcome`` does for
  SageMaker.
* A call in another region fails as no endpoint answers: in process, botocore's
  EndpointConnectionError; over the HTTP endpoint the connection is closed unanswered
  (botocore: ConnectionClosedError). Confirmed: botocore's endpoints.json has the Catalog API
  in us-east-1 only [BC-ep] while its endpoint rules make ``catalog.marketplace.REGION.
  amazonaws.com`` for any region. Assumed: that no such host exists outside us-east-1.

Confirmed sources are the keys of /work/shared/marketplace-facts.md: [BC-mc] botocore's
marketplace-catalog model (shapes, errors and their HTTP codes, FailureCode, statuses),
[BC-ep], [SHAPES] (awslabs/aws-marketplace-catalog-api-shapes-for-python), [API-ml-add] (the
API reference's "Add a new version" for ML products); and [API-ml-pricing],
docs.aws.amazon.com/marketplace/latest/APIReference/update-pricing-terms.html (read 2026-12).

Intent VALIDATE: botocore's model documents it "for adding versions to single-AMI products",
but the ML "Add a new version" page [API-ml-add] says to set ``Intent`` to VALIDATE "to
validate your API call without creating a version" (docs.aws.amazon.com/marketplace/latest/
APIReference/ml-add-version.html, read 2026-12; marketplace-facts.md does not record it). The
sandbox follows the ML page: a VALIDATE change set runs the same checks and ends SUCCEEDED or
FAILED without changing the product.

Assumed (no source found): which failures are synchronous (the DetailsDocument's schema) and
which asynchronous (the rules with a documented error code), and which rule each documented
code stands for (the codes are documented by name only); the error messages; the change set id
format (25 lower-case letters and digits) and ARN
``arn:aws:aws-marketplace:us-east-1:ACCOUNT:AWSMarketplace/ChangeSet/ID`` (the ARN as in AWS's
Catalog API samples); entity ARNs ``…:AWSMarketplace/MachineLearningProduct/ID``; the offer's
DescribeEntity document (``ProductId`` and ``Terms`` as UpdatePricingTerms gave them, prices as
strings) and the product's Dimensions (one per dimension key, Unit ``Hrs``); that
DescribeEntity of another account's entity is ResourceNotFoundException; the virtual durations
(60 s PREPARING, then APPLYING until ``minutes``; AWS says "a few minutes to several hours");
that UpdatePricingTerms targets the product's public ``Offer@1.0`` (as for other product
types); a seeded product's Description (ProductCode, Visibility ``Limited``, ProductState
``Active``) and its offer (Released, paid: a UsageBasedPricingTerm at 0.10 USD an hour for each
seeded dimension, none when seeded without instance types; free offers are not emulated); that
CancelChangeSet works only while PREPARING; that a repeated ClientRequestToken returns the
first change set whatever the request. Not emulated: the other MachineLearningProduct change
types (refused with ValidationException saying so), ListEntities of other entity types or with
other filters, BatchDescribeEntities, tags, resource policies, and the "Change Set
Succeeded/Failed/Cancelled" EventBridge events (source ``aws.marketplacecatalog``, documented
in the EventBridge reference; no event is emitted).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import re
import secrets
import socket
import string
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

import botocore.session
from botocore.exceptions import EndpointConnectionError
from botocore.model import StructureShape
from botocore.validate import ParamValidator
from moto import backend_index
from moto import backends as moto_backends
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, BaseResponse
from moto.events.models import events_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sagemaker.models import sagemaker_backends

from sandbox.clock import VirtualClock
from sandbox.extension import Extension
from sandbox.sagemaker_requests import constraint_errors

SERVICE = "marketplace-catalog"
CATALOG = "AWSMarketplace"
REGION = "us-east-1"
PRODUCT_TYPE = "MachineLearningProduct@1.0"
OFFER_TYPE = "Offer@1.0"
#: Change types of MachineLearningProduct@1.0 [SHAPES] the sandbox does not emulate.
NOT_EMULATED = frozenset(
    {
        "CreateProduct",
        "UpdateInformation",
        "UpdateDeliveryOptions",
        "UpdateTargeting",
        "UpdateVisibility",
        "ReleaseProduct",
    }
)
_URL_PATTERN = re.compile(r"https?://catalog\.marketplace\.(.+)\.amazonaws\.com")
_HOST = re.compile(r"^aws-marketplace\.([^.]+)\.amazonaws\.com$")
_MODEL_PACKAGE_ARN = re.compile(r"^arn:aws:sagemaker:[a-z0-9-]{4,24}:[0-9]{12}:model-package\/\S{1,2048}$")
_ALGORITHM_ARN = re.compile(r"^arn:aws:sagemaker:[a-z0-9-]{4,24}:[0-9]{12}:algorithm\/\S{1,2048}$")
_ROLE_ARN = re.compile(r"^arn:aws:iam::\d{12}:role(\/[A-Za-z0-9_+=,.@-]+)?$")
_HTTPS_URL = r"^https:\/\/(www\.)?[-a-zA-Z0-9@._]{1,256}\.[a-zA-Z0-9()]{2,63}\b([-a-zA-Z0-9@_+.\/]*)"
_TEXT = r"^\S+[\S\s]*"
_INSTANCE_TYPE = r"^\S{1,24}$"
_PRINTABLE = r"^[ -~]+"
PER_INFERENCE = "m.i.c"
_DIMENSION_KEY = re.compile(r"^ml\.\S+\.(m\.i\.b|m\.i\.r|a\.t)$")
#: The dimension-key suffix of each use of an instance type [API-ml-pricing].
_USE_SUFFIX = {"BatchTransform": "m.i.b", "RealtimeInference": "m.i.r", "Training": "a.t"}
SEEDED_PRICE = "0.10"

#: The installed extensions, the last one serving (moto's server caches its per-service app).
_INSTALLED: list[CatalogExtension] = []


# ------------------------------------------------------------------ errors (botocore's error shapes)


class ValidationException(ServiceException):
    code = "ValidationException"


class ResourceNotFoundException(ServiceException):
    code = "ResourceNotFoundException"


class ResourceInUseException(ServiceException):
    code = "ResourceInUseException"


class ResourceNotSupportedException(ServiceException):
    code = "ResourceNotSupportedException"


def parse_catalog_product(text: str) -> tuple[str, tuple[str, ...]]:
    """``ID[=TYPE,TYPE...]`` (``sandbox run --catalog-product``) -> (product id, priced instance
    types or dimension keys: see :meth:`CatalogExtension.seed_product`)."""
    product_id, _, types = text.partition("=")
    if not re.fullmatch(r"[\w\-]{1,255}", product_id):
        raise ValueError(f"--catalog-product {text}: the product id is 1-255 letters, digits, '_' or '-'")
    priced = tuple(t.strip() for t in types.split(",") if t.strip())
    for instance_type in priced:
        if not re.fullmatch(r"\S{1,40}", instance_type):
            raise ValueError(f"--catalog-product {text}: {instance_type!r} is not an instance type")
    return product_id, priced


# ------------------------------------------------------------------ model


@dataclass(frozen=True)
class ChangeSetOutcome:
    """How a change set unfolds, in virtual time; ``failure_code`` forces the outcome.

    ``failure_code`` ``CLIENT_ERROR`` fails it with ``errors`` (``(ErrorCode, ErrorMessage)``
    pairs, given to its first change); ``SERVER_FAULT`` fails it with no error details. None:
    the outcome the rules decide.
    """

    preparing_seconds: float = 60.0
    minutes: float = 10.0
    failure_code: str | None = None
    errors: tuple[tuple[str, str], ...] = ()

    @property
    def total_seconds(self) -> float:
        return max(self.minutes * 60.0, self.preparing_seconds)


@dataclass
class Version:
    id: str
    title: str
    release_notes: str
    created: dt.datetime
    source_kind: str  # "ModelPackage" | "Algorithm"
    source_arn: str
    delivery_option_id: str
    details: dict[str, Any]
    supported: dict[str, list[str]]
    visibility: str = "Public"

    def document(self) -> dict[str, Any]:
        """entitytype.Version [SHAPES]."""
        source_id = str(uuid.uuid5(uuid.NAMESPACE_URL, self.source_arn))
        source: dict[str, Any] = {"Type": self.source_kind, "Id": source_id}
        source["ModelPackageArn" if self.source_kind == "ModelPackage" else "AlgorithmArn"] = self.source_arn
        d = self.details
        recommended = {k: v for k, v in d["RecommendedInstanceTypes"].items() if v}
        option = {
            "Id": self.delivery_option_id,
            "Type": "SageMaker" + self.source_kind,
            "SourceId": source_id,
            "Title": self.title,
            "ShortDescription": self.release_notes[:200],
            "Instructions": {
                "Usage": d["UsageInstructions"],
                "SampleNotebookUrl": d["SampleNotebookUrl"],
                "RepositoryUrl": d["RepositoryUrl"],
                "InputProperties": copy.deepcopy(d["InputProperties"]),
                "OutputProperties": copy.deepcopy(d["OutputProperties"]),
            },
            "Visibility": self.visibility,
            "RecommendedInstanceTypes": recommended,
            "SupportedInstanceTypes": copy.deepcopy(self.supported),
        }
        return {
            "Id": self.id,
            "ReleaseNotes": self.release_notes,
            "VersionTitle": self.title,
            "CreationDate": _iso(self.created),
            "Sources": [source],
            "DeliveryOptions": [option],
        }


@dataclass
class Product:
    """A seeded MachineLearningProduct and its public offer."""

    id: str
    account: str
    title: str
    offer_id: str
    dimensions: list[str]  # the product's dimension keys
    modified: dt.datetime
    versions: list[Version] = field(default_factory=list)
    terms: list[dict[str, Any]] = field(default_factory=list)  # the public offer's
    revision: int = 1
    offer_revision: int = 1

    @property
    def priced(self) -> list[str]:
        """The dimension keys the public offer's UsageBasedPricingTerm prices."""
        return _dimension_keys({"Terms": [t for t in self.terms if t.get("Type") == "UsageBasedPricingTerm"]})

    @property
    def arn(self) -> str:
        return f"arn:aws:aws-marketplace:{REGION}:{self.account}:{CATALOG}/MachineLearningProduct/{self.id}"

    @property
    def offer_arn(self) -> str:
        return f"arn:aws:aws-marketplace:{REGION}:{self.account}:{CATALOG}/Offer/{self.offer_id}"

    def document(self) -> dict[str, Any]:
        """entitytype.MachineLearningProductEntityDetail [SHAPES]."""
        return {
            "Versions": [v.document() for v in self.versions],
            "Description": {
                "ProductTitle": self.title,
                "ProductCode": _product_code(self.id),
                "Visibility": "Limited",
                "ProductState": "Active",
            },
            "Dimensions": [
                {"Name": key, "Description": key, "Key": key, "Unit": "Hrs", "Types": ["ExternallyMetered"]}
                for key in self.dimensions
            ],
            "Targeting": {"PositiveTargeting": {"BuyerAccounts": []}},
        }

    def offer_document(self) -> dict[str, Any]:
        return {"ProductId": self.id, "Terms": copy.deepcopy(self.terms)}

    def summary(self) -> dict[str, Any]:
        """ListEntities' EntitySummary of the product [BC-mc]."""
        return {
            "Name": self.title,
            "EntityType": "MachineLearningProduct",
            "EntityId": self.id,
            "EntityArn": self.arn,
            "LastModifiedDate": _iso(self.modified),
            "Visibility": "Limited",
            "MachineLearningProductSummary": {"ProductTitle": self.title, "Visibility": "Limited"},
        }

    def offer_summary(self) -> dict[str, Any]:
        """ListEntities' EntitySummary of the public offer [BC-mc]."""
        return {
            "Name": f"{self.title} public offer",
            "EntityType": "Offer",
            "EntityId": self.offer_id,
            "EntityArn": self.offer_arn,
            "LastModifiedDate": _iso(self.modified),
            "OfferSummary": {
                "Name": f"{self.title} public offer",
                "ProductId": self.id,
                "State": "Released",
                "Targeting": ["None"],
            },
        }


@dataclass
class ChangeSet:
    id: str
    account: str
    name: str | None
    intent: str
    changes: list[dict[str, Any]]
    start: dt.datetime
    outcome: ChangeSetOutcome
    product_id: str
    token: str | None
    status: str = "PREPARING"
    end: dt.datetime | None = None
    failure_code: str | None = None
    failure_description: str | None = None
    errors: list[list[dict[str, str]]] = field(default_factory=list)
    announced: bool = False  # its end event was sent

    @property
    def arn(self) -> str:
        return f"arn:aws:aws-marketplace:{REGION}:{self.account}:{CATALOG}/ChangeSet/{self.id}"

    @property
    def running(self) -> bool:
        return self.status in ("PREPARING", "APPLYING")

    def entity_ids(self) -> list[str]:
        return sorted({_entity_id(c["Entity"].get("Identifier", "")) for c in self.changes})

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ChangeSetId": self.id,
            "ChangeSetArn": self.arn,
            "Intent": self.intent,
            "StartTime": _iso(self.start),
            "Status": self.status,
            "ChangeSet": [],
        }
        if self.name:
            out["ChangeSetName"] = self.name
        if self.end is not None:
            out["EndTime"] = _iso(self.end)
        if self.failure_code:
            out["FailureCode"] = self.failure_code
        if self.failure_description:
            out["FailureDescription"] = self.failure_description
        for index, change in enumerate(self.changes):
            summary: dict[str, Any] = {
                "ChangeType": change["ChangeType"],
                "Entity": copy.deepcopy(change["Entity"]),
                "ErrorDetailList": copy.deepcopy(self.errors[index]) if self.status == "FAILED" else [],
            }
            for key in ("Details", "DetailsDocument", "ChangeName"):
                if change.get(key) is not None:
                    summary[key] = copy.deepcopy(change[key])
            out["ChangeSet"].append(summary)
        return out

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ChangeSetId": self.id,
            "ChangeSetArn": self.arn,
            "StartTime": _iso(self.start),
            "Status": self.status,
            "EntityIdList": self.entity_ids(),
        }
        if self.name:
            out["ChangeSetName"] = self.name
        if self.end is not None:
            out["EndTime"] = _iso(self.end)
        if self.failure_code:
            out["FailureCode"] = self.failure_code
        return out


@dataclass
class _Account:
    products: dict[str, Product] = field(default_factory=dict)
    change_sets: dict[str, ChangeSet] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------ the extension


class CatalogExtension(Extension):
    """The Marketplace Catalog API on moto's endpoints, on the virtual clock.

    Install with ``undo = ext.install()`` (or ``with ext:``); ``undo()`` removes the service
    and forgets every product and change set. ``sagemaker`` (the sandbox's
    SageMakerValidation) lets a change set see an algorithm's current validation status.
    """

    def __init__(
        self,
        clock: VirtualClock,
        default_outcome: ChangeSetOutcome | None = None,
        *,
        sagemaker: Any | None = None,
        emit_events: bool = True,
    ) -> None:
        self.clock = clock
        self.emit_events = emit_events
        self.default_outcome = default_outcome or ChangeSetOutcome()
        self.sagemaker = sagemaker
        self._outcomes: dict[str, ChangeSetOutcome] = {}
        self._accounts: dict[str, _Account] = {}
        self._lock = threading.RLock()

    # -------------------------------------------------------------- seeding and configuration
    def seed_product(
        self,
        account: str,
        product_id: str,
        title: str = "Sandbox ML product",
        *,
        instance_types: Sequence[str] = (),
        offer_id: str | None = None,
    ) -> Product:
        """A MachineLearningProduct in ``account`` with no version yet, its public offer pricing
        ``instance_types`` (its dimensions) at SEEDED_PRICE an hour; returns it. An instance type
        (``ml.m5.large``) gives the inference dimensions (``.m.i.b``, ``.m.i.r``); a dimension key
        (``ml.m5.large.a.t``) itself. Seeding an existing id replaces it."""
        if not re.fullmatch(r"[\w\-]{1,255}", product_id):
            raise ValueError(f"product id {product_id!r}: 1-255 letters, digits, '_' or '-'")
        offer = offer_id or "offer-" + _random_id(13)
        keys = [
            key
            for name in instance_types
            for key in (
                [name] if _DIMENSION_KEY.match(name) or name == PER_INFERENCE else [f"{name}.m.i.b", f"{name}.m.i.r"]
            )
        ]
        keys = list(dict.fromkeys(keys))
        product = Product(product_id, account, title, offer, keys, self.clock.now())
        product.terms = [
            {
                "Type": "UsageBasedPricingTerm",
                "CurrencyCode": "USD",
                "RateCards": [{"RateCard": [{"DimensionKey": key, "Price": SEEDED_PRICE} for key in keys]}],
            }
        ]
        with self._lock:
            self._account(account).products[product_id] = product
        return product

    def product(self, account: str, product_id: str) -> Product:
        with self._lock:
            return self._account(account).products[product_id]

    def set_outcome(self, product_id: str, outcome: ChangeSetOutcome) -> None:
        """The outcome of change sets started later on this product (default: ``default_outcome``)."""
        self._outcomes[product_id] = outcome

    # -------------------------------------------------------------- install
    def _patch(self, stack: ExitStack) -> None:
        _INSTALLED.append(self)
        stack.callback(self._uninstall)
        backend_index.backend_url_patterns.append((SERVICE, _URL_PATTERN))
        stack.callback(backend_index.backend_url_patterns.remove, (SERVICE, _URL_PATTERN))
        original_get_backend = moto_backends.get_backend

        def get_backend(name: str) -> Any:
            if name == SERVICE:
                return {"global": _CatalogBackend()}
            return original_get_backend(name)  # type: ignore[call-overload]

        stack.enter_context(patch.object(moto_backends, "get_backend", get_backend))
        original_infer = DomainDispatcherApplication.infer_service_region_host

        def infer_service_region_host(app: DomainDispatcherApplication, environ: dict[str, Any], path: str) -> Any:
            host = original_infer(app, environ, path)
            # The Catalog API signs as "aws-marketplace", like moto's metering service; it is the
            # one of them without an X-Amz-Target header (a REST API).
            match = _HOST.match(host or "")
            if match and not environ.get("HTTP_X_AMZ_TARGET"):
                return f"catalog.marketplace.{match.group(1)}.amazonaws.com"
            return host

        stack.enter_context(
            patch.object(DomainDispatcherApplication, "infer_service_region_host", infer_service_region_host)
        )

    def _uninstall(self) -> None:
        _INSTALLED.remove(self)
        with self._lock:
            self._accounts.clear()

    # -------------------------------------------------------------- operations
    def start_change_set(self, account: str, params: Mapping[str, Any]) -> dict[str, str]:
        _check_request("StartChangeSet", params)
        _check_catalog(params)
        changes = [dict(c) for c in params["ChangeSet"]]
        intent = params.get("Intent") or "APPLY"
        token = params.get("ClientRequestToken")
        with self._lock:
            state = self._account(account)
            if token and token in state.tokens:
                existing = state.change_sets[state.tokens[token]]
                return {"ChangeSetId": existing.id, "ChangeSetArn": existing.arn}
            product_id = self._check_changes(state, changes)
            for other in state.change_sets.values():
                self._refresh(other)
                if other.running and product_id in other.entity_ids():
                    raise ResourceInUseException(
                        f"Requested change set has entities locked by change sets - entity: '{product_id}' "
                        f"change sets: '{other.id}'."
                    )
            change_set = ChangeSet(
                id=_random_id(25),
                account=account,
                name=params.get("ChangeSetName"),
                intent=intent,
                changes=copy.deepcopy(changes),
                start=self.clock.now(),
                outcome=self._outcomes.get(product_id, self.default_outcome),
                product_id=product_id,
                token=token,
            )
            # The service checks the resources while it prepares the set: the sandbox checks them as
            # the set starts (its entity stays locked until it ends), and reports them when it ends.
            change_set.errors = self._errors(change_set, state.products[product_id])
            state.change_sets[change_set.id] = change_set
            if token:
                state.tokens[token] = change_set.id
        ends = change_set.start + dt.timedelta(seconds=change_set.outcome.total_seconds)
        self.clock.schedule(ends, lambda: self._announce(change_set))
        return {"ChangeSetId": change_set.id, "ChangeSetArn": change_set.arn}

    def _announce(self, change_set: ChangeSet) -> None:
        """The Catalog's event for a change set that ended (once: a cancelled set announced itself)."""
        with self._lock:
            self._refresh(change_set)
            if change_set.running or change_set.announced or not self.emit_events:
                return
            change_set.announced = True
            detail = {
                "requestId": str(uuid.uuid4()),
                "Catalog": CATALOG,
                "ChangeSetId": change_set.id,
                "ChangeSetName": change_set.name or "",
                "StartTime": _iso(change_set.start),
                "EndTime": _iso(change_set.end or self.clock.now()),
            }
            entry = {
                "Source": "aws.marketplacecatalog",
                "DetailType": f"Change Set {change_set.status.capitalize()}",
                "Resources": [change_set.arn],
                "Detail": json.dumps(detail),
                "EventBusName": "default",
            }
        events_backends[change_set.account][REGION].put_events([entry])

    def describe_change_set(self, account: str, params: Mapping[str, Any]) -> dict[str, Any]:
        _check_request("DescribeChangeSet", params)
        _check_catalog(params)
        with self._lock:
            change_set = self._change_set(account, params["ChangeSetId"])
            self._refresh(change_set)
            return change_set.describe()

    def cancel_change_set(self, account: str, params: Mapping[str, Any]) -> dict[str, str]:
        _check_request("CancelChangeSet", params)
        _check_catalog(params)
        with self._lock:
            change_set = self._change_set(account, params["ChangeSetId"])
            self._refresh(change_set)
            if change_set.status == "APPLYING":
                raise ResourceInUseException(f"Change set {change_set.id} is APPLYING and can no longer be cancelled.")
            if change_set.status != "PREPARING":
                raise ValidationException(f"Change set {change_set.id} has ended ({change_set.status}).")
            change_set.status, change_set.end = "CANCELLED", self.clock.now()
        self._announce(change_set)
        return {"ChangeSetId": change_set.id, "ChangeSetArn": change_set.arn}

    def list_change_sets(self, account: str, params: Mapping[str, Any]) -> dict[str, Any]:
        _check_request("ListChangeSets", params)
        _check_catalog(params)
        with self._lock:
            change_sets = list(self._account(account).change_sets.values())
            for change_set in change_sets:
                self._refresh(change_set)
            chosen = [c for c in change_sets if _matches(c, params.get("FilterList") or [])]
        sort = params.get("Sort") or {}
        key = {"StartTime": "start", "EndTime": "end", "Status": "status", "ChangeSetName": "name"}.get(
            sort.get("SortBy") or "StartTime"
        )
        if key is None:
            raise ValidationException(f"Unsupported SortBy: {sort.get('SortBy')}")
        chosen.sort(key=lambda c: (getattr(c, key) is None, getattr(c, key) or ""))
        if sort.get("SortOrder") == "DESCENDING":
            chosen.reverse()
        token = params.get("NextToken")
        if token and not token.isdigit():
            raise ValidationException(f"Invalid NextToken: {token}")
        start = int(token or 0)
        end = start + int(params.get("MaxResults") or 20)
        page: dict[str, Any] = {"ChangeSetSummaryList": [c.summary() for c in chosen[start:end]]}
        if end < len(chosen):
            page["NextToken"] = str(end)
        return page

    def describe_entity(self, account: str, params: Mapping[str, Any]) -> dict[str, Any]:
        _check_request("DescribeEntity", params)
        _check_catalog(params)
        entity_id = _entity_id(params["EntityId"])
        with self._lock:
            state = self._account(account)
            for change_set in state.change_sets.values():
                self._refresh(change_set)
            for product in state.products.values():
                if product.id == entity_id:
                    return _entity(
                        PRODUCT_TYPE, product.id, product.revision, product.arn, product.modified, product.document()
                    )
                if product.offer_id == entity_id:
                    return _entity(
                        OFFER_TYPE,
                        product.offer_id,
                        product.offer_revision,
                        product.offer_arn,
                        product.modified,
                        product.offer_document(),
                    )
        raise ResourceNotFoundException(f"Entity {params['EntityId']} not found.")

    def list_entities(self, account: str, params: Mapping[str, Any]) -> dict[str, Any]:
        _check_request("ListEntities", params)
        _check_catalog(params)
        entity_type = params["EntityType"]
        filters = params.get("EntityTypeFilters") or {}
        if entity_type not in ("Offer", "MachineLearningProduct"):
            raise ValidationException(f"ListEntities of {entity_type} is not emulated by the sandbox.")
        if set(filters) - {"OfferFilters", "MachineLearningProductFilters"} or params.get("FilterList"):
            raise ValidationException(
                "The sandbox emulates ListEntities' EntityTypeFilters of offers and ML products only."
            )
        wanted = filters.get("OfferFilters" if entity_type == "Offer" else "MachineLearningProductFilters") or {}
        unsupported = set(wanted) - (
            {"ProductId", "Targeting", "EntityId", "State"} if entity_type == "Offer" else {"EntityId"}
        )
        if unsupported:
            raise ValidationException(
                f"The sandbox does not emulate these {entity_type} filters: {sorted(unsupported)}."
            )
        with self._lock:
            products = list(self._account(account).products.values())
        summaries = [p.offer_summary() if entity_type == "Offer" else p.summary() for p in products]
        for name, condition in wanted.items():
            values = set(condition.get("ValueList") or [])
            if name == "EntityId":
                summaries = [s for s in summaries if s["EntityId"] in values]
            elif name == "ProductId":
                summaries = [s for s in summaries if s["OfferSummary"]["ProductId"] in values]
            elif name == "State":
                summaries = [s for s in summaries if s["OfferSummary"]["State"] in values]
            else:  # Targeting: a public offer targets no one ("None")
                summaries = [s for s in summaries if values & set(s["OfferSummary"]["Targeting"])]
        token = params.get("NextToken")
        if token and not token.isdigit():
            raise ValidationException(f"Invalid NextToken: {token}")
        start = int(token or 0)
        end = start + int(params.get("MaxResults") or 20)
        page: dict[str, Any] = {"EntitySummaryList": summaries[start:end]}
        if end < len(summaries):
            page["NextToken"] = str(end)
        return page

    # -------------------------------------------------------------- synchronous checks
    def _check_changes(self, state: _Account, changes: list[dict[str, Any]]) -> str:
        """Refuse what StartChangeSet refuses; returns the product the set is about."""
        seen: set[tuple[str, str]] = set()
        product: Product | None = None
        for index, change in enumerate(changes, start=1):
            where = f"changeSet.{index}.member"
            entity, change_type = change["Entity"], change["ChangeType"]
            identifier = entity.get("Identifier")
            if not identifier:
                raise ValidationException(f"{where}.entity.identifier is required for {change_type}.")
            if (change.get("Details") is None) == (change.get("DetailsDocument") is None):
                raise ValidationException(f"{where}: give either Details or DetailsDocument, not both or neither.")
            if change.get("Details") is not None:
                try:
                    change["DetailsDocument"] = json.loads(change.pop("Details"))
                except ValueError as exc:
                    raise ValidationException(f"{where}.details is not valid JSON: {exc}") from exc
                change["_from_details"] = True
            key = (_entity_id(identifier), change_type)
            if key in seen:
                raise ValidationException(
                    f"Change type {change_type} is used more than once for entity {identifier} in the change set."
                )
            seen.add(key)
            target = self._target(state, entity)
            if product is not None and target is not product:
                raise ValidationException("The sandbox emulates change sets on one product (and its offer) at a time.")
            product = target
            if entity["Type"] == OFFER_TYPE:
                if change_type != "UpdatePricingTerms":
                    raise ValidationException(f"{change_type} on {OFFER_TYPE} is not emulated by the sandbox.")
                _check_pricing_terms(change["DetailsDocument"], where)
            elif change_type == "AddDeliveryOptions":
                _check_document(change["DetailsDocument"], _ADD_DELIVERY_OPTIONS, f"{where}.detailsDocument")
            elif change_type == "RestrictDeliveryOptions":
                _check_document(change["DetailsDocument"], _RESTRICT_DELIVERY_OPTIONS, f"{where}.detailsDocument")
            elif change_type in NOT_EMULATED:
                raise ValidationException(
                    f"{change_type} is a {PRODUCT_TYPE} change type the sandbox does not emulate."
                )
            else:
                raise ValidationException(f"Unsupported change type {change_type} for entity type {PRODUCT_TYPE}.")
        for change in changes:
            if change.pop("_from_details", False):
                change["Details"] = json.dumps(change.pop("DetailsDocument"))
        assert product is not None
        return product.id

    def _target(self, state: _Account, entity: Mapping[str, Any]) -> Product:
        entity_id, entity_type = _entity_id(entity["Identifier"]), entity["Type"]
        for product in state.products.values():
            if entity_id == product.id:
                if entity_type != PRODUCT_TYPE:
                    raise ValidationException(
                        f"Entity {entity['Identifier']} is of type {PRODUCT_TYPE}, not {entity_type}."
                    )
                return product
            if entity_id == product.offer_id:
                if entity_type != OFFER_TYPE:
                    raise ValidationException(
                        f"Entity {entity['Identifier']} is of type {OFFER_TYPE}, not {entity_type}."
                    )
                return product
        raise ResourceNotFoundException(f"Entity {entity['Identifier']} of type {entity_type} not found.")

    # -------------------------------------------------------------- lifecycle
    def _refresh(self, change_set: ChangeSet) -> None:
        """Move a change set along the virtual clock; decide and apply its outcome at its end."""
        if not change_set.running:
            return
        elapsed = self.clock.seconds_since(change_set.start)
        outcome = change_set.outcome
        if elapsed < outcome.preparing_seconds:
            return
        if elapsed < outcome.total_seconds:
            change_set.status = "APPLYING"
            return
        change_set.end = change_set.start + dt.timedelta(seconds=outcome.total_seconds)
        if outcome.failure_code == "SERVER_FAULT":
            change_set.status, change_set.failure_code = "FAILED", "SERVER_FAULT"
            change_set.errors = [[] for _ in change_set.changes]
            change_set.failure_description = "An internal error occurred; retry the change set."
            return
        product = self._account(change_set.account).products.get(change_set.product_id)
        errors = change_set.errors
        if outcome.failure_code == "CLIENT_ERROR":
            errors[0] += [{"ErrorCode": code, "ErrorMessage": message} for code, message in outcome.errors]
        if any(errors):
            change_set.status, change_set.failure_code = "FAILED", "CLIENT_ERROR"
            change_set.failure_description = "The change set has errors: see ChangeSet[].ErrorDetailList."
            return
        change_set.status = "SUCCEEDED"
        if change_set.intent == "APPLY" and product is not None:
            self._apply(change_set, product)

    def _errors(self, change_set: ChangeSet, product: Product) -> list[list[dict[str, str]]]:
        """Every change's ErrorDetailList, as the service finds them preparing the set (checked at its start)."""
        priced = set(product.priced) | {
            key
            for c in change_set.changes
            if c["ChangeType"] == "UpdatePricingTerms"
            for key in _dimension_keys(_document(c))
        }
        # The dimensions the product has once the set applies: its own, and those generated for
        # the instance types of the versions it adds [API-ml-add].
        available = set(product.dimensions) | {PER_INFERENCE}
        for c in change_set.changes:
            if c["ChangeType"] == "AddDeliveryOptions":
                available |= set(_resource_dimensions(self._supported(change_set.account, _document(c))))
        titles = {v.title for v in product.versions}
        sources = {v.source_arn for v in product.versions}
        restricting = {
            i
            for c in change_set.changes
            if c["ChangeType"] == "RestrictDeliveryOptions"
            for i in _document(c)["DeliveryOptionIds"]
        }
        errors: list[list[dict[str, str]]] = []
        for change in change_set.changes:
            found: list[dict[str, str]] = []
            if change["ChangeType"] == "AddDeliveryOptions":
                found = self._add_errors(change_set.account, _document(change), priced, titles, sources)
            elif change["ChangeType"] == "RestrictDeliveryOptions":
                adding = any(c["ChangeType"] == "AddDeliveryOptions" for c in change_set.changes)
                found = _restrict_errors(product, restricting, adding=adding)
            elif change["ChangeType"] == "UpdatePricingTerms":
                found = _pricing_errors(product, _document(change), available)
            errors.append(found)
        return errors

    def _supported(self, account: str, document: Mapping[str, Any]) -> dict[str, list[str]]:
        """The supported instance types (by use) of the resource an AddDeliveryOptions names, if found."""
        options = document.get("DeliveryOptions") or []
        if len(options) != 1:
            return {}
        details = options[0].get("Details") or {}
        kind = next((k for k in _DETAIL_KINDS if details.get(k) is not None), None)
        if kind is None:
            return {}
        is_package = kind == "SageMakerModelPackageDeliveryOptionDetails"
        arn = str(details[kind].get("SageMakerModelPackageArn" if is_package else "SageMakerAlgorithmArn") or "")
        parts = arn.split(":")
        if not (_MODEL_PACKAGE_ARN if is_package else _ALGORITHM_ARN).match(arn) or parts[4] != account:
            return {}
        resource = self._resource(account, parts[3], arn, is_package)
        return resource[2] if resource else {}

    def _add_errors(
        self, account: str, document: Mapping[str, Any], priced: set[str], titles: set[str], sources: set[str]
    ) -> list[dict[str, str]]:
        errors: list[dict[str, str]] = []

        def error(code: str, message: str) -> None:
            errors.append({"ErrorCode": code, "ErrorMessage": message})

        title = document["Version"]["VersionTitle"]
        if title in titles:
            error("DUPLICATE_VERSION_TITLE", f"A version titled '{title}' already exists on this product.")
        options = document["DeliveryOptions"]
        if len(options) != 1:
            error("INCOMPATIBLE_DELIVERY_OPTIONS", f"A version has exactly one delivery option; got {len(options)}.")
            return errors
        kinds = [k for k in _DETAIL_KINDS if options[0]["Details"].get(k) is not None]
        if len(kinds) != 1:
            error("INCOMPATIBLE_DELIVERY_OPTIONS", f"Give exactly one of {', '.join(_DETAIL_KINDS)}.")
            return errors
        kind = kinds[0]
        details = options[0]["Details"][kind]
        is_package = kind == "SageMakerModelPackageDeliveryOptionDetails"
        arn = details["SageMakerModelPackageArn" if is_package else "SageMakerAlgorithmArn"]
        role = details["AccessRoleArn"]
        if not _ROLE_ARN.match(role) or role.split(":")[4] != account:
            error(
                "INVALID_ACCESS_ROLE", f"AccessRoleArn {role} is not an IAM role ARN of the seller account {account}."
            )
        if not (_MODEL_PACKAGE_ARN if is_package else _ALGORITHM_ARN).match(arn):
            error(
                "INVALID_ASSET_ARN", f"{arn} is not a SageMaker {'model package' if is_package else 'algorithm'} ARN."
            )
            return errors
        region, owner = arn.split(":")[3], arn.split(":")[4]
        if owner != account:
            error("INVALID_ASSET_ARN", f"{arn} is not in the seller account {account}.")
            return errors
        if arn in sources:
            error("DUPLICATE_ASSET", f"{arn} is already the source of a version of this product.")
        resource = self._resource(account, region, arn, is_package)
        if resource is None:
            error("ASSET_NOT_FOUND", f"{arn} was not found.")
            return errors
        status, certified, supported = resource
        if not certified or status != "Completed":
            error(
                "ASSET_VALIDATION_EXCEPTION",
                f"Unable to ingest {arn} into AWS Sagemaker account: its status is {status} and it is "
                f"{'' if certified else 'not '}certified for Marketplace.",
            )
        recommended = details["RecommendedInstanceTypes"]
        for use, supported_key in (
            ("BatchTransform", "BatchTransform"),
            ("RealtimeInference", "RealtimeInference"),
            ("Training", "Training"),
        ):
            wanted = recommended.get(use)
            if wanted is not None and wanted not in supported.get(supported_key, []):
                error(
                    "INVALID_RECOMMENDED_INSTANCE_TYPE",
                    f"RecommendedInstanceTypes.{use} {wanted} is not one of the resource's supported "
                    f"{use} instance types [{', '.join(supported.get(supported_key, []))}].",
                )
        missing = [
            key
            for key in _resource_dimensions(supported)
            if key not in priced and not (key.endswith(".m.i.r") and PER_INFERENCE in priced)
        ]
        if missing:
            error(
                "UPDATE_PRICING_REQUIRED",
                f"Dimensions without a price: {', '.join(missing)}. Add an UpdatePricingTerms change pricing them.",
            )
        return errors

    def _resource(
        self, account: str, region: str, arn: str, is_package: bool
    ) -> tuple[str, bool, dict[str, list[str]]] | None:
        """(status, certified, supported instance types by use) of the seller's resource, or None."""
        if region not in sagemaker_backends[account]:
            return None
        backend = sagemaker_backends[account][region]
        if is_package:
            name = arn.split("/", 1)[1]
            if not any(p.arn.lower() == arn.lower() for p in backend.model_packages.values()):
                return None
            package = backend.describe_model_package(name)  # refreshed by the sandbox's SageMaker
            spec = package.inference_specification or {}
            return (
                package.model_package_status,
                bool(package.certify_for_marketplace),
                {
                    "BatchTransform": list(spec.get("SupportedTransformInstanceTypes") or []),
                    "RealtimeInference": list(spec.get("SupportedRealtimeInferenceInstanceTypes") or []),
                },
            )
        from sandbox.ext_sagemaker import _algorithms

        algorithm = _algorithms(backend).get(arn.split("/", 1)[1].lower())
        if algorithm is None or algorithm.arn != arn:
            return None
        if self.sagemaker is not None:
            self.sagemaker._refresh_algorithm(algorithm)
        request = algorithm.request
        spec = request.get("InferenceSpecification") or {}
        return (
            algorithm.status,
            bool(request.get("CertifyForMarketplace")),
            {
                "BatchTransform": list(spec.get("SupportedTransformInstanceTypes") or []),
                "RealtimeInference": list(spec.get("SupportedRealtimeInferenceInstanceTypes") or []),
                "Training": list(request["TrainingSpecification"]["SupportedTrainingInstanceTypes"]),
            },
        )

    def _apply(self, change_set: ChangeSet, product: Product) -> None:
        end = change_set.end or self.clock.now()
        for change in change_set.changes:
            document = _document(change)
            if change["ChangeType"] == "UpdatePricingTerms":
                product.terms = copy.deepcopy(document["Terms"])
                product.offer_revision += 1
            elif change["ChangeType"] == "RestrictDeliveryOptions":
                for version in product.versions:
                    if version.delivery_option_id in document["DeliveryOptionIds"]:
                        version.visibility = "Restricted"
            elif change["ChangeType"] == "AddDeliveryOptions":
                option = document["DeliveryOptions"][0]["Details"]
                kind = next(k for k in _DETAIL_KINDS if option.get(k) is not None)
                details = option[kind]
                is_package = kind == "SageMakerModelPackageDeliveryOptionDetails"
                arn = details["SageMakerModelPackageArn" if is_package else "SageMakerAlgorithmArn"]
                resource = self._resource(change_set.account, arn.split(":")[3], arn, is_package)
                supported = resource[2] if resource else {}
                for key in _resource_dimensions(supported):
                    if key not in product.dimensions:
                        product.dimensions.append(key)
                product.versions.append(
                    Version(
                        id=str(uuid.uuid4()),
                        title=document["Version"]["VersionTitle"],
                        release_notes=document["Version"]["ReleaseNotes"],
                        created=end,
                        source_kind="ModelPackage" if is_package else "Algorithm",
                        source_arn=arn,
                        delivery_option_id=str(uuid.uuid4()),
                        details=copy.deepcopy(details),
                        supported=supported,
                    )
                )
        product.revision += 1
        product.modified = end

    # -------------------------------------------------------------- helpers
    def _account(self, account: str) -> _Account:
        return self._accounts.setdefault(account, _Account())

    def _change_set(self, account: str, change_set_id: str) -> ChangeSet:
        change_set = self._account(account).change_sets.get(change_set_id)
        if change_set is None:
            raise ResourceNotFoundException(f"Change set {change_set_id} not found.")
        return change_set


def _restrict_errors(product: Product, restricting: set[str], *, adding: bool) -> list[dict[str, str]]:
    """A change set that adds a version may restrict every earlier one (the set fails as a whole
    if the addition does)."""
    known = {v.delivery_option_id for v in product.versions}
    errors = [
        {
            "ErrorCode": "INCOMPATIBLE_DELIVERY_OPTIONS",
            "ErrorMessage": f"Delivery option {i} not found on this product.",
        }
        for i in sorted(restricting - known)
    ]
    remaining = [
        v for v in product.versions if v.visibility != "Restricted" and v.delivery_option_id not in restricting
    ]
    if not errors and not remaining and not adding:
        errors.append(
            {
                "ErrorCode": "INCOMPATIBLE_DELIVERY_OPTIONS",
                "ErrorMessage": "At least one version must remain unrestricted.",
            }
        )
    return errors


def _resource_dimensions(supported: Mapping[str, Sequence[str]]) -> list[str]:
    """The dimension keys of a resource's supported instance types, by use [API-ml-pricing]."""
    return list(
        dict.fromkeys(
            f"{t}.{_USE_SUFFIX[use]}" for use, types in supported.items() for t in types if use in _USE_SUFFIX
        )
    )


def _pricing_errors(product: Product, document: Mapping[str, Any], available: set[str]) -> list[dict[str, str]]:
    """An UpdatePricingTerms rate card keeps every existing rate and prices only the product's
    dimensions (the codes and messages an AMI tool records for AMI offers; assumed for ML)."""
    errors = []
    keys = set(_dimension_keys({"Terms": [t for t in document["Terms"] if t.get("Type") == "UsageBasedPricingTerm"]}))
    dropped = [key for key in product.priced if key not in keys]
    if dropped and document.get("PricingModel") == "Usage":
        errors.append(
            {
                "ErrorCode": "INVALID_RATE_CARD",
                "ErrorMessage": f"Rates can't be removed from UsageBasedPricingTerm: {', '.join(dropped)}.",
            }
        )
    unknown = sorted(keys - available)
    if unknown:
        errors.append(
            {
                "ErrorCode": "INCOMPATIBLE_PRODUCT",
                "ErrorMessage": "Use existing, available dimensions in the product in UsageBasedPricingTerm: "
                f"{', '.join(unknown)} are not dimensions of {product.id}.",
            }
        )
    return errors


# ------------------------------------------------------------------ moto plumbing


class CatalogResponse(BaseResponse):
    """moto's rest-json parsing, routing and serialisation, from botocore's marketplace-catalog model."""

    def __init__(self) -> None:
        super().__init__(service_name=SERVICE)
        self.automated_parameter_parsing = True

    def _serve(self, operation: Callable[[CatalogExtension, str, Mapping[str, Any]], Any]) -> ActionResult:
        extension = _INSTALLED[-1] if _INSTALLED else None
        if extension is None:
            raise ValidationException("The Marketplace Catalog API is not installed in this sandbox.")
        if self.region != REGION:
            _no_endpoint(self)
        return ActionResult(operation(extension, self.current_account, dict(self.params)))

    def start_change_set(self) -> ActionResult:
        return self._serve(CatalogExtension.start_change_set)

    def describe_change_set(self) -> ActionResult:
        return self._serve(CatalogExtension.describe_change_set)

    def cancel_change_set(self) -> ActionResult:
        return self._serve(CatalogExtension.cancel_change_set)

    def list_change_sets(self) -> ActionResult:
        return self._serve(CatalogExtension.list_change_sets)

    def describe_entity(self) -> ActionResult:
        return self._serve(CatalogExtension.describe_entity)

    def list_entities(self) -> ActionResult:
        return self._serve(CatalogExtension.list_entities)


class _CatalogBackend:
    """What moto's request routing needs of a backend: its URLs, in process and in server mode."""

    urls = {r"https?://catalog\.marketplace\.(.+)\.amazonaws\.com/.*": CatalogResponse.dispatch}
    flask_paths = {"/<path:path>": CatalogResponse.dispatch}


def _no_endpoint(response: BaseResponse) -> None:
    """What a client outside us-east-1 meets: no endpoint (see the module's docstring)."""
    url = f"https://catalog.marketplace.{response.region}.amazonaws.com{response.path}"
    environ = getattr(response.normalized_request, "environ", {})
    connection = environ.get("werkzeug.socket") if response.is_werkzeug_request else None
    if isinstance(connection, socket.socket):
        connection.shutdown(socket.SHUT_RDWR)
        raise ConnectionResetError(f"no endpoint {url}")  # werkzeug drops the connection quietly
    raise EndpointConnectionError(endpoint_url=url)


# ------------------------------------------------------------------ request checks


_DETAIL_KINDS = ("SageMakerModelPackageDeliveryOptionDetails", "SageMakerAlgorithmDeliveryOptionDetails")


@dataclass(frozen=True)
class _Field:
    """One key of a DetailsDocument: its kind (str, bool, list, obj), limits and pattern."""

    kind: str
    required: bool = False
    min: int | None = None
    max: int | None = None
    pattern: str | None = None
    fields: Mapping[str, _Field] | None = None  # obj, or a list of obj
    item: _Field | None = None  # a list of str


def _s(required: bool = False, min: int | None = None, max: int | None = None, pattern: str | None = None) -> _Field:
    return _Field("str", required, min, max, pattern)


def _obj(fields: Mapping[str, _Field], required: bool = False) -> _Field:
    return _Field("obj", required, fields=fields)


def _objs(
    fields: Mapping[str, _Field], required: bool = False, min: int | None = None, max: int | None = None
) -> _Field:
    return _Field("list", required, min, max, fields=fields)


_SAMPLE = _obj(
    {
        "RealtimeInferenceText": _s(min=1, max=10000),
        "RealtimeInferenceUrl": _s(max=10000, pattern=_HTTPS_URL),
        "BatchTransformText": _s(min=1, max=10000),
        "BatchTransformUrl": _s(max=10000, pattern=_HTTPS_URL),
    },
    required=True,
)
_PARAMETER = {
    "Name": _s(True, 1, 100, _PRINTABLE),
    "Description": _s(True, 1, 1000),
    "Constraints": _s(min=1, max=1500),
    "Required": _Field("bool"),
}
_INPUT = _obj(
    {
        "Description": _s(True, 1, 10000),
        "Limitations": _s(min=1, max=1000),
        "SampleInput": _SAMPLE,
        "Parameters": _objs(_PARAMETER, max=35),
        "SageMakerCustomAttributes": _objs(_PARAMETER, max=35),
    },
    required=True,
)
_OUTPUT = _obj(
    {
        "Description": _s(True, 1, 10000),
        "SampleOutput": _SAMPLE,
        "Parameters": _objs(
            {"Name": _s(True, 1, 100, _PRINTABLE), "Description": _s(True, 1, 1000), "AlwaysReturned": _Field("bool")},
            max=35,
        ),
    },
    required=True,
)
_COMMON = {
    # ARNs are strings here: their patterns are checked when the change set runs (INVALID_ASSET_ARN,
    # INVALID_ACCESS_ROLE are documented asynchronous codes).
    "AccessRoleArn": _s(True, 1),
    "UsageInstructions": _s(True, 1, 10000),
    "SampleNotebookUrl": _s(True, 1, 2000, _HTTPS_URL),
    "RepositoryUrl": _s(True, 1, 2000, _HTTPS_URL),
    "InputProperties": _INPUT,
    "OutputProperties": _OUTPUT,
}
_PACKAGE_DETAILS = _obj(
    {
        **_COMMON,
        "SageMakerModelPackageArn": _s(True, 1),
        "RecommendedInstanceTypes": _obj(
            {"BatchTransform": _s(True, 1, 24, _INSTANCE_TYPE), "RealtimeInference": _s(True, 1, 24, _INSTANCE_TYPE)},
            required=True,
        ),
    }
)
_ALGORITHM_DETAILS = _obj(
    {
        **_COMMON,
        "SageMakerAlgorithmArn": _s(True, 1),
        "RecommendedInstanceTypes": _obj(
            {
                "BatchTransform": _s(True, 1, 24, _INSTANCE_TYPE),
                "RealtimeInference": _s(True, 1, 24, _INSTANCE_TYPE),
                "Training": _s(min=1, max=24, pattern=_INSTANCE_TYPE),
            },
            required=True,
        ),
    }
)
_ADD_DELIVERY_OPTIONS = {
    "Version": _obj({"VersionTitle": _s(True, 1, 64, _TEXT), "ReleaseNotes": _s(True, 1, 30000, _TEXT)}, required=True),
    "DeliveryOptions": _objs(
        {
            "Details": _obj(
                {
                    "SageMakerModelPackageDeliveryOptionDetails": _PACKAGE_DETAILS,
                    "SageMakerAlgorithmDeliveryOptionDetails": _ALGORITHM_DETAILS,
                },
                required=True,
            )
        },
        required=True,
        min=1,
    ),
}
_RESTRICT_DELIVERY_OPTIONS = {
    "DeliveryOptionIds": _Field("list", True, 1, 50, item=_s(True, 1, 36)),
}


def _check_document(document: Any, fields: Mapping[str, _Field], path: str) -> None:
    problems = list(_document_errors(document, _obj(fields, required=True), path))
    if problems:
        count = f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected in the DetailsDocument: "
        raise ValidationException(count + "; ".join(problems))


def _document_errors(value: Any, spec: _Field, path: str) -> Iterator[str]:
    if spec.kind == "obj":
        if not isinstance(value, Mapping):
            yield f"{path} must be an object"
            return
        assert spec.fields is not None
        for key in value:
            if key not in spec.fields:
                yield f"{path}.{key} is not a known field (known: {', '.join(spec.fields)})"
        for key, member in spec.fields.items():
            if value.get(key) is None:
                if member.required:
                    yield f"{path}.{key} is required"
                continue
            yield from _document_errors(value[key], member, f"{path}.{key}")
    elif spec.kind == "list":
        if not isinstance(value, list):
            yield f"{path} must be a list"
            return
        if spec.min is not None and len(value) < spec.min:
            yield f"{path} must have at least {spec.min} item(s)"
        if spec.max is not None and len(value) > spec.max:
            yield f"{path} must have at most {spec.max} items"
        item = spec.item or (_obj(spec.fields) if spec.fields is not None else None)
        for index, entry in enumerate(value):
            if item is not None:
                yield from _document_errors(entry, item, f"{path}[{index}]")
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            yield f"{path} must be a boolean"
    else:
        if not isinstance(value, str):
            yield f"{path} must be a string"
            return
        if spec.min is not None and len(value) < spec.min:
            yield f"{path} must have length at least {spec.min}"
        if spec.max is not None and len(value) > spec.max:
            yield f"{path} must have length at most {spec.max}"
        if spec.pattern is not None and not re.match(spec.pattern, value):
            yield f"{path} must match {spec.pattern}"


_PRICE = re.compile(r"^\d+(\.\d+)?$")
#: The members of each ML pricing term [API-ml-pricing] (Id: as DescribeEntity may show it, assumed).
_TERM_FIELDS = {
    "UsageBasedPricingTerm": {"Type", "Id", "CurrencyCode", "RateCards"},
    "FreeTrialPricingTerm": {"Type", "Id", "Duration", "Grants"},
    "FixedUpfrontPricingTerm": {"Type", "Id", "CurrencyCode", "Duration", "Price", "Grants"},
}


def _check_pricing_terms(document: Any, where: str) -> None:
    """UpdatePricingTerms' DetailsDocument for ML products, as [API-ml-pricing] lays it out."""
    path = f"{where}.detailsDocument"
    problems: list[str] = []
    if not isinstance(document, Mapping):
        raise ValidationException(f"{path} must be an object")
    problems += [f"{path}.{key} is not a known field" for key in document if key not in ("PricingModel", "Terms")]
    if document.get("PricingModel") not in ("Usage", "Free", "Contract"):
        problems.append(f"{path}.PricingModel must be one of Usage, Free, Contract")
    terms = document.get("Terms")
    if not isinstance(terms, list) or not terms:
        problems.append(f"{path}.Terms is required (a non-empty list)")
        terms = []
    for index, term in enumerate(terms):
        at = f"{path}.Terms[{index}]"
        kind = term.get("Type") if isinstance(term, Mapping) else None
        if kind not in _TERM_FIELDS:
            problems.append(f"{at}.Type must be one of {', '.join(_TERM_FIELDS)}")
            continue
        problems += [f"{at}.{key} is not a known field of {kind}" for key in term if key not in _TERM_FIELDS[kind]]
        if kind in ("UsageBasedPricingTerm", "FixedUpfrontPricingTerm") and term.get("CurrencyCode") != "USD":
            problems.append(f"{at}.CurrencyCode must be USD")
        if kind == "UsageBasedPricingTerm":
            cards = term.get("RateCards")
            if not isinstance(cards, list) or len(cards) != 1 or not isinstance(cards[0], Mapping):
                problems.append(f"{at}.RateCards must hold exactly one RateCard")
                continue
            rates = cards[0].get("RateCard")
            if not isinstance(rates, list):
                problems.append(f"{at}.RateCards[0].RateCard must be a list")
                continue
            for number, rate in enumerate(rates):
                ok = isinstance(rate, Mapping) and set(rate) == {"DimensionKey", "Price"}
                key, price = (
                    (rate.get("DimensionKey"), rate.get("Price")) if isinstance(rate, Mapping) else (None, None)
                )
                if not ok or not isinstance(key, str) or not _PRICE.match(str(price)) or isinstance(price, bool):
                    problems.append(
                        f"{at}.RateCards[0].RateCard[{number}] must be {{DimensionKey, Price}} with a price >= 0"
                    )
                elif not (_DIMENSION_KEY.match(key) or key == PER_INFERENCE):
                    problems.append(
                        f"{at}.RateCards[0].RateCard[{number}].DimensionKey {key} is not INSTANCE_TYPE.m.i.b, "
                        ".m.i.r, .a.t or m.i.c"
                    )
        if kind == "FreeTrialPricingTerm":
            if not isinstance(term.get("Duration"), str):
                problems.append(f"{at}.Duration is required")
            grants = term.get("Grants")
            if not isinstance(grants, list) or not all(
                isinstance(g, Mapping) and g.get("DimensionKey") for g in grants
            ):
                problems.append(f"{at}.Grants must be a list of {{DimensionKey}}")
    if problems:
        count = f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected in the DetailsDocument: "
        raise ValidationException(count + "; ".join(problems))


def _dimension_keys(document: Mapping[str, Any]) -> list[str]:
    return [
        rate["DimensionKey"]
        for term in document.get("Terms") or []
        for card in (term or {}).get("RateCards") or []
        for rate in (card or {}).get("RateCard") or []
    ]


@functools.cache
def _service_model() -> Any:
    return botocore.session.get_session().get_service_model(SERVICE)


def _check_request(operation: str, params: Mapping[str, Any]) -> None:
    """ValidationException for what breaks the operation's input shape in botocore's model
    (every constraint but the patterns, then ParamValidator), as the service checks it."""
    shape: StructureShape = _service_model().operation_model(operation).input_shape
    errors = list(constraint_errors(params, shape, patterns=False))
    if errors:
        count = f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} detected: "
        raise ValidationException(count + "; ".join(errors))
    report = ParamValidator().validate(dict(params), shape)
    if report.has_errors():
        raise ValidationException(report.generate_report())


def _check_catalog(params: Mapping[str, Any]) -> None:
    if params.get("Catalog") != CATALOG:
        raise ValidationException(f"Catalog must be {CATALOG}; got {params.get('Catalog')}.")


def _matches(change_set: ChangeSet, filters: Sequence[Mapping[str, Any]]) -> bool:
    for entry in filters:
        values = entry.get("ValueList") or []
        name = entry.get("Name")
        if name == "EntityId":
            ok = any(_entity_id(v) in change_set.entity_ids() for v in values)
        elif name == "ChangeSetName":
            ok = change_set.name in values
        elif name == "Status":
            ok = change_set.status in values
        else:
            raise ValidationException(f"Unsupported filter name: {name}")
        if not ok:
            return False
    return True


def _entity(
    entity_type: str, entity_id: str, revision: int, arn: str, modified: dt.datetime, document: dict[str, Any]
) -> dict[str, Any]:
    return {
        "EntityType": entity_type,
        "EntityIdentifier": f"{entity_id}@{revision}",
        "EntityArn": arn,
        "LastModifiedDate": _iso(modified),
        "Details": json.dumps(document),
        "DetailsDocument": document,
    }


def _entity_id(identifier: str) -> str:
    """``prod-abc@3`` -> ``prod-abc`` (a change may name the entity's revision)."""
    return identifier.split("@", 1)[0]


def _document(change: Mapping[str, Any]) -> Any:
    if change.get("DetailsDocument") is not None:
        return change["DetailsDocument"]
    return json.loads(change["Details"])


def _iso(moment: dt.datetime) -> str:
    """DateTimeISO8601: ``2018-02-27T13:45:22Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _random_id(length: int) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _product_code(product_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, product_id)).replace("-", "")[:25]

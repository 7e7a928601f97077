"""What the operator keeps of the API's objects: small, immutable views, made once per
object read (Services by the tens of thousands, so slotted, with interned strings)."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from sys import intern
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

from dualstack_operator.api.models import (
    ClusterDualStackPolicySpec,
    DualStackPolicySpec,
    IPFamily,
    LabelSelector,
)
from dualstack_operator.api.names import (
    CLUSTER_KIND,
    IGNORE_ANNOTATION,
    KIND,
    RECREATE_ANNOTATION,
    SERVICE_NAME_LABEL,
)
from dualstack_operator.core.ownership import family_owners


@dataclass(frozen=True, slots=True)
class ServiceView:
    """The few fields of a Service the decision needs: all the operator caches of one.

    Tens of thousands are kept, so it is slotted and its repeated strings (namespace,
    type, label keys and values, families) are interned.
    """

    namespace: str
    name: str
    resource_version: str
    labels: Mapping[str, str]
    ignored: bool
    type: str
    headless: bool
    ip_family_policy: str | None
    ip_families: tuple[str, ...]
    recreate: bool = False  # annotated dualstack.dev/recreate=true (a LoadBalancer's consent)
    # Other field managers holding the family fields through server-side apply, and
    # the one that last wrote them (managedFields).
    applied_by: tuple[str, ...] = ()
    written_by: str | None = None
    # What readiness reads past the family fields (empty for most Services): the pod
    # selector (which NetworkPolicies apply), the LoadBalancer's assigned addresses ("" for
    # an entry with a hostname only), loadBalancerSourceRanges and externalIPs.
    selector: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS)
    lb_ingress: tuple[str, ...] = ()
    source_ranges: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ServiceView:
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        annotations = meta.get("annotations") or {}
        appliers, writer = family_owners(meta.get("managedFields") or ())
        policy = spec.get("ipFamilyPolicy")
        labels = _interned(meta.get("labels"))
        return cls(
            namespace=intern(str(meta.get("namespace", ""))),
            name=str(meta.get("name", "")),
            resource_version=str(meta.get("resourceVersion", "")),
            labels=labels,
            ignored=str(annotations.get(IGNORE_ANNOTATION, "")).lower() == "true",
            type=intern(str(spec.get("type") or "ClusterIP")),
            headless=spec.get("clusterIP") == "None",
            ip_family_policy=intern(str(policy)) if policy else None,
            ip_families=tuple(intern(str(f)) for f in spec.get("ipFamilies") or ()),
            recreate=str(annotations.get(RECREATE_ANNOTATION, "")).lower() == "true",
            applied_by=tuple(intern(m) for m in appliers),
            written_by=intern(writer) if writer else None,
            **_readiness_fields(body, labels),
        )


_NO_LABELS: Mapping[str, str] = MappingProxyType({})
SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"


def _readiness_fields(body: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """What readiness reads (``plan`` judges a single-stack Service on the families it
    will have, so every Service keeps them; most have none of them)."""
    spec = body.get("spec") or {}
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    selector = _interned(spec.get("selector"))
    ranges = spec.get("loadBalancerSourceRanges") or [
        r for r in str(annotations.get(SOURCE_RANGES_ANNOTATION, "")).split(",") if r.strip()
    ]  # the annotation is what older charts set; the field wins
    ingress = ((body.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
    return {
        # Often the labels themselves: one dict for both (tens of thousands are kept).
        "selector": labels if selector == labels else selector or _NO_LABELS,
        "lb_ingress": tuple(str(i.get("ip") or "") for i in ingress),
        "source_ranges": tuple(str(r).strip() for r in ranges),
        "external_ips": tuple(str(a) for a in spec.get("externalIPs") or ()),
    }


def _interned(labels: Mapping[str, Any] | None) -> dict[str, str]:
    return {intern(str(k)): intern(str(v)) for k, v in (labels or {}).items()}


@dataclass(frozen=True, slots=True)
class SliceView:
    service: str
    family: str  # IPv4 or IPv6 (FQDN slices, and slices of no Service, are left out)
    ready: int  # endpoints that are ready (an unset condition counts as ready, as in the API)
    namespace: str = ""
    name: str = ""  # the EndpointSlice's own name

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SliceView | None:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        service = str(labels.get(SERVICE_NAME_LABEL) or "")
        family = str(body.get("addressType") or "")
        if not service or family not in ("IPv4", "IPv6"):
            return None
        ready = sum(
            1
            for e in body.get("endpoints") or []
            if e.get("addresses") and (e.get("conditions") or {}).get("ready") is not False
        )
        return cls(
            intern(service),
            intern(family),
            ready,
            intern(str(meta.get("namespace", ""))),
            str(meta.get("name", "")),
        )

    @classmethod
    def placeholder(cls, body: Mapping[str, Any]) -> SliceView:
        """A slice that counts for no Service, kept so that its deletion is known."""
        meta = body.get("metadata") or {}
        return cls("", "", 0, intern(str(meta.get("namespace", ""))), str(meta.get("name", "")))


@dataclass(frozen=True)
class PolicyView:
    """The fields of a DualStackPolicy the operator indexes."""

    namespace: str
    name: str
    uid: str
    generation: int
    created: str  # RFC 3339; sorts chronologically
    spec: DualStackPolicySpec | None  # None: the stored spec failed validation
    spec_error: str
    status: Mapping[str, Any]
    cluster: bool = False  # a ClusterDualStackPolicy (its namespace is "")

    @property
    def kind(self) -> str:
        return CLUSTER_KIND if self.cluster else KIND

    @functools.cached_property
    def spec_json(self) -> str:
        """The spec as JSON, once per view (a key for what is computed from it)."""
        return self.spec.model_dump_json() if self.spec is not None else ""

    @functools.cached_property
    def selector_json(self) -> str:
        selector = self.spec.service_selector if self.spec is not None else None
        return selector.model_dump_json(exclude_none=True) if selector is not None else ""

    @classmethod
    def from_body(cls, body: Mapping[str, Any], cluster: bool = False) -> PolicyView:
        meta = body.get("metadata") or {}
        spec: DualStackPolicySpec | None = None
        error = ""
        model = ClusterDualStackPolicySpec if cluster else DualStackPolicySpec
        try:
            spec = model.model_validate(body.get("spec") or {})
        except ValueError as err:  # pydantic.ValidationError is a ValueError
            error = str(err).splitlines()[0]
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
            created=str(meta.get("creationTimestamp", "")),
            spec=spec,
            spec_error=error,
            status=dict(body.get("status") or {}),
            cluster=cluster,
        )


@dataclass(frozen=True)
class PeerRecord:
    """One replica's entry in kopf's peering object."""

    identity: str
    priority: int
    lifetime: float  # seconds
    lastseen: datetime.datetime

    def alive(self, now: datetime.datetime) -> bool:
        return self.lastseen + datetime.timedelta(seconds=self.lifetime) > now


@dataclass(frozen=True)
class UserInfo:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


class View(Protocol):
    """What a reflector keeps of one object: small, with its namespace and name."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...


V = TypeVar("V", bound=View)


def families_of(cidrs: Sequence[str]) -> list[IPFamily]:
    """The families of service ranges, in their order (the first is the primary)."""
    out: list[IPFamily] = []
    for cidr in cidrs:
        family = IPFamily.IPV6 if ":" in cidr else IPFamily.IPV4
        if family not in out:
            out.append(family)
    return out


@dataclass(frozen=True, slots=True)
class CidrView:
    """A ServiceCIDR's ranges: the default one, ``kubernetes``, holds the cluster's
    service families (a conversion to dual-stack adds its second range)."""

    name: str
    cidrs: tuple[str, ...]
    namespace: str = ""  # cluster-scoped

    @property
    def families(self) -> list[IPFamily]:
        return families_of(self.cidrs)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CidrView:
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        return cls(str(meta.get("name", "")), tuple(str(c) for c in spec.get("cidrs") or []))


@dataclass(frozen=True)
class Page(Generic[V]):
    items: list[V]
    resource_version: str  # the list's: where the watch starts
    continue_token: str | None


@dataclass(frozen=True)
class WatchEvent(Generic[V]):
    type: str  # ADDED, MODIFIED, DELETED or BOOKMARK
    resource_version: str
    item: V | None  # None for a BOOKMARK

    @property
    def service(self) -> V | None:  # the name the Service cache's callers know
        return self.item


ServicePage = Page[ServiceView]


@dataclass(frozen=True, slots=True)
class NamespaceView:
    """A namespace's labels (cluster policies select namespaces by them)."""

    name: str
    labels: Mapping[str, str]

    @property
    def namespace(self) -> str:
        """A namespace is kept under its own name, so that a change marks it."""
        return self.name

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> NamespaceView:
        meta = body.get("metadata") or {}
        labels = {intern(str(k)): intern(str(v)) for k, v in (meta.get("labels") or {}).items()}
        return cls(intern(str(meta.get("name", ""))), labels)


@dataclass(frozen=True, slots=True)
class NetworkPolicyView:
    """What readiness reads of a NetworkPolicy: which pods it selects and, for its
    ingress, whether a rule admits every source and the ipBlock CIDRs of each rule that
    has any (pod and namespace selectors admit pods of every family: not kept)."""

    namespace: str
    name: str
    pod_selector: LabelSelector | None  # None: a selector the operator cannot read
    ingress: bool  # whether it restricts ingress (policyTypes, or its default)
    rules: tuple[tuple[int, tuple[str, ...]], ...] = ()  # (rule index, ipBlock CIDRs)
    admits_all: bool = False  # an ingress rule without `from`: every source

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> NetworkPolicyView:
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        try:
            selector: LabelSelector | None = LabelSelector.model_validate(
                spec.get("podSelector") or {}
            )
        except ValueError:
            selector = None
        types = spec.get("policyTypes")
        rules = []
        admits_all = False
        for index, rule in enumerate(spec.get("ingress") or ()):
            peers = (rule or {}).get("from")
            if not peers:
                admits_all = True
                continue
            cidrs = tuple(
                str(peer["ipBlock"].get("cidr") or "")
                for peer in peers
                if isinstance(peer, Mapping) and isinstance(peer.get("ipBlock"), Mapping)
            )
            if cidrs:
                rules.append((index, cidrs))
        return cls(
            namespace=intern(str(meta.get("namespace", ""))),
            name=str(meta.get("name", "")),
            pod_selector=selector,
            ingress=not types or "Ingress" in types,  # unset or empty: Ingress
            rules=tuple(rules),
            admits_all=admits_all,
        )

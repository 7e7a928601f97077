"""Recreation without loss (pure): the manifest a Service is created again from, the
journal entry that keeps it, and which Services may be recreated at all."""

from __future__ import annotations

import ipaddress
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dualstack_operator.core.views import ServiceView

# Fields the server allocates or keeps for itself: a new Service gets its own.
_SERVER_META = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)


_ALLOCATED_SPEC = ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy")


# Added by the cloud provider's controller once it has a load balancer: not ours to copy.
_SERVER_FINALIZERS = ("service.kubernetes.io/load-balancer-cleanup",)


def recreated_manifest(service: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The Service to create again: all of it but the allocated fields, with ``fields`` set.

    Labels, annotations, owner references, ports with their nodePorts, selector,
    session affinity, traffic policies, publishNotReadyAddresses... are kept as
    they are. The clusterIPs are left to the server here; ``with_addresses`` asks for
    the ones to keep.
    """
    meta = {k: v for k, v in (service.get("metadata") or {}).items() if k not in _SERVER_META}
    finalizers = [f for f in meta.pop("finalizers", None) or [] if f not in _SERVER_FINALIZERS]
    if finalizers:
        meta["finalizers"] = finalizers
    spec = {k: v for k, v in (service.get("spec") or {}).items() if k not in _ALLOCATED_SPEC}
    spec.update(fields)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def kept_addresses(service: Mapping[str, Any], families: Sequence[str]) -> dict[str, str]:
    """family -> the old ClusterIP of each family the new Service keeps: the addresses
    clients already know (the primary family is what changes, not the rest)."""
    ips = (service.get("spec") or {}).get("clusterIPs") or []
    kept: dict[str, str] = {}
    for ip in ips:
        try:
            family = f"IPv{ipaddress.ip_address(ip).version}"
        except ValueError:  # "None" (headless) or garbage: nothing to keep
            continue
        if family in families:
            kept.setdefault(family, ip)
    return kept


def static_address(cidr: str, rng: random.Random) -> str:
    """An address of ``cidr`` for a Service that chooses its own: in the lower band
    the allocator keeps for static addresses (KEP-3070: size/16, between 16 and 256), so
    it does not race the dynamic allocations; never the network or broadcast address."""
    net = ipaddress.ip_network(cidr, strict=False)
    hosts = net.num_addresses - (2 if net.version == 4 else 1)
    band = max(1, min(hosts, max(16, min(256, net.num_addresses // 16))))
    return str(net.network_address + rng.randint(1, band))


def with_addresses(manifest: Mapping[str, Any], addresses: Sequence[str]) -> dict[str, Any]:
    """The manifest asking for ``addresses`` (in ipFamilies' order), or for none."""
    spec = {k: v for k, v in manifest["spec"].items() if k not in ("clusterIP", "clusterIPs")}
    if addresses:
        spec["clusterIP"], spec["clusterIPs"] = addresses[0], list(addresses)
    return {**manifest, "spec": spec}


_NOT_ALLOCATED = re.compile(r"failed to allocate IP ([0-9A-Fa-f:.]+?)(?::\s|$)")


def refused_address(message: str, addresses: Sequence[str]) -> str | None:
    """Which of ``addresses`` the API server could not allocate (already allocated, or
    outside the range), from its 422 message; None if the refusal is about something else."""
    found = _NOT_ALLOCATED.search(message)
    if found and found.group(1) in addresses:
        return found.group(1)
    return None


def journal_name(namespace: str, name: str) -> str:
    return f"recreate.{namespace}.{name}"


@dataclass(frozen=True)
class Entry:
    """One journaled recreation: the manifest to create, and the Service it replaces."""

    namespace: str
    service: str
    policy: str
    old_uid: str
    manifest: dict[str, Any]
    policy_kind: str = "DualStackPolicy"  # or ClusterDualStackPolicy
    kept: tuple[str, ...] = ()  # old ClusterIPs the manifest asks for again

    @property
    def addresses(self) -> list[str]:
        return list(self.manifest["spec"].get("clusterIPs") or [])

    @classmethod
    def of(cls, configmap: Mapping[str, Any]) -> Entry:
        data = configmap.get("data") or {}
        manifest = json.loads(data["manifest"])
        meta = manifest["metadata"]
        return cls(
            meta["namespace"],
            meta["name"],
            data.get("policy", ""),
            data["uid"],
            manifest,
            data.get("policyKind", "DualStackPolicy"),
            tuple(json.loads(data.get("kept") or "[]")),
        )


@dataclass(frozen=True)
class Outcome:
    """What one attempt at ``entry`` did: ``done`` once the new Service exists (or the
    name is someone else's); a message either way."""

    entry: Entry
    done: bool
    message: str
    created: dict[str, Any] | None = None
    fallback: str = ""  # why the kept addresses could not be had, if they could not

    @property
    def addresses(self) -> str:
        """kept (the surviving family's ClusterIP), new (it could not be kept: see
        ``fallback``) or none (no family survives): the metric's label."""
        if self.fallback:
            return "new"
        return "kept" if self.entry.kept else "none"


RECREATABLE_TYPES = ("ClusterIP", "NodePort")


def recreation_risk(svc: ServiceView) -> str:
    """What a user loses when this Service is deleted and created again."""
    kept = (
        "a short gap; the ClusterIPs of the families it keeps are asked for again, "
        "spec.clusterIP becomes the new primary's"
    )
    if svc.type == "LoadBalancer":
        risk = f"{kept}; the external address may change"
        if not svc.recreate:
            risk += " (recreated only with dualstack.dev/recreate=true on the Service)"
        return risk
    if svc.type == "NodePort":
        return f"{kept}; nodePorts kept"
    return kept


def recreatable(svc: ServiceView) -> bool:
    """Whether the operator may recreate this Service (given a Recreate policy)."""
    return not svc.headless and (
        svc.type in RECREATABLE_TYPES or (svc.type == "LoadBalancer" and svc.recreate)
    )


def describe_fields(policy: str | None, families: Sequence[str]) -> str:
    """ipFamilyPolicy [families], as the plan and the recreation Events print them."""
    return f"{policy or '-'} [{', '.join(families)}]"


@dataclass(frozen=True)
class Unavailable:
    """Why recreation cannot work on this cluster (found before start): the reason and
    message of the RecreateAvailable condition of every policy that asks for it."""

    reason: str  # a ConditionReason: MissingRights or JournalNamespaceMissing
    message: str

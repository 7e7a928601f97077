"""Recreation without loss (pure): the manifest a Service is created again from, the
journal entry that keeps it, and which Services may be recreated at all."""

from __future__ import annotations

import json
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
    they are; clusterIPs are left to the server (that is the point).
    """
    meta = {k: v for k, v in (service.get("metadata") or {}).items() if k not in _SERVER_META}
    finalizers = [f for f in meta.pop("finalizers", None) or [] if f not in _SERVER_FINALIZERS]
    if finalizers:
        meta["finalizers"] = finalizers
    spec = {k: v for k, v in (service.get("spec") or {}).items() if k not in _ALLOCATED_SPEC}
    spec.update(fields)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


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
        )


@dataclass(frozen=True)
class Outcome:
    """What one attempt at ``entry`` did: ``done`` once the new Service exists (or the
    name is someone else's); a message either way."""

    entry: Entry
    done: bool
    message: str
    created: dict[str, Any] | None = None


RECREATABLE_TYPES = ("ClusterIP", "NodePort")


def recreation_risk(svc: ServiceView) -> str:
    """What a user loses when this Service is deleted and created again."""
    if svc.type == "LoadBalancer":
        risk = "new clusterIPs; the external address may change"
        if not svc.recreate:
            risk += " (recreated only with dualstack.dev/recreate=true on the Service)"
        return risk
    if svc.type == "NodePort":
        return "new clusterIPs; nodePorts kept"
    return "new clusterIPs: clients that hard-code the old ones break"


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

    reason: str  # MissingRights or JournalNamespaceMissing
    message: str

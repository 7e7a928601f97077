"""ClusterDualStackPolicy: which namespaces it governs, and its status across them (pure).

A namespace's own DualStackPolicies always take precedence; without any, the
cluster policies whose namespaceSelector matches the namespace govern it, and
``plan.plan_namespace`` picks the oldest for each Service, as it does for
namespaced policies. A cluster policy's status sums what the passes over its
namespaces concluded.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dualstack_operator.api.models import (
    DRIFT_LIST_LIMIT,
    ClusterDriftEntry,
    ClusterDualStackPolicySpec,
    ClusterDualStackPolicyStatus,
    DriftReason,
    IPFamily,
)
from dualstack_operator.core.decision import State, selects
from dualstack_operator.core.plan import PolicyPlan, admission_path, condition, outcome_conditions
from dualstack_operator.core.views import PolicyView
from dualstack_operator.runtime.settings import Admission

# Never governed by a cluster policy without a namespaceSelector (nor the operator's own).
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
NAME_LABEL = "kubernetes.io/metadata.name"


def governs(
    policy: PolicyView, namespace: str, labels: Mapping[str, str], own_namespace: str | None
) -> bool:
    """Whether this cluster policy selects this namespace."""
    spec = policy.spec
    if not isinstance(spec, ClusterDualStackPolicySpec):
        return False
    if spec.namespace_selector is None:
        return namespace not in SYSTEM_NAMESPACES and namespace != own_namespace
    return selects(spec.namespace_selector, {NAME_LABEL: namespace, **labels})


def effective_policies(
    own: Sequence[PolicyView],
    cluster: Iterable[PolicyView],
    namespace: str,
    labels: Mapping[str, str],
    own_namespace: str | None,
) -> list[PolicyView]:
    """The policies that govern a namespace: its own if it has any, else the cluster's."""
    if own:
        return list(own)
    return [p for p in cluster if governs(p, namespace, labels, own_namespace)]


def build_cluster_status(
    policy: PolicyView,
    parts: Mapping[str, PolicyPlan],
    cluster: Sequence[IPFamily],
    admission: Admission | None = None,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """The status of a cluster policy from its settled plan in each governed namespace."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous, generation = policy.status, policy.generation
    if policy.spec is None:
        invalid = condition(
            "Ready", "False", "InvalidSpec", policy.spec_error, generation, previous, stamp
        )
        status = ClusterDualStackPolicyStatus(observedGeneration=generation, conditions=[invalid])
        return status.model_dump(mode="json", by_alias=True, exclude_none=True)
    compliant = drifted = excluded = 0
    drift: list[tuple[str, str, DriftReason, str]] = []
    for ns in sorted(parts):
        summary = parts[ns].summary()
        compliant, drifted = compliant + summary.compliant, drifted + summary.drifted
        excluded += summary.excluded
        for name, d in sorted(parts[ns].decisions.items()):
            if d.state == State.DRIFTED:
                drift.append((ns, name, d.reason or DriftReason.CONFLICT, d.message))
    matched = compliant + drifted
    where = f" in {len(parts)} namespaces"
    ready, compliance = outcome_conditions(len(drift), matched, where, policy, stamp)
    status = ClusterDualStackPolicyStatus(
        observedGeneration=generation,
        clusterIPFamilies=list(cluster),
        governedNamespaces=len(parts),
        matchedServices=matched,
        compliantServices=compliant,
        driftedServices=drifted,
        excludedServices=excluded,
        drift=[
            ClusterDriftEntry(namespace=ns, service=name, reason=reason, message=message)
            for ns, name, reason, message in drift[:DRIFT_LIST_LIMIT]
        ],
        admission=admission_path(policy.spec.mode, admission),
        conditions=[ready, compliance],
    )
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)

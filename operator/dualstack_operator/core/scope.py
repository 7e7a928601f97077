"""ClusterDualStackPolicy: which namespaces it governs, and its status across them (pure).

A namespace's own DualStackPolicies always take precedence; without any, the
cluster policies whose namespaceSelector matches the namespace govern it, and
``plan.plan_namespace`` picks the oldest for each Service, as it does for
namespaced policies. A cluster policy's status sums what the passes over its
namespaces concluded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from dualstack_operator.api.models import (
    ClusterDualStackPolicySpec,
)
from dualstack_operator.api.names import NAMESPACE_NAME_LABEL, SYSTEM_NAMESPACES
from dualstack_operator.core.decision import selects
from dualstack_operator.core.views import PolicyView

# Never governed by a cluster policy without a namespaceSelector (nor the operator's own).


def governs(
    policy: PolicyView, namespace: str, labels: Mapping[str, str], own_namespace: str | None
) -> bool:
    """Whether this cluster policy selects this namespace."""
    spec = policy.spec
    if not isinstance(spec, ClusterDualStackPolicySpec):
        return False
    if spec.namespace_selector is None:
        return namespace not in SYSTEM_NAMESPACES and namespace != own_namespace
    return selects(spec.namespace_selector, {NAMESPACE_NAME_LABEL: namespace, **labels})


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

"""Which policies govern a namespace (pure; the reconciler, the webhook and the plan ask).

A namespace's own DualStackPolicies always take precedence; without any, the
cluster policies whose namespaceSelector matches the namespace govern it, and
``plan.plan_namespace`` picks the oldest for each Service, as it does for
namespaced policies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from dualstack_operator.api.models import (
    ClusterDualStackPolicySpec,
)
from dualstack_operator.api.names import NAMESPACE_NAME_LABEL, SYSTEM_NAMESPACES
from dualstack_operator.core.decision import selects
from dualstack_operator.core.views import PolicyView


def governs(
    policy: PolicyView, namespace: str, labels: Mapping[str, str], own_namespace: str | None
) -> bool:
    """Whether this cluster policy selects this namespace (one without a namespaceSelector
    governs every namespace but the system ones and the operator's own)."""
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
    watched: Sequence[str] = (),
) -> list[PolicyView]:
    """The policies that govern a namespace: its own if it has any, else the cluster's
    (only in the ``watched`` namespaces of an operator that watches some)."""
    if own or (watched and namespace not in watched):
        return list(own)
    return [p for p in cluster if governs(p, namespace, labels, own_namespace)]

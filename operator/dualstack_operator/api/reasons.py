"""Every Event reason, condition type and condition reason the operator writes, once.

Users grep for these, alert on them and link to docs/reference/reasons.md by them, so
they are a contract like the drift reasons (``models.DriftReason``). An Event's reason
is an ``EventReason``, a ``DriftReason`` (a rejected patch, a reverted fix, a readiness
finding: the Event says the Service's drift) or a ``ConditionReason`` (a policy's
condition changed, or the cluster DNS Service's finding came or went).
"""

from __future__ import annotations

from enum import StrEnum

from dualstack_operator.api.models import DriftReason


class EventReason(StrEnum):
    """Events that report an action, not a drift or a condition (their own reasons)."""

    REMEDIATED = "Remediated"  # Normal, on the Service: patched to match its policy
    RECREATED = "Recreated"  # Normal, on the Service and its policy: deleted, created again
    RECREATE_BLOCKED = "RecreateBlocked"  # Warning, on the policy: recreation refused
    RECREATE_FAILED = "RecreateFailed"  # Warning, on the policy: to be tried again


class ConditionType(StrEnum):
    """The conditions the operator owns in a policy's status (others' are left alone)."""

    READY = "Ready"
    COMPLIANT = "Compliant"
    RECREATE_AVAILABLE = "RecreateAvailable"  # only under primaryFamilyChange: Recreate
    CLUSTER_DNS = "ClusterDNS"  # only on a dual-stack cluster


class ConditionReason(StrEnum):
    """Why a condition has its status; also the reason of the Event when it changes."""

    RECONCILING = "Reconciling"  # Ready True
    INVALID_SPEC = "InvalidSpec"  # Ready False
    ALL_COMPLIANT = "AllCompliant"  # Compliant True
    DRIFT_DETECTED = "DriftDetected"  # Compliant False
    AVAILABLE = "Available"  # RecreateAvailable True
    MISSING_RIGHTS = "MissingRights"  # RecreateAvailable False
    JOURNAL_NAMESPACE_MISSING = "JournalNamespaceMissing"  # RecreateAvailable False
    CLUSTER_DNS_DUAL_STACK = "ClusterDNSDualStack"  # ClusterDNS True
    CLUSTER_DNS_SINGLE_STACK = "ClusterDNSSingleStack"  # ClusterDNS False (a finding)


# What an Event's reason can be (Events.post takes nothing else).
Reason = EventReason | DriftReason | ConditionReason

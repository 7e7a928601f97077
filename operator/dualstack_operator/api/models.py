"""pydantic models of the DualStackPolicy API: the single source of truth for the CRD.

``crds/dualstackpolicy.yaml`` is generated from these (``make crds``); field
descriptions become ``kubectl explain`` text, and the CEL rules attached here are
enforced by the API server at ``kubectl apply`` time.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_ADMISSION_POLICIES = 32  # policies one namespace's admission table can chain
DRIFT_LIST_LIMIT = 50


class IPFamily(StrEnum):
    IPV4 = "IPv4"
    IPV6 = "IPv6"


class IPFamilyPolicy(StrEnum):
    SINGLE_STACK = "SingleStack"
    PREFER_DUAL_STACK = "PreferDualStack"
    REQUIRE_DUAL_STACK = "RequireDualStack"


class Mode(StrEnum):
    ENFORCE = "Enforce"
    AUDIT = "Audit"


class AdmissionPath(StrEnum):
    """How new Services meet a policy at creation (status.admission)."""

    MUTATING_ADMISSION_POLICY = "MutatingAdmissionPolicy"
    VALIDATING_ADMISSION_POLICY = "ValidatingAdmissionPolicy"
    WEBHOOK = "Webhook"


class FieldConflicts(StrEnum):
    RESPECT = "Respect"
    FORCE = "Force"


class PrimaryFamilyChange(StrEnum):
    REPORT = "Report"
    RECREATE = "Recreate"


class DriftReason(StrEnum):
    """Why a governed Service does not match its policy (a closed set; a metric label)."""

    MISSING_FAMILY = "MissingFamily"
    EXTRA_FAMILY = "ExtraFamily"
    POLICY_MISMATCH = "PolicyMismatch"
    PRIMARY_FAMILY_MISMATCH = "PrimaryFamilyMismatch"
    CLUSTER_NOT_DUAL_STACK = "ClusterNotDualStack"
    FAMILY_NOT_IN_CLUSTER = "FamilyNotInCluster"
    PATCH_REJECTED = "PatchRejected"
    CONFLICT = "Conflict"
    MANAGED_BY_OTHER = "ManagedByOther"  # the fields are applied by a GitOps source of truth
    REVERTED = "Reverted"  # someone keeps undoing the operator's fix: it stopped writing
    MISSING_ENDPOINTS = "MissingEndpoints"  # a family has no ready endpoint: reported only
    # Readiness past the Service's family fields (core.readiness): reported only.
    MISSING_LOAD_BALANCER_ADDRESS = "MissingLoadBalancerAddress"
    SOURCE_RANGES_ONE_FAMILY = "SourceRangesOneFamily"
    EXTERNAL_IPS_ONE_FAMILY = "ExternalIPsOneFamily"
    NETWORK_POLICY_ONE_FAMILY = "NetworkPolicyOneFamily"


# Kubernetes label syntax: an optional DNS-subdomain prefix and "/", then a name of at
# most 63 characters; values are empty or such a name. The API server refuses others on
# its own kinds, and so does this CRD (at `kubectl apply`).
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]
_CEL_LABEL_KEY = LABEL_KEY.replace("\\", "\\\\")  # inside a CEL string literal


def _schema_extra(**extra: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra=extra, populate_by_name=True)


class LabelSelectorRequirement(BaseModel):
    model_config = _schema_extra(
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "self.operator in ['In', 'NotIn'] ? "
                    "(has(self.values) && size(self.values) > 0) : "
                    "(!has(self.values) || size(self.values) == 0)",
                    "message": "In and NotIn need at least one value; "
                    "Exists and DoesNotExist take no values",
                }
            ]
        }
    )

    key: str = Field(min_length=1, max_length=317, pattern=LABEL_KEY, description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values."
    )
    values: list[LabelValue] | None = Field(
        default=None, max_length=64, description="Values for In and NotIn."
    )


class LabelSelector(BaseModel):
    """A metav1.LabelSelector: the requirements are ANDed."""

    model_config = ConfigDict(populate_by_name=True)

    @field_validator("match_labels")
    @classmethod
    def _label_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if len(key) > 317 or not re.match(LABEL_KEY, key):
                raise ValueError(f"invalid label key {key!r}")
        return value

    match_labels: dict[str, LabelValue] | None = Field(
        default=None,
        alias="matchLabels",
        max_length=64,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.all(k, size(k) <= 317 && k.matches('{_CEL_LABEL_KEY}'))",
                    "message": "label keys are an optional DNS-subdomain prefix and '/', "
                    "then a name of at most 63 alphanumerics, '-', '_' or '.'",
                }
            ]
        },
        description="Labels the object must carry, each with exactly this value.",
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None,
        alias="matchExpressions",
        max_length=32,
        description="Set-based label requirements.",
    )


class DualStackPolicySpec(BaseModel):
    """The IP-family intent for the Services of one namespace."""

    model_config = _schema_extra(
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.ipFamilies) || self.ipFamilyPolicy != 'SingleStack'"
                    " || size(self.ipFamilies) == 1",
                    "message": "SingleStack takes exactly one IP family",
                },
                {
                    "rule": "!has(self.ipFamilies) || self.ipFamilyPolicy != 'RequireDualStack'"
                    " || size(self.ipFamilies) == 2",
                    "message": "RequireDualStack needs both IP families "
                    "(or none, to keep each Service's primary)",
                },
            ]
        }
    )

    ip_family_policy: IPFamilyPolicy = Field(
        alias="ipFamilyPolicy",
        description="The ipFamilyPolicy every governed Service gets: SingleStack, "
        "PreferDualStack (dual-stack where the cluster offers it) or RequireDualStack.",
    )
    ip_families: list[IPFamily] | None = Field(
        default=None,
        alias="ipFamilies",
        min_length=1,
        max_length=2,
        description="Families in order of preference; the first is the primary. "
        "Absent: each Service keeps its primary family and gains the cluster's other "
        "one. The primary of a Service with a ClusterIP cannot change in place: such "
        "Services are reported as PrimaryFamilyMismatch, and recreated only with "
        "primaryFamilyChange: Recreate.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "size(self) < 2 || self[0] != self[1]",
                    "message": "ipFamilies must not repeat a family",
                }
            ]
        },
    )
    mode: Mode = Field(
        default=Mode.ENFORCE,
        description="Enforce patches Services to match; Audit only reports drift "
        "and never writes to a Service.",
    )
    primary_family_change: PrimaryFamilyChange = Field(
        default=PrimaryFamilyChange.REPORT,
        alias="primaryFamilyChange",
        description="What to do with a Service whose primary family is wrong (it cannot "
        "change in place): Report it as PrimaryFamilyMismatch (default), or Recreate it: "
        "delete it and create it again with the policy's families, keeping everything "
        "else (its manifest is journaled first). ClusterIP and NodePort Services only; "
        "a LoadBalancer only when it carries dualstack.dev/recreate=true itself, since "
        "its external address may change. Enforce only.",
    )
    max_recreations_per_hour: int = Field(
        default=10,
        alias="maxRecreationsPerHour",
        ge=1,
        le=1000,
        description="At most this many recreations per hour under this policy "
        "(one at a time per namespace).",
    )
    field_conflicts: FieldConflicts = Field(
        default=FieldConflicts.RESPECT,
        alias="fieldConflicts",
        description="When another field manager holds ipFamilyPolicy or ipFamilies "
        "through server-side apply (a GitOps source of truth): Respect leaves them and "
        "reports ManagedByOther naming it; Force takes them over once (its next apply "
        "then fails with a conflict unless forced).",
    )
    service_selector: LabelSelector | None = Field(
        default=None,
        alias="serviceSelector",
        description="Which Services of the namespace this policy governs; absent "
        "selects all. Services annotated dualstack.dev/ignore=true and ExternalName "
        "Services are never touched.",
    )


class ClusterDualStackPolicySpec(DualStackPolicySpec):
    """The IP-family intent for the Services of every namespace it selects."""

    namespace_selector: LabelSelector | None = Field(
        default=None,
        alias="namespaceSelector",
        description="Which namespaces this policy governs (their labels; "
        "kubernetes.io/metadata.name is the name). Absent: every namespace but "
        "kube-system, kube-public, kube-node-lease and the operator's own. A namespace "
        "with a DualStackPolicy of its own is governed by that one only.",
    )


class DriftEntry(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    service: str = Field(description="The Service's name.")
    reason: DriftReason = Field(description="Why it does not match.")
    message: str = Field(description="What differs and what, if anything, the user must do.")


class Condition(BaseModel):
    """A metav1.Condition."""

    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(
        description="Ready, Compliant, RecreateAvailable (policies asking for "
        "primaryFamilyChange: Recreate: False when a right or the journal namespace is "
        "missing), or ClusterDNS (a dual-stack cluster: False while kube-dns has one family)."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Whether it holds.")
    reason: str = Field(description="A CamelCase reason (docs/reference/reasons.md).")
    message: str = Field(default="", description="What it means here, for a person.")
    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", description="The spec generation it is for."
    )
    last_transition_time: str = Field(
        alias="lastTransitionTime",
        description="When the status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )


class DualStackPolicyStatus(BaseModel):
    """What the operator observed; recomputed from the cluster on every pass."""

    model_config = ConfigDict(populate_by_name=True)

    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", description="The spec generation acted on."
    )
    cluster_ip_families: list[IPFamily] | None = Field(
        default=None,
        alias="clusterIPFamilies",
        description="The families the cluster's service network offers, primary first.",
    )
    families: str | None = Field(
        default=None,
        description="What `kubectl get` shows as FAMILIES, comma-separated: the spec's "
        "ipFamilies as written; without them, what a new Service gets on this cluster "
        "(the cluster's families, primary first; one for SingleStack). An existing "
        "Service keeps its own primary where the spec names none.",
    )
    matched_services: int | None = Field(
        default=None, alias="matchedServices", description="Services this policy selects."
    )
    compliant_services: int | None = Field(
        default=None, alias="compliantServices", description="Matched Services that match it."
    )
    drifted_services: int | None = Field(
        default=None,
        alias="driftedServices",
        description="Matched Services that do not (status.drift says why).",
    )
    excluded_services: int | None = Field(
        default=None,
        alias="excludedServices",
        description="Selected, but ExternalName or opted out (dualstack.dev/ignore).",
    )
    drift: list[DriftEntry] | None = Field(
        default=None,
        max_length=DRIFT_LIST_LIMIT,
        description=f"The first {DRIFT_LIST_LIMIT} drifted Services by name.",
    )
    admission: AdmissionPath | None = Field(
        default=None,
        description="How new Services meet this policy when created: "
        "MutatingAdmissionPolicy (Enforce) or ValidatingAdmissionPolicy (Audit: a "
        "warning), applied by the API server itself, or the operator's Webhook. "
        "Absent: no admission; the reconciler fixes new Services after the fact.",
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Ready, Compliant, RecreateAvailable (for primaryFamilyChange: "
        "Recreate) and, on a dual-stack cluster, ClusterDNS (whether kube-dns serves both).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class DualStackPolicy(BaseModel):
    """A namespace's IP-family intent; every Service it selects is made to match it."""

    model_config = ConfigDict(populate_by_name=True)

    spec: DualStackPolicySpec
    status: DualStackPolicyStatus | None = None


class ClusterDriftEntry(DriftEntry):
    namespace: str = Field(description="The Service's namespace.")


class ClusterDualStackPolicyStatus(DualStackPolicyStatus):
    """What the operator observed across the namespaces the policy governs."""

    governed_namespaces: int | None = Field(
        default=None,
        alias="governedNamespaces",
        description="Namespaces this policy governs (selected, without a policy of their own).",
    )
    drift: list[ClusterDriftEntry] | None = Field(  # type: ignore[assignment]
        default=None,
        max_length=DRIFT_LIST_LIMIT,
        description=f"The first {DRIFT_LIST_LIMIT} drifted Services by namespace and name.",
    )


class ClusterDualStackPolicy(BaseModel):
    """Cluster-wide IP-family intent: a DualStackPolicy for every namespace it selects."""

    model_config = ConfigDict(populate_by_name=True)

    spec: ClusterDualStackPolicySpec
    status: ClusterDualStackPolicyStatus | None = None


class AdmissionPolicy(BaseModel):
    """One policy of a namespace's chain: the oldest whose selector matches governs."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(max_length=253, description="The policy's name (the table's key prefix).")
    service_selector: LabelSelector | None = Field(
        default=None,
        alias="serviceSelector",
        description="The policy's serviceSelector; absent selects every Service.",
    )


class AdmissionTable(BaseModel):
    """One policy's answers: each distinct answer once, and the shapes by index into them."""

    answers: list[str] = Field(
        max_length=128,
        description="Enforce: '<ipFamilyPolicy>/<ipFamilies, comma-separated>' to set; "
        "Audit: the warning.",
    )
    shapes: dict[str, int] = Field(
        description="By '<ipFamilyPolicy>/<ipFamilies>/<families of the ClusterIPs it "
        "chose>' of a new Service: the index of its answer."
    )


class DualStackAdmissionSpec(BaseModel):
    """A namespace's policies compiled for the API server's own admission."""

    model_config = ConfigDict(populate_by_name=True)

    policies: list[AdmissionPolicy] = Field(
        max_length=MAX_ADMISSION_POLICIES,
        description="The namespace's governing policies, oldest first.",
    )
    mutations: dict[str, AdmissionTable] | None = Field(
        default=None,
        description="By Enforce policy: the fields it sets on a new Service of each shape.",
    )
    warnings: dict[str, AdmissionTable] | None = Field(
        default=None,
        description="By Audit policy: what it warns of a stored Service of each shape.",
    )


class DualStackAdmission(BaseModel):
    """Written by the operator, one per governed namespace: the parameter its native
    MutatingAdmissionPolicy and ValidatingAdmissionPolicy read there. Do not edit: the
    namespace's DualStackPolicies (or ClusterDualStackPolicies) are the source."""

    model_config = ConfigDict(populate_by_name=True)

    spec: DualStackAdmissionSpec


class Admission(StrEnum):
    """The mechanism that makes new Services born compliant (``run --admission``)."""

    POLICY = "policy"  # native MutatingAdmissionPolicies, applied by the API server
    WEBHOOK = "webhook"  # the operator's mutating webhook

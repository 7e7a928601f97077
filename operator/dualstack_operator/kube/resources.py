"""The resources the operator reads and writes, described once (as lightkube does): where
each lives in the API, and for those it lists and watches, what it keeps of an item."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic

from dualstack_operator.api import names
from dualstack_operator.core.views import (
    CidrView,
    NamespaceView,
    NetworkPolicyView,
    PolicyView,
    ServiceView,
    SliceView,
    V,
)


@dataclass(frozen=True)
class Resource:
    """A REST resource: its group/version, plural, kind and scope."""

    group_version: str  # "v1" or "<group>/<version>"
    plural: str
    kind: str
    namespaced: bool = True

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str = ""
    ) -> str:
        prefix = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        where = f"/namespaces/{namespace}" if namespace and self.namespaced else ""
        tail = f"/{name}" if name else ""
        sub = f"/{subresource}" if subresource else ""
        return f"{prefix}{where}/{self.plural}{tail}{sub}"


@dataclass(frozen=True)
class Collection(Generic[V]):
    """A resource the operator lists and watches, and the view it keeps of each item."""

    resource: Resource
    view: Callable[[Mapping[str, Any]], V]

    def path(self, namespace: str | None) -> str:
        return self.resource.path(namespace)


ADMISSION = "admissionregistration.k8s.io/v1"

SERVICES_RESOURCE = Resource("v1", "services", "Service")
CONFIGMAPS = Resource("v1", "configmaps", "ConfigMap")
EVENTS = Resource("v1", "events", "Event")
NAMESPACES_RESOURCE = Resource("v1", "namespaces", "Namespace", namespaced=False)
ENDPOINT_SLICES_RESOURCE = Resource("discovery.k8s.io/v1", "endpointslices", "EndpointSlice")
NETWORK_POLICIES_RESOURCE = Resource("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy")
SERVICE_CIDRS = Resource("networking.k8s.io/v1", "servicecidrs", "ServiceCIDR", namespaced=False)
POLICIES_RESOURCE = Resource(names.API_VERSION, names.PLURAL, names.KIND)
CLUSTER_POLICIES_RESOURCE = Resource(
    names.API_VERSION, names.CLUSTER_PLURAL, names.CLUSTER_KIND, namespaced=False
)
ADMISSION_PARAMETERS = Resource(names.API_VERSION, names.ADMISSION_PLURAL, names.ADMISSION_KIND)
WEBHOOK_CONFIGURATIONS = Resource(
    ADMISSION, "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", namespaced=False
)
# The four kinds of native admission objects, by kind.
ADMISSION_OBJECTS = {
    kind: Resource(ADMISSION, plural, kind, namespaced=False)
    for kind, plural in (
        ("MutatingAdmissionPolicy", "mutatingadmissionpolicies"),
        ("MutatingAdmissionPolicyBinding", "mutatingadmissionpolicybindings"),
        ("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
        ("ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings"),
    )
}
PEERINGS = Resource("kopf.dev/v1", "kopfpeerings", "KopfPeering")
CLUSTER_PEERINGS = Resource("kopf.dev/v1", "clusterkopfpeerings", "ClusterKopfPeering", False)
SELF_SUBJECT_ACCESS_REVIEWS = Resource(
    "authorization.k8s.io/v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False
)
SUBJECT_ACCESS_REVIEWS = Resource(
    "authorization.k8s.io/v1", "subjectaccessreviews", "SubjectAccessReview", False
)
TOKEN_REVIEWS = Resource("authentication.k8s.io/v1", "tokenreviews", "TokenReview", False)

SERVICES = Collection(SERVICES_RESOURCE, ServiceView.from_body)
POLICIES = Collection(POLICIES_RESOURCE, PolicyView.from_body)
CLUSTER_POLICIES = Collection(
    CLUSTER_POLICIES_RESOURCE, lambda body: PolicyView.from_body(body, cluster=True)
)
NAMESPACES = Collection(NAMESPACES_RESOURCE, NamespaceView.from_body)
SERVICE_CIDR_RANGES = Collection(SERVICE_CIDRS, CidrView.from_body)
# Every slice is kept (one of no Service as a placeholder), so that its deletion is known.
ENDPOINT_SLICES = Collection(
    ENDPOINT_SLICES_RESOURCE,
    lambda body: SliceView.from_body(body) or SliceView.placeholder(body),
)
# NetworkPolicies, for the ipBlocks of their ingress rules (readiness).
NETWORK_POLICIES = Collection(NETWORK_POLICIES_RESOURCE, NetworkPolicyView.from_body)

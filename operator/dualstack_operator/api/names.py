"""Every name the operator shares with the cluster, once: its API group and kinds, the
labels and annotations it reads or sets, its field manager, the system namespaces."""

from __future__ import annotations

# The project's API (dualstack.dev/v1alpha1).
GROUP = "dualstack.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DualStackPolicy"
PLURAL = "dualstackpolicies"
SINGULAR = "dualstackpolicy"
SHORT_NAMES = ["dsp"]
CLUSTER_KIND = "ClusterDualStackPolicy"
CLUSTER_PLURAL = "clusterdualstackpolicies"
CLUSTER_SINGULAR = "clusterdualstackpolicy"
CLUSTER_SHORT_NAMES = ["cdsp"]
ADMISSION_KIND = "DualStackAdmission"
ADMISSION_PLURAL = "dualstackadmissions"
ADMISSION_SINGULAR = "dualstackadmission"

# The operator itself: its field manager (server-side apply and updates), the component of
# its Events, the value of managed-by on what it owns, its webhook configuration's name.
NAME = "dualstack-operator"
FIELD_MANAGER = NAME
DEFAULT_NAMESPACE = "dualstack-system"  # where it is installed (and journals recreations)

# Labels and annotations.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"  # = NAME on every object it owns
APP_NAME_LABEL = "app.kubernetes.io/name"
OWNED_NAMESPACE_LABEL = f"{GROUP}/namespace"  # which namespace an object of ours serves
JOURNAL_LABEL = f"{GROUP}/journal"  # "recreate"; "superseded" once the name was taken
HASH_ANNOTATION = f"{GROUP}/spec-hash"  # what an object of ours was written from
PROBE_LABEL = f"{GROUP}/admission-probe"  # the operator's dry-run probes of admission
WARNINGS_LABEL = f"{GROUP}/warnings"  # on an admission parameter that holds Audit warnings
IGNORE_ANNOTATION = f"{GROUP}/ignore"  # a Service's opt-out
RECREATE_ANNOTATION = f"{GROUP}/recreate"  # a LoadBalancer's own consent to recreation
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # the API server sets it on namespaces
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # an EndpointSlice's Service
CA_INJECTION_ANNOTATION = "cert-manager.io/inject-ca-from"

# The cluster DNS Service, by convention (CoreDNS and kube-dns alike): readiness checks it.
DNS_NAMESPACE, DNS_SERVICE = "kube-system", "kube-dns"

# Never governed by a policy without a selector, never matched by admission.
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")

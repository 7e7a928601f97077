"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
and optionally one real node, as plain processes built from Go modules.

There is no container runtime on our machines, so, like controller-runtime's envtest,
the control plane runs as processes (``hack/controlplane/build.sh`` builds them).
``make cluster``, the pytest fixtures and the benches all use this package, so tests
exercise exactly what developers run by hand.

Modules, in the order they may import each other:

- ``paths``, ``topology``: where things are; families and CIDRs (imports nothing here);
- ``procs``: the one ``Supervisor`` of child processes, stopped by PID only;
- ``audit``: the audit policy and ``AuditLog``, the questions tests ask of it;
- ``pki``: the CA, certificates and kubeconfigs;
- ``components``: the control plane's command lines (pure);
- ``node/``: containerd, the kubelet, the pod network, teardown of what a node leaves;
- ``cluster``: ``LocalCluster``, which starts all of the above; ``__main__``: the CLI.
"""

from localcluster.audit import AuditLog, Request, busiest_second, service_patches
from localcluster.cluster import ClusterError, LocalCluster, PortTakenError, stop_recorded
from localcluster.paths import REPO, bin_dir, node_bin_dir
from localcluster.procs import (
    Process,
    Supervisor,
    free_port,
    set_pdeathsig,
    wait_port_free,
)
from localcluster.topology import (
    API_FAMILY,
    CLUSTER_CIDRS,
    SERVICE_CIDRS,
    Family,
    Topology,
    parse_families,
)

__all__ = [
    "API_FAMILY",
    "CLUSTER_CIDRS",
    "REPO",
    "SERVICE_CIDRS",
    "AuditLog",
    "ClusterError",
    "Family",
    "LocalCluster",
    "PortTakenError",
    "Process",
    "Request",
    "Supervisor",
    "Topology",
    "bin_dir",
    "busiest_second",
    "free_port",
    "node_bin_dir",
    "parse_families",
    "service_patches",
    "set_pdeathsig",
    "stop_recorded",
    "wait_port_free",
]

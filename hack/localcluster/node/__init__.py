"""One real node for the local cluster: containerd, kubelet, kube-proxy, kube-scheduler.

Everything runs as children of the cluster's supervisor, with state under
``<cluster>/node``. May import ``localcluster.topology``, ``paths`` and ``procs``,
never ``localcluster.cluster`` (the cluster starts the node, not the reverse).
"""

from localcluster.node.containerd import ECHO_IMAGE, PAUSE_IMAGE
from localcluster.node.node import LocalNode, import_image, kill_container, pod_log
from localcluster.node.teardown import host_leftovers, remove_containers, teardown_host

__all__ = [
    "ECHO_IMAGE",
    "PAUSE_IMAGE",
    "LocalNode",
    "host_leftovers",
    "import_image",
    "kill_container",
    "pod_log",
    "remove_containers",
    "teardown_host",
]

"""The pod network: the CNI bridge plugin with host-local IPAM over the node's podCIDRs
(one range per family) and portmap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localcluster.topology import BRIDGE, NETWORK


def conflist(pod_cidrs: Sequence[str], ipam_dir: Path) -> dict[str, Any]:
    routes = [{"dst": "0.0.0.0/0" if ":" not in c else "::/0"} for c in pod_cidrs]
    return {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": c}] for c in pod_cidrs],
                    "routes": routes,
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }

"""Where things are: the repository, and the cached control-plane binaries (built on
first use by ``hack/controlplane/build.sh``, keyed by version, outside the checkout)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTROLPLANE_BUILD = REPO / "hack" / "controlplane" / "build.sh"
NODE_BUILD = REPO / "hack" / "node" / "build.sh"
COREDNS_BUILD = REPO / "hack" / "coredns" / "build.sh"
METALLB_BUILD = REPO / "hack" / "metallb" / "build.sh"


def bin_dir(build: bool = True) -> Path:
    """The control plane's binaries; builds them first unless ``build`` is False."""
    return _built(CONTROLPLANE_BUILD, build)


def node_bin_dir(build: bool = True) -> Path:
    """The node's binaries (containerd, runc, kubelet, kube-proxy, kube-scheduler)."""
    return _built(NODE_BUILD, build)


def coredns_binary() -> Path:
    """CoreDNS, the node cluster's kube-dns (built on first use, cached per user)."""
    return _built(COREDNS_BUILD, True)


def metallb_binary() -> Path:
    """MetalLB's controller, which gives LoadBalancer Services their addresses."""
    return _built(METALLB_BUILD, True)


def _built(script: Path, build: bool) -> Path:
    args = [str(script)] if build else [str(script), "--bin-dir"]
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])

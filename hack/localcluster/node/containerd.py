"""containerd for the node: its configuration (pure) and ``ctr`` against its socket.

The session lacks CAP_SYS_RESOURCE, so containerd clamps oom_score_adj
(``restrict_oom_score_adj``: a pod's sandbox may not go below containerd's score);
the sandbox image is built locally (``ociimage``), never pulled.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from localcluster.node.host import CNI_BIN

PAUSE_IMAGE = "localhost/dualstack/pause:1"
ECHO_IMAGE = "localhost/dualstack/echo:1"


def config(node_dir: Path, socket: Path, binaries: Path) -> str:
    return f"""version = 3
root = '{node_dir}/containerd/root'
state = '{node_dir}/containerd/state'
[grpc]
  address = '{socket}'
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '{PAUSE_IMAGE}'
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = '{binaries / "runc"}'
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['{CNI_BIN}']
  conf_dir = '{node_dir / "cni"}'
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
"""


class Ctr:
    """``ctr`` against one node's containerd, in the CRI's namespace (k8s.io)."""

    def __init__(self, socket: Path, binaries: Path) -> None:
        self.socket = socket
        self.binaries = binaries

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.binaries}:{os.environ.get('PATH', '')}"}

    def __call__(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            [str(self.binaries / "ctr"), "-a", str(self.socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            env=self.env,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {out.stderr}")
        return out.stdout

    def import_archive(self, archive: Path) -> None:
        self("images", "import", str(archive))

"""Leaving nothing behind: a stopped node's containers, shims, mounts, bridge, iptables
chains and host files are removed, and a test session can ask what is left."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import time
from pathlib import Path

from localcluster.node.containerd import Ctr
from localcluster.node.host import (
    CHAIN_PREFIXES,
    host_files,
    mounts_under,
    our_chains,
    run,
)
from localcluster.topology import BRIDGE


def socket_of(state_dir: Path) -> Path:
    return state_dir / "node" / "containerd.sock"


def remove_containers(state_dir: Path, binaries: Path) -> None:
    """Kills and deletes every container containerd runs for the node (while it runs).

    Pods' sandboxes are stopped through the CRI first, so that the CNI plugins remove
    their addresses, veths and iptables rules themselves.
    """
    socket = socket_of(state_dir)
    if not socket.exists():
        return
    ctr = Ctr(socket, binaries)
    for task in ctr("tasks", "ls", "-q", check=False).split():
        ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
    deadline = time.monotonic() + 10
    while ctr("tasks", "ls", "-q", check=False).split() and time.monotonic() < deadline:
        time.sleep(0.1)
    for task in ctr("tasks", "ls", "-q", check=False).split():
        ctr("tasks", "delete", "-f", task, check=False)
    for container in ctr("containers", "ls", "-q", check=False).split():
        ctr("containers", "delete", container, check=False)


def _shims(socket: Path) -> list[int]:
    """containerd's shims for this node (started by containerd, not by us): found by
    their command line naming the node's socket."""
    marker = f"-address {socket}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" "):
                    pids.append(int(proc.name))
    return pids


def host_leftovers(root: Path) -> list[str]:
    """What nodes under ``root`` left on the host: for the test session's stray check."""
    out = [f"mount {m}" for m in mounts_under(root)]
    if run("ip", "link", "show", BRIDGE).returncode == 0:
        out.append(f"interface {BRIDGE}")
    out += [f"{cmd} -t {table}: {chains}" for (cmd, table), chains in our_chains().items()]
    out += [f"file {f}" for f in host_files(root)]
    return out


def teardown_host(state_dir: Path) -> list[str]:
    """After the processes stopped: shims still exiting, mounts, the bridge, iptables
    chains and files outside the node's directory; returns what was still there."""
    left = []
    for pid in _shims(socket_of(state_dir)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        left.append(f"shim pid {pid}")
    for point in mounts_under(state_dir / "node"):
        run("umount", "-l", point)
        left.append(f"mount {point}")
    if run("ip", "link", "show", BRIDGE).returncode == 0:
        run("ip", "link", "delete", BRIDGE)
        left.append(f"interface {BRIDGE}")
    for (command, table), chains in our_chains().items():
        # Rules in the built-in chains that jump to ours go first, then ours.
        for line in run(command, "-t", table, "-S").stdout.splitlines():
            parts = shlex.split(line)
            if parts[:1] == ["-A"] and "-j" in parts:
                target = parts[parts.index("-j") + 1]
                if target in chains and not parts[1].startswith(CHAIN_PREFIXES):
                    run(command, "-t", table, "-D", *parts[1:])
        for chain in chains:
            run(command, "-t", table, "-F", chain)
        for chain in chains:
            run(command, "-t", table, "-X", chain)
        left.append(f"{command} -t {table}: {len(chains)} chains")
    for path in host_files(state_dir):
        path.unlink(missing_ok=True)
    record = state_dir / "node" / "host-dirs.json"
    if record.exists():
        for created in json.loads(record.read_text()):
            for point in mounts_under(Path(created)):
                run("umount", "-l", point)
            shutil.rmtree(created, ignore_errors=True)
    with contextlib.suppress(OSError):
        socket_of(state_dir).unlink()
    return left

"""``python -m localcluster up|down`` (what ``make cluster`` and ``make cluster-down`` run)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from localcluster.cluster import ClusterError, LocalCluster, stop_recorded
from localcluster.paths import REPO
from localcluster.topology import parse_families


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="localcluster", description="A real local Kubernetes control plane."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="(re)start the control plane in the background")
    up.add_argument("--state-dir", type=Path, default=REPO / ".local" / "cluster")
    up.add_argument("--families", default="ipv4,ipv6")
    up.add_argument("--nodes", type=int, default=0, help="0 (no node) or 1 (a real node)")
    down = sub.add_parser("down", help="stop the processes `up` started, by PID")
    down.add_argument("--state-dir", type=Path, default=REPO / ".local" / "cluster")
    args = parser.parse_args(argv)

    if args.command == "down":
        stopped = stop_recorded(args.state_dir.resolve())
        print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
        return 0

    try:
        families = parse_families(args.families)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cluster = LocalCluster(args.state_dir, families, nodes=args.nodes)
    try:
        cluster.start()
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"local control plane up in {cluster.start_seconds:.1f}s: {cluster.server}\n"
        f"  service CIDRs: {', '.join(cluster.service_cidrs)} "
        f"(primary {cluster.api_families[0]})\n"
        f"  logs: {os.path.relpath(cluster.state_dir / 'logs')}/\n\n"
        f"  export KUBECONFIG={cluster.kubeconfig}\n"
        f"  kubectl get --raw /version\n\n"
        f"stop it with: make cluster-down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

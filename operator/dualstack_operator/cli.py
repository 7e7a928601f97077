"""The ``dualstack-operator`` command line."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from dualstack_operator import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dualstack-operator",
        description="Makes every Service in a namespace match its DualStackPolicy.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    run.add_argument(
        "--metrics-port", type=int, default=8080, metavar="N", help="0 disables (default: 8080)"
    )
    run.add_argument("--metrics-address", default="0.0.0.0", metavar="ADDR")  # noqa: S104
    run.add_argument(
        "--liveness-port",
        type=int,
        default=8081,
        metavar="N",
        help="kopf's liveness probe at /healthz; 0 disables (default: 8081)",
    )
    run.add_argument(
        "--peering",
        metavar="NAME",
        help="run as one of several replicas: kopf peering keeps one active (default: standalone)",
    )
    run.add_argument(
        "--priority",
        type=int,
        metavar="N",
        help="peering priority, highest active (default: derived from $POD_NAME or the hostname)",
    )
    run.add_argument(
        "--peering-lifetime",
        type=int,
        default=60,
        metavar="S",
        help="a silent peer counts as gone after S seconds: the takeover time (default: 60)",
    )
    run.add_argument(
        "--admission",
        action="store_true",
        help="serve the mutating webhook that makes new Services born compliant",
    )
    run.add_argument("--webhook-address", default="0.0.0.0", metavar="ADDR")  # noqa: S104
    run.add_argument("--webhook-port", type=int, default=9443, metavar="N")
    run.add_argument(
        "--webhook-host",
        default="127.0.0.1",
        metavar="HOST",
        help="how the API server reaches the webhook (url mode; default: 127.0.0.1)",
    )
    run.add_argument(
        "--webhook-service",
        metavar="NS/NAME[:PORT]",
        help="in a cluster: reach the webhook through this Service instead of a URL",
    )
    run.add_argument(
        "--webhook-cert-dir",
        type=Path,
        metavar="DIR",
        help="tls.crt, tls.key (and ca.crt) from a Secret; default: a self-signed pair",
    )
    run.add_argument(
        "--cluster-recheck-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="how often to re-detect the cluster's IP families (default: 60)",
    )
    run.add_argument("--log-format", choices=["text", "json"], default="text")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser


def _logging(fmt: str, verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if fmt == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(_JSONFormatter())
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(
            level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", force=True
        )
    # kopf's per-object chatter is debug material; ours stays at INFO.
    logging.getLogger("kopf").setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def default_priority() -> int:
    """Distinct per replica without coordination: a stable hash of the pod's name."""
    name = os.environ.get("POD_NAME") or socket.gethostname()
    return int(hashlib.sha256(name.encode()).hexdigest()[:6], 16) % 1_000_000


def run(args: argparse.Namespace) -> int:
    """Runs until SIGINT/SIGTERM; kopf stops watching and our worker is cancelled."""
    import kopf

    from dualstack_operator import handlers
    from dualstack_operator.kubeapi import KubeAPI

    priority = args.priority if args.priority is not None else default_priority()
    identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}/{os.getpid()}"
    runtime = handlers.Runtime(
        peering=args.peering,
        identity=identity,
        priority=priority,
        peering_lifetime=args.peering_lifetime,
        namespaces=tuple(args.namespace),
        api=KubeAPI(),
        cluster_recheck_seconds=args.cluster_recheck_seconds,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
    )
    liveness = (
        f"http://{args.metrics_address}:{args.liveness_port}/healthz"
        if args.liveness_port
        else None
    )
    if args.admission:
        from dualstack_operator import webhook  # registers the mutating handler

        options = webhook.WebhookOptions(
            address=args.webhook_address,
            port=args.webhook_port,
            host=args.webhook_host,
            service=args.webhook_service,
            cert_dir=args.webhook_cert_dir,
            namespaces=tuple(args.namespace),
        )

        async def start_webhook(settings: kopf.OperatorSettings, rt: handlers.Runtime) -> None:
            await webhook.start(settings, rt, options)

        runtime.startup_hooks.append(start_webhook)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        memo=kopf.Memo(runtime=runtime),
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=priority,
        identity=cast(Any, identity),  # kopf's Identity is a NewType of str, not exported
        liveness_endpoint=liveness,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        _logging(args.log_format, args.verbose)
        return run(args)
    return 2

"""The ``dualstack-operator`` command line."""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from dualstack_operator import __version__
from dualstack_operator.admission.configuration import WebhookOptions
from dualstack_operator.api.names import NAME
from dualstack_operator.engine.settings import CacheSettings, PeeringSettings, ReconcileSettings
from dualstack_operator.migration import command as plan_command
from dualstack_operator.runtime import launch
from dualstack_operator.runtime.logging import _logging
from dualstack_operator.runtime.settings import MetricsSettings, Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=NAME,
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
        "--metrics-port",
        type=int,
        default=MetricsSettings.port,
        metavar="N",
        help="0 disables (default: %(default)s)",
    )
    run.add_argument(
        "--metrics-address",
        default=MetricsSettings.address,
        metavar="ADDR",
        help="where /metrics, /readyz and /healthz listen (default: every address, IPv4 "
        "and IPv6, so a dual-stack metrics Service and an IPv6 kubelet both reach them)",
    )
    run.add_argument(
        "--metrics-secure",
        action="store_true",
        help="serve /metrics over HTTPS, only to bearer tokens the API server lets get "
        "the non-resource URL /metrics (TokenReview, SubjectAccessReview)",
    )
    run.add_argument(
        "--metrics-cert-dir",
        type=Path,
        metavar="DIR",
        help="tls.crt and tls.key for --metrics-secure (default: a self-signed pair)",
    )
    run.add_argument(
        "--liveness-port",
        type=int,
        default=Settings.liveness_port,
        metavar="N",
        help="the liveness probe at /healthz, on the metrics address; 0 disables "
        "(default: %(default)s)",
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
        default=PeeringSettings.lifetime,
        metavar="S",
        help="a silent peer counts as gone after S seconds: the takeover time "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--admission",
        nargs="?",
        const="auto",
        default="off",
        choices=["auto", "policy", "webhook", "off"],
        help="make new Services born compliant: native MutatingAdmissionPolicies where the "
        "API server serves them, else the operator's webhook (auto, the value of a bare "
        "--admission); policy or webhook force one (default: off)",
    )
    run.add_argument(
        "--webhook-address",
        default=WebhookOptions.address,
        metavar="ADDR",
        help="default: every address",
    )
    run.add_argument(
        "--webhook-port",
        type=int,
        default=WebhookOptions.port,
        metavar="N",
        help="default: %(default)s",
    )
    run.add_argument(
        "--webhook-host",
        default=WebhookOptions.host,
        metavar="HOST",
        help="how the API server reaches the webhook (url mode; default: %(default)s)",
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
        default=ReconcileSettings.cluster_recheck_seconds,
        metavar="S",
        help="how often to re-detect the cluster's IP families (default: %(default)s)",
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=ReconcileSettings.resync_seconds,
        metavar="S",
        help="a full pass over every policy this often, even without events (default: %(default)s)",
    )
    run.add_argument(
        "--watch-timeout-seconds",
        type=int,
        default=CacheSettings.watch_timeout_seconds,
        metavar="S",
        help="the API server ends each watch after S seconds and the operator resumes it; "
        "a watch silent for S plus a grace (at most 30 s) is treated as a stalled "
        "connection and restarted (default: %(default)s)",
    )
    run.add_argument(
        "--journal-namespace",
        default=os.environ.get("POD_NAMESPACE") or Settings.journal_namespace,
        metavar="NS",
        help="where recreations (primaryFamilyChange: Recreate) are journaled before a "
        f"Service is deleted (default: $POD_NAMESPACE, else {Settings.journal_namespace})",
    )
    run.add_argument("--log-format", choices=["text", "json"], default="text")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    plan_command.add_parser(sub)
    return parser


def default_priority() -> int:
    """Distinct per replica without coordination: a stable hash of the pod's name."""
    name = os.environ.get("POD_NAME") or socket.gethostname()
    return int(hashlib.sha256(name.encode()).hexdigest()[:6], 16) % 1_000_000


def settings_from(args: argparse.Namespace) -> Settings:
    """The operator's settings from ``run``'s arguments (defaults live in settings.py)."""
    identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}/{os.getpid()}"
    priority = args.priority if args.priority is not None else default_priority()
    peering = (
        PeeringSettings(args.peering, identity, priority, args.peering_lifetime)
        if args.peering
        else None
    )
    return Settings(
        namespaces=tuple(args.namespace),
        reconcile=ReconcileSettings(
            resync_seconds=args.resync_seconds,
            cluster_recheck_seconds=args.cluster_recheck_seconds,
        ),
        cache=CacheSettings(watch_timeout_seconds=max(1, args.watch_timeout_seconds)),
        metrics=MetricsSettings(
            args.metrics_address, args.metrics_port, args.metrics_secure, args.metrics_cert_dir
        ),
        peering=peering,
        journal_namespace=args.journal_namespace,
        liveness_port=args.liveness_port,
    )


def webhook_options(args: argparse.Namespace) -> WebhookOptions:
    return WebhookOptions(
        address=args.webhook_address,
        port=args.webhook_port,
        host=args.webhook_host,
        service=args.webhook_service,
        cert_dir=args.webhook_cert_dir,
        namespaces=tuple(args.namespace),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        _logging(args.log_format, args.verbose)
        return launch.run(settings_from(args), args.admission, webhook_options(args))
    if args.command == "plan":
        from dualstack_operator.runtime.plan_source import connect, contexts

        return plan_command.run(args, connect, contexts)
    return 2

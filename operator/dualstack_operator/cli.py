"""The ``dualstack-operator`` command line."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from dualstack_operator import __version__
from dualstack_operator.api.models import Admission
from dualstack_operator.api.names import ADMISSION_PLURAL, GROUP, NAME, PLURAL
from dualstack_operator.migration import command as plan_command
from dualstack_operator.runtime.settings import (
    CacheSettings,
    MetricsSettings,
    PeeringSettings,
    ReconcileSettings,
    Settings,
)

log = logging.getLogger("dualstack_operator")


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
        "--metrics-port", type=int, default=8080, metavar="N", help="0 disables (default: 8080)"
    )
    run.add_argument(
        "--metrics-address",
        default="",
        metavar="ADDR",
        help="where /metrics and /readyz listen (default: every address, IPv4 and IPv6, "
        "so a dual-stack metrics Service answers on both ClusterIPs)",
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
        nargs="?",
        const="auto",
        default="off",
        choices=["auto", "policy", "webhook", "off"],
        help="make new Services born compliant: native MutatingAdmissionPolicies where the "
        "API server serves them, else the operator's webhook (auto, the value of a bare "
        "--admission); policy or webhook force one (default: off)",
    )
    run.add_argument("--webhook-address", default="", metavar="ADDR", help="default: every address")
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
        default=ReconcileSettings.cluster_recheck_seconds,
        metavar="S",
        help="how often to re-detect the cluster's IP families (default: 60)",
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=ReconcileSettings.resync_seconds,
        metavar="S",
        help="a full pass over every policy this often, even without events (default: 300)",
    )
    run.add_argument(
        "--watch-timeout-seconds",
        type=int,
        default=CacheSettings.watch_timeout_seconds,
        metavar="S",
        help="the API server ends each watch after S seconds and the operator resumes it; "
        "a watch silent for S plus a grace (at most 30 s) is treated as a stalled "
        "connection and restarted (default: 300)",
    )
    run.add_argument(
        "--journal-namespace",
        default=os.environ.get("POD_NAMESPACE") or "dualstack-system",
        metavar="NS",
        help="where recreations (primaryFamilyChange: Recreate) are journaled before a "
        "Service is deleted (default: $POD_NAMESPACE, else dualstack-system)",
    )
    run.add_argument("--log-format", choices=["text", "json"], default="text")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    plan_command.add_parser(sub)
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
    # "Config not found": the preflight says it once, with what to do.
    logging.getLogger("kubernetes_asyncio.config").setLevel(logging.ERROR)


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


NATIVE_RESOURCE = "mutatingadmissionpolicies"


class AdmissionUnavailable(Exception):
    """--admission=policy on an API server that does not serve the native policies."""


def resolve_admission(mode: str, served: set[str] | None) -> Admission | None:
    """The mechanism for ``--admission=mode`` given what the API server serves."""
    if mode == "off":
        return None
    if mode == "webhook":
        return Admission.WEBHOOK
    native = served is not None and NATIVE_RESOURCE in served
    if mode == "policy" and not native:
        raise AdmissionUnavailable(
            f"--admission=policy: this API server does not serve {NATIVE_RESOURCE} "
            "in admissionregistration.k8s.io/v1 (Kubernetes v1.36+); use --admission=webhook"
        )
    return Admission.POLICY if native else Admission.WEBHOOK


class StartupError(Exception):
    """Why the operator cannot start, in one line for the user."""


PREFLIGHT_TIMEOUT = 15.0
CRD_HINT = "kubectl apply -k crds/"

# What the operator cannot work without: (verb, API group, resource[/subresource]),
# checked in each watched namespace (or cluster-wide); the cluster-scoped ones once.
REQUIRED_RIGHTS = (
    ("list", "", "services"),
    ("watch", "", "services"),
    ("patch", "", "services"),
    ("create", "", "events"),
    ("list", GROUP, "dualstackpolicies"),
    ("watch", GROUP, "dualstackpolicies"),
    ("patch", GROUP, "dualstackpolicies/status"),
)
REQUIRED_CLUSTER_RIGHTS = (
    ("list", "", "namespaces"),
    ("watch", "", "namespaces"),
    ("list", GROUP, "clusterdualstackpolicies"),
    ("watch", GROUP, "clusterdualstackpolicies"),
    ("patch", GROUP, "clusterdualstackpolicies/status"),
)


@dataclass(frozen=True)
class Found:
    """What the preflight learnt from the API server."""

    admission: set[str]  # what admissionregistration.k8s.io/v1 serves
    served: set[str]  # what dualstack.dev serves (nothing before its CRDs)

    def missing_crds(self, admission: Admission | None) -> list[str]:
        """The CRDs the operator needs, with this admission, that are not served (yet)."""
        needed = [PLURAL] + ([ADMISSION_PLURAL] if admission == Admission.POLICY else [])
        return [f"{plural}.{GROUP}" for plural in needed if plural not in self.served]


async def preflight(kubeconfig: str | None = None, namespaces: Sequence[str] = ()) -> Found:
    """Requests before kopf starts, so that a missing or broken kubeconfig, an
    unreachable server, refused credentials or missing RBAC end the process with one
    clear line (kopf would retry forever)."""
    from kubernetes_asyncio.config import ConfigException
    from yaml import YAMLError

    from dualstack_operator.core.errors import ApiError
    from dualstack_operator.kube.client import KubeAPI

    api = KubeAPI(kubeconfig)
    source = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        await api.connect()
    except (ConfigException, OSError, ValueError, TypeError, AttributeError, YAMLError) as err:
        # (A file that is not YAML, or not a kubeconfig, fails in the loader's parsing.)
        reason = " ".join(str(err).split()) or type(err).__name__
        raise StartupError(f"cannot load the kubeconfig {source}: {reason}") from err
    server = api.api.configuration.host
    try:
        async with asyncio.timeout(PREFLIGHT_TIMEOUT):
            admission = await api.served_admission_resources()
            missing = await _missing_rights(api, namespaces)
            policies = await api.served_policy_resources()
    except TimeoutError as err:
        raise StartupError(
            f"cannot reach the API server at {server}: no answer in {PREFLIGHT_TIMEOUT:.0f}s"
        ) from err
    except ApiError as err:
        if err.status == 0:
            raise StartupError(f"cannot reach the API server at {server}: {err}") from err
        if err.status in (401, 403):
            raise StartupError(
                f"the API server at {server} refused the operator's credentials: {err}"
            ) from err
        raise StartupError(f"the API server at {server} answered: {err}") from err
    finally:
        await api.close()
    if missing:
        raise StartupError(
            "missing RBAC: the operator's identity may not "
            + "; ".join(missing)
            + " (kubectl apply -k manifests/ grants these to its ServiceAccount)"
        )
    if "dualstackpolicies" in policies and "clusterdualstackpolicies" not in policies:
        log.warning("ClusterDualStackPolicies are not served: they are ignored until %s", CRD_HINT)
    return Found(admission, policies)


async def _missing_rights(api: Any, namespaces: Sequence[str]) -> list[str]:
    """The required rights the identity lacks, as "verb resource [in namespace]"."""
    checks = [(*right, ns or None) for ns in (namespaces or [""]) for right in REQUIRED_RIGHTS]
    checks += [(*right, None) for right in REQUIRED_CLUSTER_RIGHTS]
    answers = await asyncio.gather(*(api.allowed(*check) for check in checks))
    missing = []
    for (verb, group, resource, ns), allowed in zip(checks, answers, strict=True):
        if not allowed:
            name, slash, sub = resource.partition("/")
            what = (f"{name}.{group}" if group else name) + slash + sub
            where = f" in namespace {ns}" if ns else ""
            missing.append(f"{verb} {what}{where}")
    return missing


async def wait_for_crds(missing: list[str], liveness_port: int, metrics: tuple[str, int]) -> None:
    """Until the CRDs are served: says so once, stays alive (liveness 200) and unready
    (/readyz 503), and checks again every few seconds."""
    from aiohttp import web

    from dualstack_operator.core.errors import ApiError
    from dualstack_operator.kube.client import KubeAPI

    what = "the CRD" + ("s" if len(missing) > 1 else "")
    message = f"waiting for {what} {', '.join(missing)}: {CRD_HINT}"
    log.warning(message)

    async def alive(_: web.Request) -> web.Response:
        return web.Response(text=message)

    async def unready(_: web.Request) -> web.Response:
        return web.Response(status=503, text=message)

    runners = []
    address, port = metrics
    for listen, path, handler in (
        (liveness_port, "/healthz", alive),
        (port, "/readyz", unready),
    ):
        if not listen:
            continue
        app = web.Application()
        app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, address or None, listen).start()
        runners.append(runner)
    api = KubeAPI()
    await api.connect()
    try:
        while True:
            try:
                served = await api.served_policy_resources()
                if all(name.split(".", 1)[0] in served for name in missing):
                    log.info("the CRDs are served: starting")
                    return
            except ApiError as err:
                log.warning("cannot check for the CRDs: %s", err)
            await asyncio.sleep(CRD_POLL_SECONDS)
    finally:
        await api.close()
        for runner in runners:
            await runner.cleanup()


CRD_POLL_SECONDS = 5.0


def settings_from(args: argparse.Namespace, admission: Admission | None = None) -> Settings:
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
        admission=admission,
        journal_namespace=args.journal_namespace,
    )


def run(args: argparse.Namespace) -> int:
    """Runs until SIGINT/SIGTERM; kopf stops, and the operator's own tasks with it."""
    import kopf

    from dualstack_operator.runtime.handlers import App

    try:
        found = asyncio.run(preflight(namespaces=args.namespace))
        admission = resolve_admission(args.admission, found.admission)
    except (StartupError, AdmissionUnavailable) as err:
        print(f"dualstack-operator: {err}", file=sys.stderr)
        return 1
    missing = found.missing_crds(admission)
    if missing:
        metrics = (args.metrics_address, args.metrics_port)
        asyncio.run(wait_for_crds(missing, args.liveness_port, metrics))
    if admission is not None:
        log.info(
            "admission: %s",
            "native MutatingAdmissionPolicies, applied by the API server"
            if admission == Admission.POLICY
            else "the operator's mutating webhook",
        )
    settings = settings_from(args, admission)
    app = App(settings)
    liveness = (
        f"http://{args.metrics_address or '0.0.0.0'}:{args.liveness_port}/healthz"  # noqa: S104
        if args.liveness_port
        else None
    )
    if admission == Admission.WEBHOOK:
        from dualstack_operator.admission import webhook  # registers the mutating handler

        options = webhook.WebhookOptions(
            address=args.webhook_address,
            port=args.webhook_port,
            host=args.webhook_host,
            service=args.webhook_service,
            cert_dir=args.webhook_cert_dir,
            namespaces=tuple(args.namespace),
        )

        async def start_webhook(kopf_settings: kopf.OperatorSettings, started: App) -> None:
            await webhook.start(kopf_settings, started, options)

        app.startup_hooks.append(start_webhook)
    peering = settings.peering
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        memo=kopf.Memo(app=app),
        standalone=peering is None,
        peering_name=args.peering,
        priority=peering.priority if peering else 0,
        # kopf's Identity is a NewType of str, not exported
        identity=cast(Any, peering.identity if peering else None),
        liveness_endpoint=liveness,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        _logging(args.log_format, args.verbose)
        return run(args)
    if args.command == "plan":
        return plan_command.run(args)
    return 2

"""Before kopf starts: what the operator needs, checked so that anything missing is one
clear line (kopf would retry forever), and the wait for CRDs applied a moment later."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from dualstack_operator.api.models import Admission
from dualstack_operator.api.names import (
    ADMISSION_PLURAL,
    API_VERSION,
    DEFAULT_NAMESPACE,
    GROUP,
    PLURAL,
)
from dualstack_operator.api.reasons import ConditionReason
from dualstack_operator.core.errors import ApiError, Forbidden, Unauthorized
from dualstack_operator.core.recreation import Unavailable
from dualstack_operator.kube.client import Client
from dualstack_operator.kube.resources import ADMISSION, NAMESPACES_RESOURCE
from dualstack_operator.kube.reviews import Reviews
from dualstack_operator.kube.transport import Transport
from dualstack_operator.observability.health import serve_waiting

log = logging.getLogger("dualstack_operator")


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


# What primaryFamilyChange: Recreate needs beyond the required rights: to read and
# delete the Service (it creates it again with "create", required already), and the
# journal's ConfigMaps in the journal namespace. The default install grants none of it.
RECREATE_RIGHTS = (("get", "", "services"), ("delete", "", "services"))
JOURNAL_RIGHTS = tuple((verb, "", "configmaps") for verb in ("list", "create", "patch", "delete"))
RECREATE_HINT = "grant it with manifests/recreate, or the chart's recreate.enabled=true"


@dataclass(frozen=True)
class Found:
    """What the preflight learnt from the API server."""

    admission: set[str]  # what admissionregistration.k8s.io/v1 serves
    served: set[str]  # what dualstack.dev serves (nothing before its CRDs)
    recreate: Unavailable | None = None  # why primaryFamilyChange: Recreate cannot work

    def missing_crds(self, admission: Admission | None) -> list[str]:
        """The CRDs the operator needs, with this admission, that are not served (yet)."""
        needed = [PLURAL] + ([ADMISSION_PLURAL] if admission == Admission.POLICY else [])
        return [f"{plural}.{GROUP}" for plural in needed if plural not in self.served]


async def preflight(
    kubeconfig: str | None = None,
    namespaces: Sequence[str] = (),
    journal_namespace: str = DEFAULT_NAMESPACE,
) -> Found:
    """Requests before kopf starts, so that a missing or broken kubeconfig, an
    unreachable server, refused credentials or missing RBAC end the process with one
    clear line (kopf would retry forever)."""
    from kubernetes_asyncio.config import ConfigException
    from yaml import YAMLError

    transport = Transport(kubeconfig)
    source = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        await transport.connect()
    except (ConfigException, OSError, ValueError, TypeError, AttributeError, YAMLError) as err:
        # (A file that is not YAML, or not a kubeconfig, fails in the loader's parsing.)
        reason = " ".join(str(err).split()) or type(err).__name__
        raise StartupError(f"cannot load the kubeconfig {source}: {reason}") from err
    server = transport.host
    client = Client(transport)
    try:
        async with asyncio.timeout(PREFLIGHT_TIMEOUT):
            admission = await client.served(ADMISSION)
            missing = await _missing_rights(Reviews(client), namespaces)
            policies = await client.served(API_VERSION)
            recreate = await _recreate_unavailable(client, namespaces, journal_namespace)
    except TimeoutError as err:
        raise StartupError(
            f"cannot reach the API server at {server}: no answer in {PREFLIGHT_TIMEOUT:.0f}s"
        ) from err
    except (Unauthorized, Forbidden) as err:
        raise StartupError(
            f"the API server at {server} refused the operator's credentials: {err}"
        ) from err
    except ApiError as err:
        if err.status == 0:  # no answer at all
            raise StartupError(f"cannot reach the API server at {server}: {err}") from err
        raise StartupError(f"the API server at {server} answered: {err}") from err
    finally:
        await transport.close()
    if missing:
        raise StartupError(
            "missing RBAC: the operator's identity may not "
            + "; ".join(missing)
            + " (kubectl apply -k manifests/ grants these to its ServiceAccount)"
        )
    if "dualstackpolicies" in policies and "clusterdualstackpolicies" not in policies:
        log.warning("ClusterDualStackPolicies are not served: they are ignored until %s", CRD_HINT)
    if recreate is not None:
        log.warning("%s", recreate.message)
    return Found(admission, policies, recreate)


async def _recreate_unavailable(
    client: Client, namespaces: Sequence[str], journal: str
) -> Unavailable | None:
    """Why primaryFamilyChange: Recreate cannot work here (None: it can): a right it
    lacks, or a journal namespace that does not exist."""
    reviews = Reviews(client)
    checks = [(*right, ns or None) for ns in (namespaces or [""]) for right in RECREATE_RIGHTS]
    checks += [(*right, journal) for right in JOURNAL_RIGHTS]
    missing = await _denied(reviews, checks)
    if missing:
        return Unavailable(
            ConditionReason.MISSING_RIGHTS,
            "primaryFamilyChange: Recreate is unavailable: the operator may not "
            f"{'; '.join(missing)} ({RECREATE_HINT})",
        )
    found = await client.list(NAMESPACES_RESOURCE, fieldSelector=f"metadata.name={journal}")
    if not found:
        return Unavailable(
            ConditionReason.JOURNAL_NAMESPACE_MISSING,
            f"primaryFamilyChange: Recreate is unavailable: the journal namespace {journal} "
            "does not exist (create it, or run with --journal-namespace)",
        )
    return None


async def _missing_rights(api: Reviews, namespaces: Sequence[str]) -> list[str]:
    """The required rights the identity lacks, as "verb resource [in namespace]"."""
    checks = [(*right, ns or None) for ns in (namespaces or [""]) for right in REQUIRED_RIGHTS]
    checks += [(*right, None) for right in REQUIRED_CLUSTER_RIGHTS]
    return await _denied(api, checks)


async def _denied(api: Reviews, checks: Sequence[tuple[str, str, str, str | None]]) -> list[str]:
    """Of (verb, group, resource, namespace) rights, those denied, as "verb resource
    [in namespace N]"."""
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
    what = "the CRD" + ("s" if len(missing) > 1 else "")
    message = f"waiting for {what} {', '.join(missing)}: {CRD_HINT}"
    log.warning(message)
    runners = await serve_waiting(message, liveness_port, *metrics)
    transport = Transport()
    await transport.connect()
    client = Client(transport)
    try:
        while True:
            try:
                served = await client.served(API_VERSION)
                if all(name.split(".", 1)[0] in served for name in missing):
                    log.info("the CRDs are served: starting")
                    return
            except ApiError as err:
                log.warning("cannot check for the CRDs: %s", err)
            await asyncio.sleep(CRD_POLL_SECONDS)
    finally:
        await transport.close()
        for runner in runners:
            await runner.cleanup()


CRD_POLL_SECONDS = 5.0

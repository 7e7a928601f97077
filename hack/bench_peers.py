"""`make bench` (peers): this operator beside Kyverno, the tool users would pick instead,
on one local dual-stack control plane, in one run.

Kyverno's admission and background controllers are built from its Go module
(``hack/kyverno/build.sh``, cached) and run as processes against the local API server,
out of cluster (a kubeconfig each, its webhooks addressed to 127.0.0.1), with its CRDs
from the module. The Kyverno policy is the one a careful user would write from its
documentation: a ClusterPolicy that sets the policy's fields at admission
(``patchStrategicMerge``) and, by ``mutateExisting`` with
``mutateExistingOnPolicyUpdate``, on the Services that exist, leaving ExternalName
Services alone (they may carry no IP families). Two variants: PreferDualStack, and
IPv6 first (RequireDualStack, [IPv6, IPv4]).

Three parts, each tool in its turn (never both at once), run in the order (a), (c), (b)
so that latency is measured on a near-empty cluster, not beside the 30,000 Services
that (b) leaves (``--parts`` runs some of them):
  (a) correctness: a table of Service shapes (the decision's cases, client-chosen
      addresses, headless, ExternalName, NodePort, LoadBalancer), created after the
      policy (born) and before it (existing), for each tool and variant: how many were
      refused, and how many end compliant, changed but not compliant, or left alone;
  (b) convergence of existing Services: 5,000 drifted and 5,000 compliant in 50
      namespaces, from policy creation to all compliant, for Kyverno, this operator
      and a bare client (half before the tools, half after); writes per Service from
      the API server's audit log; each controller's peak RSS;
  (c) admission latency: median and p99 added per Service creation, and creations/s,
      for Kyverno's webhook, this project's native policy and its webhook, against the
      same API server with no admission objects (as ``bench_admission.py``).
Results go to bench-results/peers.json and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

import bench_admission as adm
from bench import bare_convergence, gather_limited, peak_rss_mib, populate, wait_compliant
from benchkit import cluster_with_crd, policy, report, start_operator, stop_operator
from dualstack_operator.api.names import GROUP, PLURAL, VERSION
from localcluster import REPO, LocalCluster, Process, Supervisor, free_port
from localcluster.pki import CA, kubeconfig, name

KYVERNO_NS = "kyverno"
ADMISSION_USER, BACKGROUND_USER = "kyverno-admission", "kyverno-background"
OPERATOR_USER, BARE_USER = "dualstack-operator", "admin"
WEBHOOK_LABEL = "webhook.kyverno.io/managed-by=kyverno"
TLS_CA, TLS_PAIR = (f"kyverno-svc.{KYVERNO_NS}.svc.kyverno-tls-{s}" for s in ("ca", "pair"))
PARTS = ("correctness", "latency", "convergence")
VARIANTS: dict[str, dict[str, Any]] = {
    "prefer": {"ipFamilyPolicy": "PreferDualStack"},
    "ipv6-first": {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]},
}


def kyverno_policy(fields: dict[str, Any], namespaces: list[str]) -> dict[str, Any]:
    """The ClusterPolicy a user would write for ``fields`` in ``namespaces`` (globs)."""
    match = {"any": [{"resources": {"kinds": ["Service"], "namespaces": namespaces}}]}
    not_external = {
        "all": [
            {
                "key": "{{ request.object.spec.type || 'ClusterIP' }}",
                "operator": "NotEquals",
                "value": "ExternalName",
            }
        ]
    }
    patch = {"spec": fields}
    target = {
        "apiVersion": "v1",
        "kind": "Service",
        "namespace": "{{ request.object.metadata.namespace }}",
        "name": "{{ request.object.metadata.name }}",
    }
    return {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": "service-ip-families"},
        "spec": {
            "background": True,
            "rules": [
                {
                    "name": "at-admission",
                    "match": match,
                    "preconditions": not_external,
                    "mutate": {"patchStrategicMerge": patch},
                },
                {
                    "name": "existing",
                    "match": match,
                    "preconditions": not_external,
                    "mutate": {
                        "mutateExistingOnPolicyUpdate": True,
                        "targets": [target],
                        "patchStrategicMerge": patch,
                    },
                },
            ],
        },
    }


def build_kyverno() -> tuple[Path, Path, Path, float]:
    """The two binaries and the CRD directory (cached; a cold build takes minutes)."""
    began = time.monotonic()
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "kyverno" / "build.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout.split()
    admission, background, crds = (Path(p) for p in out[-3:])
    return admission, background, crds, time.monotonic() - began


def _identity(cluster: LocalCluster, user: str) -> Path:
    """A kubeconfig for ``user`` (no groups: Kyverno checks its background user's rights by
    a SubjectAccessReview naming the user alone), signed by the cluster's CA."""
    pki = cluster.state_dir / "pki"
    key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca = CA(x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes()), key)  # type: ignore[arg-type]
    path = cluster.state_dir / f"{user}.kubeconfig"
    path.write_text(kubeconfig(cluster.server, ca.pem, ca.issue(name(user), client=True), user))
    return path


class Kyverno:
    """Kyverno's two controllers as processes, out of cluster."""

    def __init__(self, cluster: LocalCluster, admission: Path, background: Path) -> None:
        self.cluster, self.admission, self.background = cluster, admission, background
        self.supervisor = Supervisor(cluster.state_dir, record=False)
        self.procs: list[Process] = []
        self.port = free_port()
        self.peak_rss: dict[str, float] = {}
        self.kubeconfigs: dict[str, Path] = {}  # user -> its kubeconfig, made by install()

    def kubectl(self, *argv: str) -> str:
        kubectl = [
            str(self.cluster.binaries / "kubectl"),
            f"--kubeconfig={self.cluster.kubeconfig}",
        ]
        done = subprocess.run([*kubectl, *argv], capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"kubectl {' '.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    def install(self, crds: Path) -> None:
        for sub in ("kyverno", "policies.kyverno.io", "reports"):
            if (crds / sub).is_dir():
                self.kubectl("apply", "--server-side", "-f", str(crds / sub))
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
        self.kubectl("create", "namespace", KYVERNO_NS)
        for cm in ("kyverno", "kyverno-metrics"):
            self.kubectl("-n", KYVERNO_NS, "create", "configmap", cm)
        for user in (ADMISSION_USER, BACKGROUND_USER):
            self.kubeconfigs[user] = _identity(self.cluster, user)
            self.kubectl(
                "create",
                "clusterrolebinding",
                user,
                "--clusterrole=cluster-admin",
                f"--user={user}",
            )

    def start(self) -> None:
        env = {
            **os.environ,
            "KYVERNO_NAMESPACE": KYVERNO_NS,
            "INIT_CONFIG": "kyverno",
            "METRICS_CONFIG": "kyverno-metrics",
        }
        common = [
            "--controllerRuntimeMetricsAddress=0",
            "--enableReporting=",
            "--omitEvents=PolicyApplied,PolicySkipped",
            "--disableMetrics=true",
            "--autoMemLimitEnabled=false",
            "--disableLogColor=true",
        ]
        admission = [
            str(self.admission),
            f"--kubeconfig={self.kubeconfigs[ADMISSION_USER]}",
            f"--serverIP=127.0.0.1:{self.port}",
            f"--webhookServerPort={self.port}",
            "--webhookServerHost=127.0.0.1",
            f"--caSecretName={TLS_CA}",
            f"--tlsSecretName={TLS_PAIR}",
            f"--backgroundServiceAccountName={BACKGROUND_USER}",
            "--admissionReports=false",
            *common,
        ]
        background = [
            str(self.background),
            f"--kubeconfig={self.kubeconfigs[BACKGROUND_USER]}",
            f"--metricsPort={free_port()}",
            *common,
        ]
        names = {
            "kyverno": (admission, "kyverno-admission-controller", ADMISSION_USER),
            "kyverno-background": (background, "kyverno-background-controller", BACKGROUND_USER),
        }
        for proc, (argv, deployment, account) in names.items():
            self.procs.append(
                self.supervisor.start(
                    proc,
                    argv,
                    {
                        **env,
                        "KYVERNO_DEPLOYMENT": deployment,
                        "KYVERNO_POD_NAME": f"{deployment}-local",
                        "KYVERNO_SERVICEACCOUNT_NAME": account,
                    },
                    log=self.cluster.state_dir / f"{proc}.log",
                )
            )

    def stop(self) -> None:
        """Stops both, then removes the webhooks it leaves (it does, out of cluster)."""
        for proc in self.procs:
            self.peak_rss[proc.name] = max(
                self.peak_rss.get(proc.name, 0.0), peak_rss_mib(proc.pid)
            )
            proc.stop()
        self.procs = []
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            self.kubectl("delete", kind, "-l", WEBHOOK_LABEL, "--ignore-not-found")

    def check_running(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")


async def until(what: str, probe: Any, within: float = 600, every: float = 0.5) -> None:
    """``bench_admission.until``, with every API error a no (a webhook not up yet)."""
    await adm.until(what, probe, within, every, no=lambda err: True)


# --- (a) correctness --------------------------------------------------------------------


def shapes(cluster: LocalCluster, block: int = 0) -> dict[str, dict[str, Any]]:
    """name -> Service spec: the decision's cases and what users actually write. Chosen
    ClusterIPs are unique cluster-wide, so each ``block`` takes addresses of its own."""
    v4, v6 = (ipaddress.ip_network(c) for c in cluster.topology.service_cidrs)
    pick = iter(range(1000 + 10 * block, 1010 + 10 * block))

    def addr(net: Any) -> str:
        return str(net[next(pick)])

    port = {"ports": [{"port": 80}]}
    return {
        "default": {**port},
        "single-stack": {**port, "ipFamilyPolicy": "SingleStack"},
        "single-ipv6": {**port, "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]},
        "prefer-dual": {**port, "ipFamilyPolicy": "PreferDualStack"},
        "require-ipv4-first": {
            **port,
            "ipFamilyPolicy": "RequireDualStack",
            "ipFamilies": ["IPv4", "IPv6"],
        },
        "families-only-ipv6": {**port, "ipFamilies": ["IPv6"]},
        "chosen-ipv4": {**port, "clusterIP": addr(v4)},
        "chosen-ipv6": {**port, "clusterIP": addr(v6)},
        "chosen-both": {**port, "ipFamilyPolicy": "RequireDualStack", **_both(addr(v4), addr(v6))},
        "headless": {**port, "clusterIP": "None", "selector": {"app": "x"}},
        "headless-no-selector": {**port, "clusterIP": "None"},
        "external-name": {"type": "ExternalName", "externalName": "example.com"},
        "node-port": {**port, "type": "NodePort"},
        "load-balancer": {**port, "type": "LoadBalancer"},
    }


def _both(first: str, second: str) -> dict[str, Any]:
    return {"clusterIP": first, "clusterIPs": [first, second]}


def verdict(fields: dict[str, Any], spec: dict[str, Any] | None, before: dict[str, Any]) -> str:
    """What became of one Service: refused, compliant, changed (not compliant) or left alone
    (as the server stores it without any tool); ExternalName has no families to judge."""
    if spec is None:
        return "refused"
    if spec.get("type") == "ExternalName":
        return "compliant" if not spec.get("ipFamilies") else "wrong"
    families = spec.get("ipFamilies") or []
    wanted = fields.get("ipFamilies")
    ok = len(families) == 2 if fields["ipFamilyPolicy"] != "SingleStack" else len(families) == 1
    if fields["ipFamilyPolicy"] == "RequireDualStack":
        ok = ok and spec.get("ipFamilyPolicy") == "RequireDualStack"
    if wanted:
        ok = ok and families == wanted
    if ok:
        return "compliant"
    same = (spec.get("ipFamilyPolicy"), families) == (
        before.get("ipFamilyPolicy"),
        before.get("ipFamilies") or [],
    )
    return "left alone" if same else "changed, not compliant"


def _svc(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


async def _create(core: Any, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    try:
        made = await core.create_namespaced_service(ns, _svc(name, spec))
    except ApiException as err:
        if err.status in (400, 403, 422):
            return None
        raise
    return dict(core.api_client.sanitize_for_serialization(made)["spec"])


async def _specs(core: Any, ns: str) -> dict[str, dict[str, Any]]:
    found = await core.list_namespaced_service(ns)
    return {
        s["metadata"]["name"]: s["spec"]
        for s in core.api_client.sanitize_for_serialization(found)["items"]
    }


async def _settled(core: Any, ns: str, quiet: float = 5.0, within: float = 300) -> None:
    """Until no Service in ``ns`` has changed for ``quiet`` seconds (the tool is done)."""
    deadline = time.monotonic() + within
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        found = await core.list_namespaced_service(ns)
        versions = {s.metadata.name: s.metadata.resource_version for s in found.items}
        if versions != last:
            last, since = versions, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"Services in {ns} still changing after {within}s")


async def _event_reasons(core: Any, ns: str) -> dict[str, int]:
    found = await core.list_namespaced_event(ns)
    return dict(
        Counter(f"{e.source.component or e.reporting_component}/{e.reason}" for e in found.items)
    )


class Contender:
    """One tool: how it is given a policy for some namespaces, and taken away."""

    name = ""
    users: tuple[str, ...] = ()  # who writes for it (the audit log's usernames)
    quiet = 5.0  # seconds without a change to existing Services that mean it is done

    async def apply(self, fields: dict[str, Any], namespaces: list[str]) -> None: ...

    async def remove(self, namespaces: list[str]) -> None: ...

    async def reported(self, ns: str) -> dict[str, Any]:
        """What the tool's own status says of ``ns`` (none for Kyverno's ClusterPolicy)."""
        return {}


class KyvernoContender(Contender):
    name = "kyverno"
    users = (ADMISSION_USER, BACKGROUND_USER)
    quiet = 30.0  # its background controller starts on the policy in its own time

    def __init__(self, kyverno: Kyverno, api: client.ApiClient) -> None:
        self.kyverno, self.custom = kyverno, client.CustomObjectsApi(api)

    async def apply(self, fields: dict[str, Any], namespaces: list[str]) -> None:
        body = kyverno_policy(fields, namespaces)

        async def created() -> bool:  # its policy webhook may still be getting its certificate
            self.kyverno.check_running()
            await self.custom.create_cluster_custom_object(
                "kyverno.io", "v1", "clusterpolicies", body
            )
            return True

        await until("the Kyverno policy to be accepted", created, within=120)

        async def ready() -> bool:
            self.kyverno.check_running()
            got = await self.custom.get_cluster_custom_object(
                "kyverno.io", "v1", "clusterpolicies", body["metadata"]["name"]
            )
            conditions = (got.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        await until("the Kyverno policy to be ready", ready, within=300)

    async def remove(self, namespaces: list[str]) -> None:
        await self.custom.delete_cluster_custom_object(
            "kyverno.io", "v1", "clusterpolicies", "service-ip-families"
        )


class OperatorContender(Contender):
    name = "dualstack-operator"
    users = (OPERATOR_USER,)

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)

    async def apply(self, fields: dict[str, Any], namespaces: list[str]) -> None:
        await gather_limited(
            8,
            [
                self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, policy(ns, **fields)
                )
                for ns in namespaces
            ],
        )

    async def reported(self, ns: str) -> dict[str, Any]:
        found = await self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
        status = (found["items"][0].get("status") or {}) if found["items"] else {}
        return {
            "driftedServices": status.get("driftedServices"),
            "reasons": dict(Counter(d.get("reason") for d in status.get("drift") or [])),
        }

    async def remove(self, namespaces: list[str]) -> None:
        for ns in namespaces:
            await self.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)


async def correctness(
    cluster: LocalCluster, core: Any, tool: Contender, block: int, prefix: str
) -> dict[str, Any]:
    """Both variants, born and existing, for one tool: counts and each shape's fate, and
    the tool's writes the API server refused."""
    out: dict[str, Any] = {}
    for variant, fields in VARIANTS.items():
        born, existing = f"{prefix}-{variant}-born", f"{prefix}-{variant}-existing"
        for ns in (born, existing):
            await core.create_namespace({"metadata": {"name": ns}})
        table = shapes(cluster, block)
        before = {n: await _create(core, existing, n, s) for n, s in table.items()}
        baseline = {n: s or {} for n, s in before.items()}
        await tool.apply(fields, [born, existing])
        await admission_acts(core, born, fields)
        made = {n: await _create(core, born, n, s) for n, s in shapes(cluster, block + 1).items()}
        block += 2
        await _settled(core, existing, quiet=tool.quiet)
        now = await _specs(core, existing)
        refused = [
            r.name
            for user in tool.users
            for r in cluster.audit.requests(user)
            if r.namespace == existing and r.verb in ("patch", "update") and not r.accepted
        ]
        fates = {
            "born": {n: verdict(fields, made[n], baseline[n]) for n in table},
            "existing": {
                n: verdict(fields, now.get(n), baseline[n]) if before[n] is not None else "-"
                for n in table
            },
        }
        out[variant] = {
            "counts": {k: dict(Counter(v.values())) for k, v in fates.items()},
            "shapes": fates,
            "refused_writes_to_existing": dict(Counter(refused)),
            # What a user is told: events in the namespace (and the operator's status).
            "events_in_existing": await _event_reasons(core, existing),
            "status_of_existing": await tool.reported(existing),
        }
        await tool.remove([born, existing])
    return out


async def admission_acts(core: Any, ns: str, fields: dict[str, Any]) -> None:
    """Until a dry-run create in ``ns`` comes back shaped by the tool."""

    async def shaped() -> bool:
        made = await core.create_namespaced_service(
            ns, _svc(f"probe-{time.time_ns()}", {"ports": [{"port": 80}]}), dry_run="All"
        )
        want = fields.get("ipFamilies")
        if want:
            return bool(made.spec.ip_families == want)
        return bool(made.spec.ip_family_policy == fields["ipFamilyPolicy"])

    await until(f"admission to act in {ns}", shaped, within=180)


# --- (b) convergence --------------------------------------------------------------------


async def count_dual(core: Any, namespaces: list[str]) -> int:
    lists = await asyncio.gather(*(core.list_namespaced_service(ns) for ns in namespaces))
    return sum(len(s.spec.ip_families or []) == 2 for lst in lists for s in lst.items)


def writes_per_service(
    cluster: LocalCluster, user: str, prefix: str, each: int
) -> dict[str, float]:
    """Accepted and refused Service writes by ``user`` in namespaces named ``prefix``*,
    per drifted and per compliant Service (names d*/c*, as bench.services makes them)."""
    counts: Counter[str] = Counter()
    for r in cluster.audit.requests(user):
        if (
            r.resource == "services"
            and r.namespace.startswith(prefix)
            and r.verb
            in (
                "patch",
                "update",
            )
        ):
            counts[("d" if r.name.startswith("d") else "c") + ("" if r.accepted else "!")] += 1
    return {
        "per_drifted": round(counts["d"] / each, 3),
        "per_compliant": round(counts["c"] / each, 3),
        "refused": counts["d!"] + counts["c!"],
    }


async def convergence(
    cluster: LocalCluster, api: client.ApiClient, kyverno: Kyverno, args: argparse.Namespace
) -> dict[str, Any]:
    core: Any = client.CoreV1Api(api)
    n, per = args.namespaces, args.per_namespace
    groups = {t: [f"c{t}-{i:02}" for i in range(n)] for t in ("kyv", "op", "bare")}
    for namespaces in groups.values():
        await populate(api, namespaces, per)
    fields = VARIANTS["prefer"]
    out: dict[str, Any] = {"services": n * per, "drifted": n * per // 2}
    half = n // 2
    bare_before = await bare_convergence(api, groups["bare"][:half], 32)

    operator = await start_operator(
        cluster, "--admission=off", "--metrics-port=0", "--liveness-port=0", log_name="op-peers.log"
    )
    began = time.monotonic()
    await OperatorContender(api).apply(fields, groups["op"])
    await wait_compliant(api, groups["op"], per)
    out["dualstack-operator"] = {"seconds": round(time.monotonic() - began, 1)}
    out["dualstack-operator"]["peak_rss_mib"] = round(peak_rss_mib(operator.pid), 1)
    await stop_operator(operator)
    out["dualstack-operator"]["writes"] = writes_per_service(
        cluster, OPERATOR_USER, "cop-", n * per // 2
    )

    kyverno.peak_rss = {}
    kyverno.start()
    await until("Kyverno's webhook", lambda: _webhooks(kyverno), within=300)
    began = time.monotonic()
    await KyvernoContender(kyverno, api).apply(fields, ["ckyv-*"])
    result: dict[str, Any] = {}
    try:
        await until(
            "Kyverno to converge",
            lambda: _all_dual(core, kyverno, groups["kyv"], n * per),
            within=args.kyverno_within,
            every=2,
        )
        result["seconds"] = round(time.monotonic() - began, 1)
    except TimeoutError:
        result["seconds"] = None
        result["dual_stack_after_deadline"] = await count_dual(core, groups["kyv"])
        result["deadline_s"] = args.kyverno_within
    await KyvernoContender(kyverno, api).remove([])
    kyverno.stop()
    result["peak_rss_mib"] = dict(kyverno.peak_rss)
    result["writes_background"] = writes_per_service(
        cluster, BACKGROUND_USER, "ckyv-", n * per // 2
    )
    result["writes_admission"] = writes_per_service(cluster, ADMISSION_USER, "ckyv-", n * per // 2)
    out["kyverno"] = result

    bare_after = await bare_convergence(api, groups["bare"][half:], 32)
    out["bare_client"] = {
        "seconds": round(bare_before + bare_after, 1),
        "before_and_after": [round(bare_before, 1), round(bare_after, 1)],
    }
    bare = bare_before + bare_after
    for tool in ("dualstack-operator", "kyverno"):
        secs = out[tool]["seconds"]
        out[tool]["vs_bare_client"] = round(secs / bare, 2) if secs else None
    return out


async def _all_dual(core: Any, kyverno: Kyverno, namespaces: list[str], total: int) -> bool:
    kyverno.check_running()
    return await count_dual(core, namespaces) == total


async def _webhooks(kyverno: Kyverno) -> bool:
    """Whether Kyverno serves: its webhooks registered and its serving certificate made."""
    kyverno.check_running()
    found = kyverno.kubectl(
        "get", "mutatingwebhookconfiguration", "-l", WEBHOOK_LABEL, "-o", "name"
    )
    secrets = kyverno.kubectl("-n", KYVERNO_NS, "get", "secrets", "-o", "name")
    return bool(found.strip()) and f"secret/{TLS_PAIR}" in secrets.split()


# --- (c) admission latency --------------------------------------------------------------


class KyvernoToggle:
    """Kyverno on (both controllers, its policy in the governed namespace) and off
    (stopped, its webhooks removed): what ``bench_admission.rounds`` alternates."""

    def __init__(self, kyverno: Kyverno) -> None:
        self.kyverno = kyverno

    async def off(self, core: Any) -> None:
        await asyncio.to_thread(self.kyverno.stop)
        await until("Kyverno to stop acting", lambda: adm._not(adm.shaped(core)), within=120)

    async def on(self, core: Any) -> None:
        self.kyverno.start()
        await until("Kyverno to act", lambda: adm.shaped(core), within=300)


def _summary(on: adm.Latencies, off: adm.Latencies, seconds: float) -> dict[str, Any]:
    out = adm.compare(on, off, 0.0)
    out.pop("apiserver_rss_mib")
    out["creations_per_s"] = round((len(on.plain) + len(on.governed)) / seconds, 1)
    return out


async def latency(
    cluster: LocalCluster, api: client.ApiClient, kyverno: Kyverno, args: argparse.Namespace
) -> dict[str, Any]:
    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    for ns in (adm.PLAIN, adm.GOVERNED):
        await core.create_namespace({"metadata": {"name": ns}})
    out: dict[str, Any] = {}

    kyverno.start()
    await until("Kyverno's webhook", lambda: _webhooks(kyverno), within=300)
    await KyvernoContender(kyverno, api).apply(adm.SPEC, [adm.GOVERNED])
    await admission_acts(core, adm.GOVERNED, adm.SPEC)
    on, off = await adm.rounds(core, KyvernoToggle(kyverno), "kyv", args.creations, args.rounds)
    out["kyverno_webhook"] = _summary(on, off, _on_seconds(on))
    await KyvernoContender(kyverno, api).remove([])
    kyverno.stop()
    await adm.clear(api)

    await custom.create_namespaced_custom_object(
        GROUP, VERSION, adm.GOVERNED, PLURAL, policy(adm.GOVERNED, **adm.SPEC)
    )
    operator = await start_operator(
        cluster,
        "--admission=policy",
        "--metrics-port=0",
        "--liveness-port=0",
        log_name="op-adm.log",
    )
    await admission_acts(core, adm.GOVERNED, adm.SPEC)
    await stop_operator(operator)
    toggle = adm.Toggle(api, adm.BINDINGS)
    on, off = await adm.rounds(core, toggle, "native", args.creations, args.rounds)
    out["native_policy"] = _summary(on, off, _on_seconds(on))
    await toggle.off(core)
    await adm.clear(api)

    operator = await start_operator(
        cluster,
        f"--namespace={adm.GOVERNED}",
        "--admission=webhook",
        "--webhook-address=127.0.0.1",
        f"--webhook-port={free_port()}",
        "--metrics-port=0",
        "--liveness-port=0",
        log_name="op-webhook.log",
    )
    try:
        await admission_acts(core, adm.GOVERNED, adm.SPEC)
        toggle = adm.Toggle(api, [("mutating_webhook_configuration", "dualstack-operator")])
        on, off = await adm.rounds(core, toggle, "webhook", args.creations, args.rounds)
        out["operator_webhook"] = _summary(on, off, _on_seconds(on))
        await toggle.off(core)  # no webhook left pointing at a stopped operator
    finally:
        await stop_operator(operator)
    await adm.clear(api)
    return out


def _on_seconds(on: adm.Latencies) -> float:
    """The time spent creating with the tool on (not the toggling around it)."""
    return sum(on.plain) + sum(on.governed)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    admission_bin, background_bin, crds, build_s = await asyncio.to_thread(build_kyverno)
    result: dict[str, Any] = {
        "kyverno": {"version": _kyverno_version(), "build_or_cache_s": round(build_s, 1)},
        "policies": {v: kyverno_policy(f, ["<namespaces>"]) for v, f in VARIANTS.items()},
    }
    cluster, api = await cluster_with_crd("bench-peers", (ADMISSION_USER, BACKGROUND_USER))
    kyverno = Kyverno(cluster, admission_bin, background_bin)
    operator: Process | None = None
    try:
        core: Any = client.CoreV1Api(api)
        await asyncio.to_thread(kyverno.install, crds)
        result["shapes"] = shapes(cluster)

        if "correctness" in args.parts:
            kyverno.start()
            await until("Kyverno's webhook", lambda: _webhooks(kyverno), within=300)
            result["correctness_kyverno"] = await correctness(
                cluster, core, KyvernoContender(kyverno, api), 0, "kyv"
            )
            kyverno.stop()
            print(f"correctness (kyverno): {result['correctness_kyverno']}", flush=True)

            operator = await start_operator(
                cluster,
                "--admission=policy",
                "--metrics-port=0",
                "--liveness-port=0",
                log_name="op-correct.log",
            )
            result["correctness_operator"] = await correctness(
                cluster, core, OperatorContender(api), 10, "op"
            )
            await stop_operator(operator)
            operator = None
            print(f"correctness (operator): {result['correctness_operator']}", flush=True)

        if "latency" in args.parts:
            result["admission_latency"] = await latency(cluster, api, kyverno, args)
            print(f"admission latency: {result['admission_latency']}", flush=True)
        if "convergence" in args.parts:
            result["convergence"] = await convergence(cluster, api, kyverno, args)
            print(f"convergence: {result['convergence']}", flush=True)
        await api.close()
        return result
    finally:
        await stop_operator(operator)
        if kyverno.procs:
            kyverno.stop()
        cluster.stop()


def _kyverno_version() -> str:
    for line in (REPO / "hack" / "kyverno" / "go.mod").read_text().splitlines():
        if line.startswith("require github.com/kyverno/kyverno "):
            return line.split()[-1]
    return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--per-namespace", type=int, default=200, help="half of them drifted")
    parser.add_argument("--kyverno-within", type=float, default=1200, help="convergence deadline")
    parser.add_argument("--creations", type=int, default=500, help="per namespace and state")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "peers.json")
    parser.add_argument(
        "--parts",
        type=lambda v: set(v.split(",")),
        default=set(PARTS),
        help=f"comma-separated, of {','.join(PARTS)} (default: all)",
    )
    args = parser.parse_args()
    if unknown := args.parts - set(PARTS):
        parser.error(f"--parts: unknown {','.join(sorted(unknown))}; choose from {','.join(PARTS)}")
    report(asyncio.run(run(args)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

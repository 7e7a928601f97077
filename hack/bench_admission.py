"""`make bench` (admission): what each admission path adds to Service creation.

In one run on a local dual-stack control plane, paths side by side: no admission
(the server's single-stack default; and the client setting the policy's fields
itself, the same stored Service: the baseline of "added"), the operator's webhook,
and native MutatingAdmissionPolicies. Every namespace has the same
RequireDualStack [IPv6, IPv4] policy. Sequential creations
measure latency (median and p99), concurrent ones throughput; both are taken in
interleaved rounds, rotating the order, so that a server slowing down over the run
weighs on all alike. Other namespaces' native policies sit beside them (the
API server matches every binding on every request). Results go to
bench-results/admission.json and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from benchkit import (
    GROUP,
    PLURAL,
    VERSION,
    cluster_with_crd,
    policy,
    report,
    start_operator,
    stop_operator,
)
from dualstack_operator.models import IPFamily
from dualstack_operator.native_admission import desired_objects
from dualstack_operator.plan import PolicyView
from localcluster import REPO, free_port

# "explicit": no admission, the client sets the policy's fields itself. The Service
# stored is the same as with admission (two ClusterIPs to allocate, not one): the
# baseline for what the admission mechanisms add.
PATHS = ("none", "explicit", "webhook", "policy")
SPEC = {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}


def svc(name: str, explicit: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"app": name}, "ports": [{"port": 80}]}
    if explicit:
        spec.update(SPEC)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> float:
    return round(1000 * seconds, 2)


async def sequential(
    core: client.CoreV1Api, ns: str, prefix: str, n: int
) -> tuple[list[float], int]:
    latencies, ipv6_first = [], 0
    for i in range(n):
        body = svc(f"{prefix}{i:04}", explicit=ns.startswith("explicit"))
        start = time.perf_counter()
        created = await core.create_namespaced_service(ns, body)
        latencies.append(time.perf_counter() - start)
        ipv6_first += (created.spec.ip_families or [""])[0] == "IPv6"
    return latencies, ipv6_first


async def concurrent(
    core: client.CoreV1Api, ns: str, prefix: str, n: int, limit: int
) -> tuple[float, int]:
    slots = asyncio.Semaphore(limit)
    ipv6_first = 0

    async def one(i: int) -> None:
        nonlocal ipv6_first
        async with slots:
            body = svc(f"{prefix}{i:04}", explicit=ns.startswith("explicit"))
            created = await core.create_namespaced_service(ns, body)
            ipv6_first += (created.spec.ip_families or [""])[0] == "IPv6"

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - start, ipv6_first


async def until_shaped(core: client.CoreV1Api, ns: str, what: str) -> None:
    """Warm-up: create Services until one is born IPv6-first (a deadline, not a sleep)."""
    deadline = time.monotonic() + 60
    i = 0
    while time.monotonic() < deadline:
        created = await core.create_namespaced_service(ns, svc(f"warmup{i}"))
        if (created.spec.ip_families or [""])[0] == "IPv6":
            return
        i += 1
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{what} never shaped a Service in {ns}")


def background_objects(count: int) -> list[dict[str, Any]]:
    """Native admission objects of ``count`` other namespaces, as the operator makes them."""
    objects: list[dict[str, Any]] = []
    for i in range(count):
        ns = f"other-{i:03}"
        view = PolicyView.from_body(
            {"metadata": {"name": "default", "namespace": ns}, "spec": SPEC}
        )
        objects += desired_objects(ns, [view], [IPFamily.IPV4, IPFamily.IPV6])
    return objects


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cluster, api = await cluster_with_crd("bench-admission")
    operators: list[asyncio.subprocess.Process] = []
    try:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        for path in PATHS:
            for ns in (path, f"{path}-conc"):
                await core.create_namespace({"metadata": {"name": ns}})
                body = policy(ns, **SPEC)
                await custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

        others = background_objects(args.other_namespaces)
        listing = json.dumps({"apiVersion": "v1", "kind": "List", "items": others})
        kubectl = [str(cluster.binaries / "kubectl"), f"--kubeconfig={cluster.kubeconfig}"]
        await asyncio.to_thread(
            subprocess.run,
            [*kubectl, "apply", "-f", "-"],
            input=listing.encode(),
            check=True,
            capture_output=True,
        )

        operators.append(
            await start_operator(
                cluster,
                "--namespace=webhook",
                "--namespace=webhook-conc",
                "--admission=webhook",
                "--webhook-address=127.0.0.1",
                f"--webhook-port={free_port()}",
                "--metrics-port=0",
                "--liveness-port=0",
                log_name="operator-webhook.log",
            )
        )
        operators.append(
            await start_operator(
                cluster,
                "--namespace=policy",
                "--namespace=policy-conc",
                # The baseline's namespaces too: their Services cost the same
                # reconciler passes and status writes, so the difference is admission.
                "--namespace=explicit",
                "--namespace=explicit-conc",
                "--admission=policy",
                "--metrics-port=0",
                "--liveness-port=0",
                log_name="operator-policy.log",
            )
        )
        for path in ("webhook", "policy"):
            for ns in (path, f"{path}-conc"):
                await until_shaped(core, ns, path)

        latencies: dict[str, list[float]] = {p: [] for p in PATHS}
        born: dict[str, int] = dict.fromkeys(PATHS, 0)
        per_round = max(1, args.creations // args.rounds)
        for r in range(args.rounds):
            order = PATHS[r % len(PATHS) :] + PATHS[: r % len(PATHS)]
            for path in order:
                lat, v6 = await sequential(core, path, f"r{r:02}-", per_round)
                latencies[path] += lat
                born[path] += v6

        elapsed: dict[str, float] = dict.fromkeys(PATHS, 0.0)
        born_conc: dict[str, int] = dict.fromkeys(PATHS, 0)
        conc_rounds = 3
        per_conc = max(1, args.creations // conc_rounds)
        for r in range(conc_rounds):
            order = PATHS[r % len(PATHS) :] + PATHS[: r % len(PATHS)]
            for path in order:
                took, v6 = await concurrent(
                    core, f"{path}-conc", f"c{r}-", per_conc, args.concurrency
                )
                elapsed[path] += took
                born_conc[path] += v6
        await api.close()

        base = latencies["explicit"]
        result: dict[str, Any] = {
            "creations_per_path": per_round * args.rounds,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "other_namespaces_with_native_policies": args.other_namespaces,
        }
        for path in PATHS:
            lat = latencies[path]
            result[path] = {
                "create_ms_median": ms(quantile(lat, 0.5)),
                "create_ms_p99": ms(quantile(lat, 0.99)),
                # Over the same Service created with its fields set by the client.
                "added_ms_median": ms(quantile(lat, 0.5) - quantile(base, 0.5)),
                "added_ms_p99": ms(quantile(lat, 0.99) - quantile(base, 0.99)),
                "creations_per_s": round(per_conc * conc_rounds / elapsed[path], 1),
                "born_ipv6_first_sequential": born[path],
                "born_ipv6_first_concurrent": born_conc[path],
            }
        return result
    finally:
        for operator in operators:
            await stop_operator(operator)
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--creations", type=int, default=1000, help="per path (sequential)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--other-namespaces", type=int, default=50)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "admission.json")
    args = parser.parse_args()
    report(asyncio.run(run(args)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

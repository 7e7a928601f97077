"""`make bench`: the reconciler at scale on the local control plane.

2,000 Services across 20 namespaces (half drifted, half compliant) get a
PreferDualStack policy each; measured in one run:
  (a) policy creation -> every policy reports all its Services compliant;
  (b) operator writes per drifted and per compliant Service, from the API
      server's audit log (not the operator's own bookkeeping);
  (c) the operator's peak RSS (VmHWM);
  (d) the same convergence by a bare kubernetes-asyncio client patching an
      identical set of Services as fast as the server accepts; ratio (a)/(d);
  (e) /metrics at this scale: bytes, series, scrape time.
Results go to bench-results/reconciler.json and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.request
from collections import Counter
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
from localcluster import REPO, LocalCluster, free_port

PATCH = {"spec": {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]}}


def services(n: int) -> list[dict[str, Any]]:
    """Half drifted (defaulted SingleStack), half already compliant."""
    out = []
    for i in range(n):
        spec: dict[str, Any] = {"selector": {"app": f"a{i}"}, "ports": [{"port": 80}]}
        name = f"d{i:03}"
        if i % 2:
            spec["ipFamilyPolicy"] = "PreferDualStack"
            name = f"c{i:03}"
        out.append(
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}
        )
    return out


async def gather_limited(limit: int, coros: list[Any]) -> list[Any]:
    slots = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with slots:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def populate(api: client.ApiClient, namespaces: list[str], per_ns: int) -> None:
    core = client.CoreV1Api(api)
    await gather_limited(
        8, [core.create_namespace({"metadata": {"name": ns}}) for ns in namespaces]
    )
    await gather_limited(
        32,
        [core.create_namespaced_service(ns, svc) for ns in namespaces for svc in services(per_ns)],
    )


async def bare_convergence(api: client.ApiClient, namespaces: list[str], limit: int) -> float:
    """List, then patch every single-stack Service, as fast as the server accepts."""
    core = client.CoreV1Api(api)
    start = time.monotonic()
    lists = await asyncio.gather(*(core.list_namespaced_service(ns) for ns in namespaces))
    todo = [
        (svc.metadata.namespace, svc.metadata.name)
        for lst in lists
        for svc in lst.items
        if len(svc.spec.ip_families or []) < 2
    ]
    await gather_limited(
        limit,
        [
            core.patch_namespaced_service(
                name, ns, PATCH, _content_type="application/merge-patch+json"
            )
            for ns, name in todo
        ],
    )
    return time.monotonic() - start


async def wait_compliant(api: client.ApiClient, namespaces: list[str], per_ns: int) -> None:
    custom = client.CustomObjectsApi(api)
    wanted = set(namespaces)
    while True:
        found = await custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        done = {
            p["metadata"]["namespace"]
            for p in found["items"]
            if (p.get("status") or {}).get("compliantServices") == per_ns
        }
        if wanted <= done:
            return
        await asyncio.sleep(0.1)


def measure_scrape(port: int, rounds: int = 20) -> dict[str, Any]:
    """Size, series and median/max time of /metrics at this scale."""
    times, body = [], b""
    for _ in range(rounds):
        start = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read()
        times.append(time.perf_counter() - start)
    lines = body.decode().splitlines()
    series = [line for line in lines if line and not line.startswith("#")]
    times.sort()
    return {
        "scrape_bytes": len(body),
        "scrape_series": len(series),
        "scrape_series_dualstack": sum(1 for line in series if line.startswith("dualstack_")),
        "scrape_ms_median": round(1000 * times[len(times) // 2], 1),
        "scrape_ms_max": round(1000 * times[-1], 1),
    }


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def writes(cluster: LocalCluster, prefix: str) -> tuple[Counter[str], Counter[str]]:
    services: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for event in cluster.audit_events():
        ref = event.get("objectRef") or {}
        if event["user"]["username"] != "dualstack-operator":
            continue
        if not str(ref.get("namespace", "")).startswith(prefix):
            continue
        if (event.get("responseStatus") or {}).get("code", 0) >= 300:
            continue
        key = f"{ref['namespace']}/{ref.get('name')}"
        if ref.get("resource") == "services" and "dryRun" not in event.get("requestURI", ""):
            services[key] += 1
        elif ref.get("subresource") == "status":
            statuses[key] += 1
    return services, statuses


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cluster, api = await cluster_with_crd("bench")
    operator: asyncio.subprocess.Process | None = None
    try:
        ns_op = [f"op-{i:02}" for i in range(args.namespaces)]
        ns_bare = [f"bare-{i:02}" for i in range(args.namespaces)]
        t = time.monotonic()
        await populate(api, ns_op + ns_bare + ["warmup"], args.per_namespace)
        total = 2 * args.namespaces * args.per_namespace
        print(f"created {total} Services in {time.monotonic() - t:.1f}s")

        metrics_port, liveness_port = free_port(), free_port()
        operator = await start_operator(
            cluster,
            "--metrics-address=127.0.0.1",
            f"--metrics-port={metrics_port}",
            f"--liveness-port={liveness_port}",
        )
        custom = client.CustomObjectsApi(api)
        # Warm-up: one policy answered means the operator has listed everything.
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, "warmup", PLURAL, policy("warmup", ipFamilyPolicy="PreferDualStack")
        )
        await wait_compliant(api, ["warmup"], args.per_namespace)

        start = time.monotonic()
        await asyncio.gather(
            *(
                custom.create_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, policy(ns, ipFamilyPolicy="PreferDualStack")
                )
                for ns in ns_op
            )
        )
        await wait_compliant(api, ns_op, args.per_namespace)
        operator_s = time.monotonic() - start
        rss = peak_rss_mib(operator.pid)
        scrape = await asyncio.to_thread(measure_scrape, metrics_port)
        await stop_operator(operator)
        operator = None

        bare_s = await bare_convergence(api, ns_bare, args.bare_concurrency)
        await api.close()

        svc_writes, status_writes = writes(cluster, "op-")
        drifted = [f"{ns}/d{i:03}" for ns in ns_op for i in range(0, args.per_namespace, 2)]
        compliant = [f"{ns}/c{i:03}" for ns in ns_op for i in range(1, args.per_namespace, 2)]
        return {
            "services": args.namespaces * args.per_namespace,
            "namespaces": args.namespaces,
            "operator_convergence_s": round(operator_s, 2),
            "bare_client_convergence_s": round(bare_s, 2),
            "bare_client_concurrency": args.bare_concurrency,
            "ratio_operator_to_bare": round(operator_s / bare_s, 2),
            "writes_per_drifted_service": _dist(svc_writes, drifted),
            "writes_per_compliant_service": _dist(svc_writes, compliant),
            "status_writes_per_policy": _dist(status_writes, [f"{ns}/default" for ns in ns_op]),
            "operator_peak_rss_mib": round(rss, 1),
            **scrape,
        }
    finally:
        await stop_operator(operator)
        cluster.stop()


def _dist(counts: Counter[str], keys: list[str]) -> dict[str, float]:
    values = [counts.get(k, 0) for k in keys]
    return {"min": min(values), "max": max(values), "mean": round(sum(values) / len(values), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--per-namespace", type=int, default=100)
    parser.add_argument("--bare-concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "reconciler.json")
    args = parser.parse_args()
    report(asyncio.run(run(args)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench` (admission): what the webhook adds to Service creation.

In one run on a local dual-stack control plane: sequential creations without a
webhook and with it (latency median and p99), then concurrent creations with and
without it (throughput). Results go to bench-results/admission.json and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
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
from localcluster import REPO, free_port


def svc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def sequential(core: client.CoreV1Api, ns: str, n: int) -> tuple[list[float], int]:
    latencies, ipv6_first = [], 0
    for i in range(n):
        start = time.perf_counter()
        created = await core.create_namespaced_service(ns, svc(f"s{i:04}"))
        latencies.append(time.perf_counter() - start)
        ipv6_first += (created.spec.ip_families or [""])[0] == "IPv6"
    return latencies, ipv6_first


async def concurrent(core: client.CoreV1Api, ns: str, n: int, limit: int) -> tuple[float, int]:
    slots = asyncio.Semaphore(limit)
    ipv6_first = 0

    async def one(i: int) -> None:
        nonlocal ipv6_first
        async with slots:
            created = await core.create_namespaced_service(ns, svc(f"c{i:04}"))
            ipv6_first += (created.spec.ip_families or [""])[0] == "IPv6"

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - start), ipv6_first


def ms(seconds: float) -> float:
    return round(1000 * seconds, 2)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cluster, api = await cluster_with_crd("bench-admission")
    operator: asyncio.subprocess.Process | None = None
    try:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        namespaces = ["plain", "plain-conc", "hooked", "hooked-conc"]
        for ns in namespaces:
            await core.create_namespace({"metadata": {"name": ns}})
            body = policy(ns, ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"])
            await custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

        without, _ = await sequential(core, "plain", args.creations)
        without_tput, _ = await concurrent(core, "plain-conc", args.creations, args.concurrency)

        operator = await start_operator(
            cluster,
            "--namespace=hooked",
            "--namespace=hooked-conc",
            "--admission",
            "--webhook-address=127.0.0.1",
            f"--webhook-port={free_port()}",
            "--metrics-port=0",
            "--liveness-port=0",
        )
        # Warm-up: wait until the webhook shapes new Services.
        for i in range(600):
            created = await core.create_namespaced_service("hooked", svc(f"warmup{i}"))
            if (created.spec.ip_families or [""])[0] == "IPv6":
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the webhook never answered")

        with_hook, born_v6 = await sequential(core, "hooked", args.creations)
        with_tput, born_v6_conc = await concurrent(
            core, "hooked-conc", args.creations, args.concurrency
        )
        await api.close()
        return {
            "creations": args.creations,
            "concurrency": args.concurrency,
            "create_ms_median_without_webhook": ms(quantile(without, 0.5)),
            "create_ms_p99_without_webhook": ms(quantile(without, 0.99)),
            "create_ms_median_with_webhook": ms(quantile(with_hook, 0.5)),
            "create_ms_p99_with_webhook": ms(quantile(with_hook, 0.99)),
            "added_ms_median": ms(quantile(with_hook, 0.5) - quantile(without, 0.5)),
            "added_ms_p99": ms(quantile(with_hook, 0.99) - quantile(without, 0.99)),
            "creations_per_s_without_webhook": round(without_tput, 1),
            "creations_per_s_with_webhook": round(with_tput, 1),
            "born_ipv6_first_sequential": born_v6,
            "born_ipv6_first_concurrent": born_v6_conc,
        }
    finally:
        await stop_operator(operator)
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--creations", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "admission.json")
    args = parser.parse_args()
    report(asyncio.run(run(args)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

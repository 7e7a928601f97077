"""`make bench` (namespaces): the reconciler over many small namespaces.

By default 10,000 namespaces, each with one PreferDualStack policy and two compliant
dual-stack Services, on a local dual-stack control plane. Measured in one run:
  (a) the first convergence: operator start -> every policy's status written, with
      the operator's CPU; against a bare client writing statuses of the same shape by
      server-side apply, half before the operator runs and half after (on the same
      policies, under a field manager of its own), as the server slows down over a
      run: the ratio of time per status write;
  (b) the status writes per policy (from the audit log);
  (c) a steady-state full pass (the periodic resync over a quiet cluster): its wall
      and CPU time from the operator's log, and the writes it made (none expected);
  (d) the operator's CPU over a window at steady state, and its peak RSS.
Results go to bench-results/namespaces.json and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from bench import cpu_seconds, gather_limited, peak_rss_mib, wait_log
from benchkit import (
    cluster_with_crd,
    policy,
    report,
    start_operator,
    stop_operator,
)
from dualstack_operator.api.names import GROUP, PLURAL, VERSION
from localcluster import REPO

SPEC = {"ipFamilyPolicy": "PreferDualStack"}
SWEEP_LOG_LINE = r"full pass: (\d+) namespaces.*?, ([\d.]+)s \(([\d.]+)s CPU\)"
APPLY = "application/apply-patch+yaml"


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"port": 80}], "ipFamilyPolicy": "PreferDualStack"},
    }


async def populate(api: client.ApiClient, namespaces: list[str], per_ns: int) -> None:
    core: Any = client.CoreV1Api(api)  # bodies are plain dicts
    custom: Any = client.CustomObjectsApi(api)

    async def one(ns: str) -> None:
        await core.create_namespace({"metadata": {"name": ns}})
        for i in range(per_ns):
            await core.create_namespaced_service(ns, service(f"s{i}"))
        await custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, policy(ns, **SPEC))

    await gather_limited(16, [one(ns) for ns in namespaces])


def bare_status(generation: int, per_ns: int) -> dict[str, Any]:
    """A status of the operator's shape (two conditions and the counts)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "observedGeneration": generation,
        "matchedServices": per_ns,
        "compliantServices": per_ns,
        "driftedServices": 0,
        "excludedServices": 0,
        "conditions": [
            {
                "type": f"Bench{kind}",
                "status": "True",
                "reason": "Written",
                "message": "by the bench's bare client",
                "lastTransitionTime": stamp,
                "observedGeneration": generation,
            }
            for kind in ("Ready", "Compliant")
        ],
    }


async def bare_writes(
    api: client.ApiClient, namespaces: list[str], per_ns: int, limit: int
) -> float:
    """Server-side applies of a status to each namespace's policy, as fast as accepted."""
    custom: Any = client.CustomObjectsApi(api)
    start = time.monotonic()
    await gather_limited(
        limit,
        [
            custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                ns,
                PLURAL,
                "default",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "DualStackPolicy",
                    "metadata": {"name": "default", "namespace": ns},
                    "status": bare_status(1, per_ns),
                },
                field_manager="bench-bare",
                force=True,
                _content_type=APPLY,
            )
            for ns in namespaces
        ],
    )
    return time.monotonic() - start


async def statuses_written(api: client.ApiClient, per_ns: int) -> int:
    custom: Any = client.CustomObjectsApi(api)
    found = await custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    return sum(
        1
        for p in found["items"]
        if (p.get("status") or {}).get("compliantServices") == per_ns
        and any(
            c.get("type") == "Compliant" for c in (p.get("status") or {}).get("conditions") or []
        )
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cluster, api = await cluster_with_crd("bench-namespaces")
    operator = None
    try:
        namespaces = [f"ns-{i:05}" for i in range(args.namespaces)]
        t = time.monotonic()
        await populate(api, namespaces, args.services_per_namespace)
        print(
            f"created {len(namespaces)} namespaces with a policy and "
            f"{args.services_per_namespace} Services each in {time.monotonic() - t:.0f}s",
            flush=True,
        )
        half = len(namespaces) // 2
        bare_s = await bare_writes(
            api, namespaces[:half], args.services_per_namespace, args.bare_concurrency
        )

        log = cluster.state_dir / "operator.log"
        began = time.monotonic()
        operator = await start_operator(
            cluster,
            "--metrics-port=0",
            "--liveness-port=0",
            f"--resync-seconds={args.resync_seconds}",
            log_name="operator.log",
        )
        # The first full pass is logged once every namespace's status is written.
        first = await wait_log(log, SWEEP_LOG_LINE, began, within=3600)
        first_s = time.monotonic() - began
        first_cpu = cpu_seconds(operator.pid)
        written = await statuses_written(api, args.services_per_namespace)
        if written != len(namespaces):
            raise RuntimeError(f"{written} of {len(namespaces)} statuses after the first pass")
        status_writes = cluster.audit.by_object("ns-")[1]
        print(f"first convergence in {first_s:.1f}s, {first_cpu:.1f}s CPU", flush=True)

        # The periodic resync over a quiet cluster: a second full pass in the log.
        before = sum(cluster.audit.by_object("ns-")[0].values()) + sum(status_writes.values())
        text_after = log.read_text().count("full pass:")
        deadline = time.monotonic() + args.resync_seconds * 3 + 600
        while log.read_text().count("full pass:") <= text_after:
            if time.monotonic() > deadline:
                raise TimeoutError("no resync pass")
            await asyncio.sleep(1)
        resync = list(re.finditer(SWEEP_LOG_LINE, log.read_text()))[-1]
        cpu0, t0 = cpu_seconds(operator.pid), time.monotonic()
        await asyncio.sleep(args.steady_seconds)  # the measured window itself
        steady_cpu = (cpu_seconds(operator.pid) - cpu0) / (time.monotonic() - t0)
        services_w, statuses_w = cluster.audit.by_object("ns-")
        steady_writes = sum(services_w.values()) + sum(statuses_w.values()) - before
        rss = peak_rss_mib(operator.pid)
        await stop_operator(operator)
        operator = None

        bare_s += await bare_writes(
            api, namespaces[half:], args.services_per_namespace, args.bare_concurrency
        )
        await api.close()
        per_policy = [status_writes.get(f"{ns}/default", 0) for ns in namespaces]
        operator_per_write = first_s / max(1, sum(per_policy))
        bare_per_write = bare_s / len(namespaces)
        return {
            "namespaces": len(namespaces),
            "services_per_namespace": args.services_per_namespace,
            "first_convergence_s": round(first_s, 1),
            "first_convergence_cpu_s": round(first_cpu, 1),
            "first_full_pass_s": float(first.group(2)),
            "first_full_pass_cpu_s": float(first.group(3)),
            "bare_client_status_writes_s": round(bare_s, 1),
            "bare_client_concurrency": args.bare_concurrency,
            "ratio_operator_to_bare_per_status_write": round(
                operator_per_write / bare_per_write, 2
            ),
            "status_writes_per_policy": {
                "min": min(per_policy),
                "max": max(per_policy),
                "mean": round(sum(per_policy) / len(per_policy), 3),
            },
            "steady_full_pass_namespaces": int(resync.group(1)),
            "steady_full_pass_s": float(resync.group(2)),
            "steady_full_pass_cpu_s": float(resync.group(3)),
            "steady_full_pass_cpu_ms_per_namespace": round(
                1000 * float(resync.group(3)) / int(resync.group(1)), 3
            ),
            "steady_state_cpu_percent_of_a_core": round(100 * steady_cpu, 2),
            "steady_state_seconds": args.steady_seconds,
            "steady_state_writes": steady_writes,
            "operator_peak_rss_mib": round(rss, 1),
        }
    finally:
        await stop_operator(operator)
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--namespaces", type=int, default=10_000)
    parser.add_argument("--services-per-namespace", type=int, default=2)
    parser.add_argument("--bare-concurrency", type=int, default=16)
    parser.add_argument("--resync-seconds", type=float, default=60.0)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "namespaces.json")
    args = parser.parse_args()
    report(asyncio.run(run(args)), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

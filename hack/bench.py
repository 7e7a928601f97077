"""`make bench`: the reconciler at scale on the local control plane.

Three shapes, each on a fresh control plane with 20,000 watched Services: 10,000
governed Services in 50 namespaces of 200 (half drifted, half compliant; a
PreferDualStack policy each) plus 10,000 more in 50 namespaces without a policy, which
the operator watches too; the same in 20 namespaces of 500; and one namespace of 5,000
Services, all drifted, beside one more of 5,000 for the bare client and 10,000 in 20
namespaces nobody governs. Measured in each run:
  (a) cache ready: operator start -> its first complete list of every Service;
  (b) policy creation -> every policy reports all its Services compliant;
  (c) the same convergence by a bare kubernetes-asyncio client (list + patch
      as fast as the server accepts) on the other 10,000; ratio (b)/(c);
  (d) operator writes per drifted / compliant Service and status writes per
      policy, from the API server's audit log (not the operator's bookkeeping), and
      the operator's CPU per Service write during the convergence;
  (e) the operator's peak RSS (VmHWM) and its CPU over 60 s with nothing drifting;
  (f) a restart with every Service already compliant: cache ready again, the
      first full pass (the same work as a periodic resync: its wall and CPU
      time, from the operator's log) and the writes it made (should be none);
  (g) /metrics at this scale: bytes, series, scrape time.
Results go to bench-results/reconciler.json (one entry per shape) and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from benchkit import (
    cluster_with_crd,
    policy,
    report,
    start_operator,
    stop_operator,
)
from dualstack_operator.api.names import GROUP, PLURAL, VERSION
from localcluster import REPO, LocalCluster, Process, free_port

PY_SPY = Path(sys.executable).with_name("py-spy")
PATCH = {"spec": {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]}}


def services(n: int, drifted_only: bool = False) -> list[dict[str, Any]]:
    """Half drifted (defaulted SingleStack), half already compliant (or all drifted).

    No selectors: the IP families do not depend on them, and 20,000 EndpointSlice
    pairs would only make the controller-manager compete for the same two cores.
    """
    out = []
    for i in range(n):
        spec: dict[str, Any] = {"ports": [{"port": 80}]}
        name = f"d{i:03}"
        if i % 2 and not drifted_only:
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


async def populate(
    api: client.ApiClient, namespaces: list[str], per_ns: int, drifted_only: bool = False
) -> None:
    core: Any = client.CoreV1Api(api)  # bodies are plain dicts
    await gather_limited(
        8, [core.create_namespace({"metadata": {"name": ns}}) for ns in namespaces]
    )
    await gather_limited(
        32,
        [
            core.create_namespaced_service(ns, svc)
            for ns in namespaces
            for svc in services(per_ns, drifted_only)
        ],
    )


async def bare_convergence(api: client.ApiClient, namespaces: list[str], limit: int) -> float:
    """List, then patch every single-stack Service, as fast as the server accepts."""
    core: Any = client.CoreV1Api(api)  # bodies are plain dicts
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
    custom: Any = client.CustomObjectsApi(api)
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def wait_log(path: Path, pattern: str, began: float, within: float = 600) -> re.Match[str]:
    """The first log line matching ``pattern``, polled until a deadline."""
    regex = re.compile(pattern)
    while time.monotonic() - began < within:
        found = regex.search(await asyncio.to_thread(_text, path))
        if found:
            return found
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no log line matching {pattern!r} in {path} after {within}s")


async def start_measured(cluster: LocalCluster, log_name: str, *args: str) -> Operator:
    """Starts the operator and waits until its Service cache has listed everything."""
    log = cluster.state_dir / log_name
    metrics_port, liveness_port = free_port(), free_port()
    began = time.monotonic()
    proc = await start_operator(
        cluster,
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        f"--liveness-port={liveness_port}",
        "--resync-seconds=3600",  # no periodic pass inside the measured windows
        *args,
        log_name=log_name,
    )
    ready = await wait_log(log, r"Service cache ready: (\d+) Services", began)
    return Operator(proc, log, metrics_port, time.monotonic() - began, int(ready.group(1)))


class Operator:
    def __init__(
        self,
        proc: Process,
        log: Path,
        metrics_port: int,
        ready_s: float,
        cached: int,
    ) -> None:
        self.proc, self.log, self.metrics_port = proc, log, metrics_port
        self.ready_s, self.cached = ready_s, cached


@dataclass(frozen=True)
class Shape:
    name: str
    namespaces: int  # governed, and as many for the bare client
    per_namespace: int
    drifted_only: bool = False
    others: int = 0  # namespaces nobody governs (to reach the Services watched)
    others_per_namespace: int = 0


SHAPES = {
    "200": Shape("200", 50, 200),
    "500": Shape("500", 20, 500),
    "5000x1": Shape("5000x1", 1, 5000, drifted_only=True, others=20, others_per_namespace=500),
}


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in args.shapes:
        out[f"per_namespace_{name}"] = await run(args, SHAPES[name])
        print(json.dumps(out[f"per_namespace_{name}"]), flush=True)
    return out


async def run(args: argparse.Namespace, shape: Shape) -> dict[str, Any]:
    cluster, api = await cluster_with_crd("bench")
    operator: Operator | None = None
    try:
        per_ns = shape.per_namespace
        ns_op = [f"op-{i:02}" for i in range(shape.namespaces)]
        ns_bare = [f"bare-{i:02}" for i in range(shape.namespaces)]
        t = time.monotonic()
        await populate(api, ns_op + ns_bare, per_ns, shape.drifted_only)
        await populate(api, ["warmup"], min(per_ns, 500))
        others = [f"other-{i:02}" for i in range(shape.others)]
        if others:
            await populate(api, others, shape.others_per_namespace)
        total = (
            2 * shape.namespaces * per_ns
            + min(per_ns, 500)
            + shape.others * shape.others_per_namespace
        )
        print(f"created {total} Services in {time.monotonic() - t:.1f}s", flush=True)
        # The server slows down as a run goes on (measured: whichever converges later
        # takes about 30% longer), so by default the bare client's namespaces are split
        # around the operator's phase: half before, half after.
        before, after = {
            "first": (ns_bare, []),
            "last": ([], ns_bare),
            "split": (ns_bare[: len(ns_bare) // 2], ns_bare[len(ns_bare) // 2 :]),
        }[args.bare_order]
        bare_s = await bare_convergence(api, before, args.bare_concurrency) if before else 0.0

        operator = await start_measured(cluster, "operator.log")
        first_ready_s = operator.ready_s
        print(f"cache ready in {operator.ready_s:.1f}s ({operator.cached} Services)", flush=True)
        custom: Any = client.CustomObjectsApi(api)
        # Warm-up: the first policy answered means the operator's passes have begun.
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, "warmup", PLURAL, policy("warmup", ipFamilyPolicy="PreferDualStack")
        )
        await wait_compliant(api, ["warmup"], min(per_ns, 500))

        profiler = await start_profile(args.profile, operator.proc.pid, shape.name)
        start = time.monotonic()
        cpu_start = cpu_seconds(operator.proc.pid)
        await asyncio.gather(
            *(
                custom.create_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, policy(ns, ipFamilyPolicy="PreferDualStack")
                )
                for ns in ns_op
            )
        )
        await wait_compliant(api, ns_op, per_ns)
        operator_s = time.monotonic() - start
        convergence_cpu = cpu_seconds(operator.proc.pid) - cpu_start
        await stop_profile(profiler)
        print(f"operator converged in {operator_s:.1f}s", flush=True)
        svc_writes, status_writes = cluster.audit.by_object("op-")

        # Steady state: nothing drifts; the operator should be (nearly) idle.
        cpu0, t0 = cpu_seconds(operator.proc.pid), time.monotonic()
        await asyncio.sleep(args.steady_seconds)  # the measured window itself
        steady_cpu = (cpu_seconds(operator.proc.pid) - cpu0) / (time.monotonic() - t0)
        steady_writes = sum(cluster.audit.by_object("op-")[0].values()) - sum(svc_writes.values())
        rss = peak_rss_mib(operator.proc.pid)
        scrape = await asyncio.to_thread(measure_scrape, operator.metrics_port)
        await stop_operator(operator.proc)

        # Restart over a compliant cluster: its first pass is a full pass.
        writes_before = sum(cluster.audit.by_object("op-")[0].values())
        operator = await start_measured(cluster, "operator-restart.log")
        restart_ready_s = operator.ready_s
        full = await wait_log(
            operator.log,
            r"full pass: (\d+) namespaces.*?, ([\d.]+)s \(([\d.]+)s CPU\)",
            time.monotonic(),
        )
        restart_rss = peak_rss_mib(operator.proc.pid)
        await stop_operator(operator.proc)
        operator = None
        restart_writes = sum(cluster.audit.by_object("op-")[0].values()) - writes_before

        if after:
            bare_s += await bare_convergence(api, after, args.bare_concurrency)
        print(f"bare client converged in {bare_s:.1f}s in all", flush=True)
        await api.close()

        step = 1 if shape.drifted_only else 2
        drifted = [f"{ns}/d{i:03}" for ns in ns_op for i in range(0, per_ns, step)]
        compliant = [f"{ns}/c{i:03}" for ns in ns_op for i in range(1, per_ns, 2)]
        if shape.drifted_only:
            compliant = []
        service_writes = sum(svc_writes.values())
        return {
            "services_watched": total,
            "services_governed": shape.namespaces * per_ns,
            "namespaces_with_policy": shape.namespaces,
            "services_per_namespace": per_ns,
            "cache_ready_s": round(first_ready_s, 2),
            "operator_convergence_s": round(operator_s, 2),
            "bare_client_convergence_s": round(bare_s, 2),
            "bare_client_concurrency": args.bare_concurrency,
            "bare_client_order": args.bare_order,
            "ratio_operator_to_bare": round(operator_s / bare_s, 2),
            "convergence_cpu_s": round(convergence_cpu, 1),
            "cpu_ms_per_service_write": round(1000 * convergence_cpu / max(1, service_writes), 2),
            "writes_per_drifted_service": _dist(svc_writes, drifted),
            "writes_per_compliant_service": _dist(svc_writes, compliant) if compliant else None,
            "status_writes_per_policy": _dist(status_writes, [f"{ns}/default" for ns in ns_op]),
            "operator_peak_rss_mib": round(rss, 1),
            "steady_state_cpu_percent_of_a_core": round(100 * steady_cpu, 2),
            "steady_state_seconds": args.steady_seconds,
            "steady_state_service_writes": steady_writes,
            "restart_cache_ready_s": round(restart_ready_s, 2),
            "restart_full_pass_namespaces": int(full.group(1)),
            "restart_full_pass_s": float(full.group(2)),
            "restart_full_pass_cpu_s": float(full.group(3)),
            "restart_service_writes": restart_writes,
            "restart_peak_rss_mib": round(restart_rss, 1),
            **scrape,
        }
    finally:
        if operator is not None:
            await stop_operator(operator.proc)
        cluster.stop()


async def start_profile(
    out: Path | None, pid: int, shape: str
) -> asyncio.subprocess.Process | None:
    """py-spy sampling the operator over the convergence (``--profile``): collapsed
    stacks, one line per stack and its count, for `sort -k2 -n` or a flame graph."""
    if out is None:
        return None
    path = out / f"convergence-{shape}.txt"
    argv = [str(PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--rate", "50"]
    proc = await asyncio.create_subprocess_exec(
        *argv, "--output", str(path), stdout=asyncio.subprocess.DEVNULL
    )
    print(f"profiling the operator into {path}", flush=True)
    return proc


async def stop_profile(proc: asyncio.subprocess.Process | None) -> None:
    """py-spy writes its file on SIGINT."""
    if proc is None or proc.returncode is not None:
        return
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), 60)


def _dist(counts: Counter[str], keys: list[str]) -> dict[str, float]:
    values = [counts.get(k, 0) for k in keys]
    return {"min": min(values), "max": max(values), "mean": round(sum(values) / len(values), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--shapes", nargs="+", choices=sorted(SHAPES), default=["200", "500", "5000x1"]
    )
    parser.add_argument("--bare-concurrency", type=int, default=32)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument(
        "--bare-order",
        choices=["split", "first", "last"],
        default="split",
        help="when the bare client converges its set: half before and half after the "
        "operator (default), or all before, or all after",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "reconciler.json")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the operator with py-spy over each convergence into "
        "DIR/convergence-<shape>.txt (collapsed stacks; needs py-spy in the venv)",
    )
    args = parser.parse_args()
    if args.profile is not None:
        if not PY_SPY.exists():
            parser.error(f"--profile needs py-spy: {PY_SPY.with_name('pip')} install py-spy")
        args.profile.mkdir(parents=True, exist_ok=True)
    report(asyncio.run(run_all(args)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench` (admission): what native admission adds to every Service create, as
the number of governed namespaces grows.

One run on a local dual-stack control plane. The operator (--admission=policy,
cluster-wide) governs the measured namespace plus 0, then 100, then 1,000 other
namespaces (a RequireDualStack [IPv6, IPv4] policy each: one parameter each, one
shared policy with one binding). At each size the operator is stopped, its objects
stay, and Service creations are timed in rounds that alternate between the objects as
the operator left them and the same API server with no admission objects at all (the
shared bindings removed, so nothing is matched; the parameters alone cost nothing),
so that a server slowing down as the run goes on weighs on both alike. Each block
follows a switch, and its first creations are not timed. Each round
creates Services one after the other in two namespaces: one no policy governs (the
server's defaults) and one a policy governs (no family fields, which admission fills
in; without admission the client sets the policy's fields itself, so the same Service
is stored: two ClusterIPs allocated, not one). The Services select no pods: the
controller-manager would otherwise write an EndpointSlice and an Endpoints for each,
on the same two cores, beside the next creation: noise in the p99s, and admission
never looks at the selector. A creation is timed from its request to its response's
last byte, with the client's garbage collector off (the response is parsed after).
The webhook is measured the same way at the largest size (its configuration removed
and put back). The API server's RSS is read at each size.
The measured Services are deleted after each block, so every block starts from the same
two empty namespaces: a create's latency grows with the Services already stored (from 9
to 30 ms over 2,600 per namespace in one run of 10 rounds), so a later block would be
slower than an earlier one in either state, and the tail of a whole run would be its
last blocks'. Results go to bench-results/admission.json and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from benchkit import (
    cluster_with_crd,
    policy,
    report,
    start_operator,
    stop_operator,
)
from dualstack_operator.admission.cel import POLICY_NAME
from dualstack_operator.api.names import ADMISSION_PLURAL, GROUP, PLURAL, VERSION
from localcluster import REPO, LocalCluster, free_port

SPEC = {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}
PLAIN, GOVERNED = "plain", "governed"  # the measured namespaces


def svc(name: str, explicit: bool = False, selector: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"port": 80}]}
    if selector:
        spec["selector"] = {"app": name}
    if explicit:
        spec.update(SPEC)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> float:
    return round(1000 * seconds, 2)


class Latencies:
    """Creation times in the namespace without a policy and the one with."""

    def __init__(self) -> None:
        self.plain: list[float] = []
        self.governed: list[float] = []
        self.ipv6_first = 0


def _stats(lat: list[float]) -> dict[str, float]:
    return {"median_ms": ms(quantile(lat, 0.5)), "p99_ms": ms(quantile(lat, 0.99))}


def compare(on: Latencies, off: Latencies, rss: float) -> dict[str, Any]:
    out: dict[str, Any] = {"apiserver_rss_mib": round(rss, 1)}
    for where, a, b in (
        ("without_policy", on.plain, off.plain),
        ("with_policy", on.governed, off.governed),
    ):
        out[where] = {
            "admission": _stats(a),
            "no_admission_objects": _stats(b),
            "added_median_ms": ms(quantile(a, 0.5) - quantile(b, 0.5)),
            "added_p99_ms": ms(quantile(a, 0.99) - quantile(b, 0.99)),
        }
    out["born_ipv6_first"] = f"{on.ipv6_first}/{len(on.governed)}"
    return out


async def create(core: Any, ns: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """One creation, timed from the request until the response's last byte; the body is
    parsed after the clock stops (the client's model decoding is no part of admission)."""
    began = time.perf_counter()
    response = await core.create_namespaced_service(ns, body, _preload_content=False)
    data = await response.read()
    took = time.perf_counter() - began
    response.release()
    if response.status != 201:
        raise RuntimeError(f"creating {ns}/{body['metadata']['name']}: {response.status} {data!r}")
    made: dict[str, Any] = json.loads(data)
    return took, made


async def measure(
    core: Any, into: Latencies, prefix: str, n: int, explicit: bool, selector: bool = True
) -> None:
    """``n`` creations in each namespace, alternating between them. The client's cyclic
    garbage collector is off meanwhile: a full collection of its heap takes tens of
    milliseconds, and where one fell would decide a p99 of a few hundred samples."""
    gc.collect()
    gc.disable()
    try:
        for i in range(n):
            for ns in (PLAIN, GOVERNED) if i % 2 == 0 else (GOVERNED, PLAIN):
                explicit_here = explicit and ns == GOVERNED
                body = svc(f"{prefix}-{i:04}", explicit=explicit_here, selector=selector)
                took, made = await create(core, ns, body)
                (into.plain if ns == PLAIN else into.governed).append(took)
                if ns == GOVERNED and not explicit:
                    into.ipv6_first += (made["spec"].get("ipFamilies") or [""])[0] == "IPv6"
    finally:
        gc.enable()


def rss_mib(cluster: LocalCluster) -> float:
    pid = cluster.pid("kube-apiserver")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def until(
    what: str,
    probe: Any,
    within: float = 900,
    every: float = 0.2,
    no: Callable[[ApiException], bool] = lambda err: err.status == 429,
) -> None:
    """Polls ``probe`` until it holds; an API error for which ``no`` holds counts as a no
    (by default a 429, as from a CRD still initializing), any other is raised."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if await probe():
                return
        except ApiException as err:
            if not no(err):
                raise
        await asyncio.sleep(every)
    raise TimeoutError(f"{what}: not within {within}s")


async def shaped(core: Any) -> bool:
    """Whether admission acts in the governed namespace now (a dry run)."""
    made = await core.create_namespaced_service(
        GOVERNED, svc(f"probe-{time.time_ns()}"), dry_run="All"
    )
    return bool((made.spec.ip_families or [""])[0] == "IPv6")


class Switch(Protocol):
    """Admission on and off, between the rounds (``Toggle``, or a peer's own)."""

    async def off(self, core: Any) -> None: ...

    async def on(self, core: Any) -> None: ...


class Toggle:
    """Takes the admission objects that match requests away and puts them back."""

    def __init__(self, api: client.ApiClient, kinds: list[tuple[str, str]]) -> None:
        self.api: Any = client.AdmissionregistrationV1Api(api)
        self.kinds = kinds  # (resource as the client names it, object name)
        self.saved: list[tuple[str, dict[str, Any]]] = []

    async def off(self, core: Any) -> None:
        self.saved = []
        for resource, name in self.kinds:
            obj = self.api.api_client.sanitize_for_serialization(
                await getattr(self.api, f"read_{resource}")(name)
            )
            for key in ("resourceVersion", "uid", "creationTimestamp", "generation"):
                obj["metadata"].pop(key, None)
            obj["metadata"].pop("managedFields", None)
            obj.pop("status", None)
            self.saved.append((resource, obj))
            await getattr(self.api, f"delete_{resource}")(name)
        await until("admission to stop", lambda: _not(shaped(core)), within=120)

    async def on(self, core: Any) -> None:
        for resource, obj in self.saved:
            await getattr(self.api, f"create_{resource}")(obj)
        await until("admission to act again", lambda: shaped(core), within=120)


async def _not(probe: Any) -> bool:
    return not await probe


WARMUP = 20  # creations per namespace after each switch, not timed


async def rounds(
    core: Any, toggle: Switch, name: str, n: int, count: int, selector: bool = True
) -> tuple[Latencies, Latencies]:
    """``count`` rounds of a block with the objects in place and one without; ends with
    them in place. Every block follows a switch (on, off, on, off...), and its first
    ``WARMUP`` creations per namespace are not timed: the server is busy for a while
    after a switch (its policies recompiled, the garbage collected), and a block that
    followed no switch would be measured on a quieter server than one that did. Each
    block's Services are deleted before the next switch (see the module's docstring).
    ``selector``: the Services select pods (the controller-manager then writes an
    EndpointSlice and an Endpoints for each, beside the next creation)."""
    on, off = Latencies(), Latencies()
    per = max(1, n // count)
    for r in range(count):
        for state in ("off", "on"):
            await (toggle.off if state == "off" else toggle.on)(core)
            prefix, explicit = f"{name}-{state}-{r}", state == "off"
            await measure(core, Latencies(), f"{prefix}-w", WARMUP, explicit, selector)
            await measure(core, off if explicit else on, prefix, per, explicit, selector)
            await clear(core.api_client)
    return on, off


async def clear(api: client.ApiClient) -> None:
    """Deletes the measured Services and waits until they and their EndpointSlices are gone."""
    core: Any = client.CoreV1Api(api)
    slices: Any = client.DiscoveryV1Api(api)

    async def delete(call: Any, ns: str) -> None:
        try:
            await call(ns)
        except ApiException as err:
            # Thousands in one call can outlast the request timeout; the rest goes next time.
            if err.status != 504:
                raise

    async def empty() -> bool:
        left = False
        for ns in (PLAIN, GOVERNED):
            if (await core.list_namespaced_service(ns, limit=1)).items:
                await delete(core.delete_collection_namespaced_service, ns)
                left = True
            # The garbage collector would take minutes over thousands of orphans.
            if (await slices.list_namespaced_endpoint_slice(ns, limit=1)).items:
                await delete(slices.delete_collection_namespaced_endpoint_slice, ns)
                left = True
        return not left

    await until("the measured Services and their EndpointSlices to go", empty, within=600)


async def add_governed(core: Any, custom: Any, start: int, count: int) -> None:
    slots = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        ns = f"other-{i:04}"
        async with slots:
            await core.create_namespace({"metadata": {"name": ns}})
            await custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, policy(ns, **SPEC)
            )

    await asyncio.gather(*(one(i) for i in range(start, start + count)))


async def parameters(custom: Any) -> int:
    found = await custom.list_cluster_custom_object(GROUP, VERSION, ADMISSION_PLURAL)
    return len(found["items"])


BINDINGS = [
    ("mutating_admission_policy_binding", POLICY_NAME),
    ("validating_admission_policy_binding", POLICY_NAME),
]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cluster, api = await cluster_with_crd("bench-admission")
    gc.freeze()  # what is loaded by now stays: the collections between rounds skip it
    operator = None
    try:
        core: Any = client.CoreV1Api(api)  # bodies are plain dicts
        custom: Any = client.CustomObjectsApi(api)
        for ns in (PLAIN, GOVERNED):
            await core.create_namespace({"metadata": {"name": ns}})
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, GOVERNED, PLURAL, policy(GOVERNED, **SPEC)
        )
        result: dict[str, Any] = {
            "creations_per_namespace_per_state": args.creations,
            "rounds": args.rounds,
            "baseline": "the same API server with no admission objects matching (the "
            "bindings removed); the client sets the policy's fields itself",
        }
        raw: dict[str, Any] = {}
        done = 0
        for size in args.sizes:
            await add_governed(core, custom, done, size - done)
            done = size
            operator = await start_operator(
                cluster,
                "--admission=policy",
                "--metrics-port=0",
                "--liveness-port=0",
                log_name=f"operator-policy-{size}.log",
            )
            await until(f"{size + 1} parameters", lambda n=size + 1: _is(parameters(custom), n))
            await until("admission to act", lambda: shaped(core), within=120)
            await stop_operator(operator)
            operator = None
            toggle = Toggle(api, BINDINGS)
            on, off = await rounds(
                core, toggle, f"n{size}", args.creations, args.rounds, selector=False
            )
            result[f"native_{size}"] = compare(on, off, rss_mib(cluster))
            raw[f"native_{size}"] = {"on": vars(on), "off": vars(off)}
            print(f"native at {size}: {result[f'native_{size}']}", flush=True)

        if args.raw:
            args.raw.write_text(json.dumps(raw))
        if args.skip_webhook:
            await api.close()
            return result
        # The webhook at the largest size, for comparison: the native bindings go first.
        await Toggle(api, BINDINGS).off(core)
        operator = await start_operator(
            cluster,
            f"--namespace={GOVERNED}",
            "--admission=webhook",
            "--webhook-address=127.0.0.1",
            f"--webhook-port={free_port()}",
            "--metrics-port=0",
            "--liveness-port=0",
            log_name="operator-webhook.log",
        )
        toggle = Toggle(api, [("mutating_webhook_configuration", "dualstack-operator")])
        await until("the webhook to act", lambda: shaped(core), within=120)
        on, off = await rounds(core, toggle, "webhook", args.creations, args.rounds, selector=False)
        result[f"webhook_{done}"] = compare(on, off, rss_mib(cluster))
        await api.close()
        return result
    finally:
        await stop_operator(operator)
        cluster.stop()


async def _is(count: Any, n: int) -> bool:
    return bool(await count == n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--creations", type=int, default=300, help="per namespace, state and size")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[0, 100, 1000], help="other governed namespaces"
    )
    parser.add_argument(
        "--skip-webhook", action="store_true", help="native admission only (not the webhook)"
    )
    parser.add_argument(
        "--raw", type=Path, help="also write every creation time, in order, block by block"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "admission.json")
    args = parser.parse_args()
    report(asyncio.run(run(args)), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

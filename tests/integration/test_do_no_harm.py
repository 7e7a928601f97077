"""Do no harm: admission never refuses a Service create that the API server accepts.

A property over the space of Service create requests, against the real API server on
three cluster shapes (IPv4-first dual-stack, IPv6-first dual-stack, single-stack
IPv4), under every policy shape (each ipFamilyPolicy with each family order, Enforce
and Audit, namespaced and cluster-wide), on both admission paths (native policies the
operator writes, and its webhook):

- each request is sent with no admission first (a namespace no policy governs, as a
  server-side dry run), then to the governed namespace of the path under test;
- whatever the API server accepts without admission, it accepts with it, and stores
  exactly the fields the pure decision (``admission.mutation``) says;
- an Audit policy warns with what Enforce would set;
- after the reconciler's pass each Service is compliant, or reported with the reason
  the decision gives for it, and no patch the operator sent was refused.

Requests with client-chosen ClusterIPs draw free addresses from the cluster's own
ranges. The paths run one after the other (two operators would both write the cluster
policies' status), with the same seed, so both see the same requests.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st

from dualstack_operator.admission.mutation import mutation
from dualstack_operator.api.models import DriftReason, IPFamily, Mode
from dualstack_operator.core.decision import decide
from dualstack_operator.core.views import PolicyView, ServiceView
from localcluster import SERVICE_CIDRS, LocalCluster, free_port
from support.kube import Kubectl, wait_for
from support.operator_proc import OperatorProcess
from support.rest import Answer, Rest

V4, V6 = "IPv4", "IPv6"
SPECS: list[tuple[str, tuple[str, ...]]] = [
    ("SingleStack", ()),
    ("SingleStack", (V4,)),
    ("SingleStack", (V6,)),
    ("PreferDualStack", ()),
    ("PreferDualStack", (V4,)),
    ("PreferDualStack", (V6,)),
    ("PreferDualStack", (V4, V6)),
    ("PreferDualStack", (V6, V4)),
    ("RequireDualStack", ()),
    ("RequireDualStack", (V4, V6)),
    ("RequireDualStack", (V6, V4)),
]


@dataclass(frozen=True)
class Config:
    """One governed namespace's policy: its spec, mode and scope."""

    ip_family_policy: str
    ip_families: tuple[str, ...]
    mode: str
    scope: str  # "namespace" (a DualStackPolicy) or "cluster" (a ClusterDualStackPolicy)

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"ipFamilyPolicy": self.ip_family_policy, "mode": self.mode}
        if self.ip_families:
            spec["ipFamilies"] = list(self.ip_families)
        return spec


CONFIGS = [
    Config(policy, families, mode, scope)
    for scope in ("namespace", "cluster")
    for mode in ("Enforce", "Audit")
    for policy, families in SPECS
]


def config(
    policy: str, families: tuple[str, ...], mode: str = "Enforce", scope: str = "namespace"
) -> int:
    return CONFIGS.index(Config(policy, families, mode, scope))


@dataclass(frozen=True)
class Request:
    """A Service create request; its addresses are families, made concrete when sent."""

    type: str  # ClusterIP, NodePort, LoadBalancer or ExternalName
    selector: bool
    ip_family_policy: str | None
    ip_families: tuple[str, ...]
    addresses: tuple[str, ...]  # (): none; ("None",): headless; else the chosen families
    via: str = "clusterIP"  # clusterIP alone, or clusterIP with clusterIPs ("both")

    def body(self, name: str, ips: list[str]) -> dict[str, Any]:
        spec: dict[str, Any] = {"ports": [{"port": 80}]}
        if self.type == "ExternalName":
            spec["externalName"] = "example.com"
        if self.type != "ClusterIP":
            spec["type"] = self.type
        if self.selector:
            spec["selector"] = {"app": name}
        if self.ip_family_policy:
            spec["ipFamilyPolicy"] = self.ip_family_policy
        if self.ip_families:
            spec["ipFamilies"] = list(self.ip_families)
        if ips:
            spec["clusterIP"] = ips[0]
            if self.via == "both" or len(ips) > 1:
                spec["clusterIPs"] = ips
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


family_lists = st.sampled_from([(), (V4,), (V6,), (V4, V6), (V6, V4)])


@st.composite
def requests(draw: st.DrawFn) -> Request:
    addresses = draw(st.one_of(family_lists, st.just(("None",))))
    chosen = () if addresses == ("None",) else addresses
    return Request(
        type=draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"])),
        selector=draw(st.booleans()),
        ip_family_policy=draw(
            st.sampled_from([None, "SingleStack", "PreferDualStack", "RequireDualStack"])
        ),
        # Often the families the addresses name, as a client that knows the rules sends.
        ip_families=draw(st.one_of(st.just(chosen), family_lists)),
        addresses=addresses,
        via=draw(st.sampled_from(["clusterIP", "both"])),
    )


configs = st.integers(0, len(CONFIGS) - 1)

# Found by hand (issue 19): each was refused with admission on, accepted without it.
HAND_FOUND = [
    (config("RequireDualStack", (V6, V4)), Request("ClusterIP", True, None, (), (V4,))),
    (config("PreferDualStack", ()), Request("ClusterIP", True, None, (), (V6,))),
    (config("SingleStack", (V4,)), Request("ClusterIP", True, None, (), (V6,))),
    (
        config("RequireDualStack", (V6, V4)),
        Request("ClusterIP", True, "PreferDualStack", (), (V4, V6), "both"),
    ),
    (config("RequireDualStack", (V6, V4), "Audit"), Request("ClusterIP", True, None, (), (V4,))),
]


class Addresses:
    """Free-looking addresses of the cluster's service ranges (the server says if not)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.networks = {
            V4: ipaddress.ip_network(SERVICE_CIDRS["ipv4"]),
            V6: ipaddress.ip_network(SERVICE_CIDRS["ipv6"]),
        }

    def pick(self, families: tuple[str, ...]) -> list[str]:
        if families == ("None",):
            return ["None"]
        out = []
        for family in families:
            net = self.networks[family]
            # Past the first 256: the allocator's static band, where other tests pin theirs.
            out.append(str(net[self.rng.randrange(256, net.num_addresses - 1)]))
        return out


def taken(answer: Answer) -> bool:
    return "already allocated" in answer.message


@dataclass
class Tally:
    generated: int = 0
    accepted_without: int = 0
    accepted_with: int = 0
    refused_without_accepted_with: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items()))
        return (
            f"{self.generated} generated, {self.accepted_without} accepted without admission, "
            f"{self.accepted_with} of them accepted with it "
            f"({self.refused_without_accepted_with} refused without and accepted with); "
            f"verdicts: {verdicts}"
        )


@dataclass
class Harness:
    """One cluster's namespaces and policies, for every config on both paths."""

    cluster: LocalCluster
    admin: Kubectl
    rest: Rest
    families: list[IPFamily]
    nonce: str
    control: str
    namespaces: dict[tuple[str, int], str] = field(default_factory=dict)
    policies: dict[tuple[str, int], PolicyView] = field(default_factory=dict)

    def policy_body(self, mechanism: str, index: int) -> dict[str, Any]:
        cfg = CONFIGS[index]
        if cfg.scope == "namespace":
            return {
                "apiVersion": "dualstack.dev/v1alpha1",
                "kind": "DualStackPolicy",
                "metadata": {"name": "p", "namespace": self.namespaces[(mechanism, index)]},
                "spec": cfg.spec(),
            }
        return {
            "apiVersion": "dualstack.dev/v1alpha1",
            "kind": "ClusterDualStackPolicy",
            "metadata": {"name": f"{self.nonce}-{mechanism[0]}{index}"},
            "spec": {
                **cfg.spec(),
                "namespaceSelector": {
                    "matchLabels": {f"dnh-{self.nonce}": f"{mechanism[0]}{index}"}
                },
            },
        }


@pytest.fixture(params=["dual", "ipv6", "single"])
def harness(request: pytest.FixtureRequest, binaries: Path) -> Iterator[Harness]:
    cluster: LocalCluster = request.getfixturevalue(f"{request.param}_cluster")
    admin = Kubectl(binaries / "kubectl", cluster.kubeconfig)
    nonce = f"dnh{uuid.uuid4().hex[:5]}"
    h = Harness(
        cluster,
        admin,
        Rest(cluster),
        [IPFamily(f) for f in cluster.api_families],
        nonce,
        f"{nonce}-ctl",
    )
    items: list[dict[str, Any]] = [_namespace(h.control, {})]
    for mechanism in ("policy", "webhook"):
        for index in range(len(CONFIGS)):
            ns = f"{nonce}-{mechanism[0]}{index}"
            h.namespaces[(mechanism, index)] = ns
            items.append(_namespace(ns, {f"dnh-{nonce}": f"{mechanism[0]}{index}"}))
    admin.apply({"apiVersion": "v1", "kind": "List", "items": items})
    bodies = [h.policy_body(m, i) for m in ("policy", "webhook") for i in range(len(CONFIGS))]
    admin.apply({"apiVersion": "v1", "kind": "List", "items": bodies})
    for (mechanism, index), body in zip(
        [(m, i) for m in ("policy", "webhook") for i in range(len(CONFIGS))], bodies, strict=True
    ):
        kind = "dsp" if body["kind"] == "DualStackPolicy" else "cdsp"
        scope = ["-n", body["metadata"]["namespace"]] if kind == "dsp" else []
        stored = json.loads(admin.run("get", kind, body["metadata"]["name"], *scope, "-o", "json"))
        h.policies[(mechanism, index)] = PolicyView.from_body(stored, cluster=kind == "cdsp")
    try:
        yield h
    finally:
        h.rest.close()
        for body in bodies:
            if body["kind"] == "ClusterDualStackPolicy":
                admin.run("delete", "cdsp", body["metadata"]["name"], "--ignore-not-found")
        names = [h.control, *h.namespaces.values()]
        admin.run("delete", "namespace", *names, "--wait=false", "--ignore-not-found")


def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _stored(answer: Answer) -> tuple[Any, Any]:
    spec = answer.body.get("spec") or {}
    return spec.get("ipFamilyPolicy"), spec.get("ipFamilies")


def _stores(want: tuple[Any, Any], answer: Answer) -> bool:
    return _stored(answer) == want


def _warns(warning: str, answer: Answer) -> bool:
    return any(warning in text for text in answer.warnings)


def _admits(rest: Rest, ns: str, body: dict[str, Any], check: Callable[[Answer], bool]) -> bool:
    return check(rest.create_service(ns, body, dry_run=True))


def _as_validated(body: dict[str, Any], control: Answer, chose: bool) -> dict[str, Any]:
    """The request as a validating policy judges it: the family fields the server stored,
    and of the addresses only the family of a primary the client chose."""
    stored: dict[str, Any] = json.loads(json.dumps(body))
    spec = stored["spec"]
    policy, families = _stored(control)
    if policy:
        spec["ipFamilyPolicy"] = policy
    if families:
        spec["ipFamilies"] = families
    spec.pop("clusterIPs", None)
    if not chose:
        spec.pop("clusterIP", None)
    return stored


@dataclass
class Phase:
    """Requests sent on one admission path, and what came of them."""

    h: Harness
    mechanism: str
    rng: random.Random
    tally: Tally = field(default_factory=Tally)
    created: dict[str, list[str]] = field(default_factory=dict)  # namespace -> Services
    count: int = 0
    waiting: str = ""  # what the settle check last waited for

    def send(self, index: int, req: Request) -> None:
        h = self.h
        self.count += 1
        name = f"s{self.count}"
        ns = h.namespaces[(self.mechanism, index)]
        policy = h.policies[(self.mechanism, index)]
        addresses = Addresses(self.rng)
        for _ in range(5):  # a random address another Service holds: draw again
            body = req.body(name, addresses.pick(req.addresses) if req.addresses else [])
            without = h.rest.create_service(h.control, body, dry_run=True)
            if taken(without):
                continue
            with_ = h.rest.create_service(ns, body)
            if not taken(with_):
                break
        else:
            raise AssertionError(f"no free addresses for {req}")
        self.tally.generated += 1
        expected = mutation([policy], body, h.families)
        context = (CONFIGS[index], req, body, expected, without.message, with_.message)
        if without.ok:
            self.tally.accepted_without += 1
            assert with_.ok, ("admission refused what the server accepts", *context)
            self.tally.accepted_with += 1
        elif with_.ok:
            self.tally.refused_without_accepted_with += 1
        if not with_.ok:
            return
        self.created.setdefault(ns, []).append(name)
        if without.ok:
            shaped = req.body(name, addresses.pick(req.addresses) if req.addresses else [])
            shaped["spec"].update(expected.spec or {})
            want = h.rest.create_service(h.control, shaped, dry_run=True)
            assert _stored(with_) == _stored(want), ("stored other than decided", *context)
        warning = expected.warning
        if self.mechanism == "policy" and without.ok and expected.spec is None:
            chose = bool(req.addresses) and req.addresses != ("None",)
            warning = mutation([policy], _as_validated(body, without, chose), h.families).warning
        elif self.mechanism == "policy":
            warning = None  # mutated (Enforce), or nothing the validating policy can judge
        found = [w for w in with_.warnings if "would set" in w]
        if warning:
            assert any(warning in w for w in found), ("Audit warning", warning, found, *context)
        else:
            assert not found, ("unexpected Audit warning", with_.warnings, *context)

    def settle(self) -> None:
        """Waits for the reconciler's pass over every Service created; checks its verdicts
        and that the API server accepted every patch the operator sent."""
        h = self.h
        for (mechanism, index), ns in sorted(h.namespaces.items()):
            if mechanism != self.mechanism:
                continue
            names = self.created.get(ns, [])
            policy = h.policies[(mechanism, index)]
            spec = policy.spec
            assert spec is not None

            try:
                _, drift, views = wait_for(
                    f"the reconciler's pass over {ns}",
                    functools.partial(self._settled, ns, names, policy),
                    timeout=60,
                )
            except AssertionError as err:
                raise AssertionError(f"{err}: {self.waiting}") from None
            for name in names:
                decision = decide(spec, views[name], h.families)
                entry = drift.get(name)
                verdict = entry["reason"] if entry else "Compliant"
                self.tally.verdicts[verdict] += 1
                if decision.state == "excluded":
                    assert entry is None
                    continue
                want = str(decision.reason) if decision.state == "drifted" else "Compliant"
                assert verdict == want, (ns, name, CONFIGS[index], views[name], entry, decision)
                assert verdict not in (DriftReason.PATCH_REJECTED, DriftReason.REVERTED)
        refused = [
            e
            for e in h.cluster.audit_events()
            if e["user"]["username"] == "dualstack-operator"
            and (e.get("objectRef") or {}).get("resource") == "services"
            and (e.get("objectRef") or {}).get("namespace", "").startswith(h.nonce)
            and (e.get("responseStatus") or {}).get("code", 0) >= 400
        ]
        assert not refused, [(e["objectRef"], e["responseStatus"]) for e in refused]

    def _settled(
        self, ns: str, names: list[str], policy: PolicyView
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, ServiceView]] | None:
        """The status, drift by Service and Services once the pass over ``ns`` is done."""
        spec = policy.spec
        assert spec is not None
        status = self._status(policy)
        self.waiting = f"status {status}"
        if not status or status.get("observedGeneration") != policy.generation:
            return None
        drift = {d["service"]: d for d in status.get("drift") or [] if d.get("namespace", ns) == ns}
        if status.get("matchedServices", 0) + status.get("excludedServices", 0) != len(names):
            return None
        views = self._views(ns)
        unwritten = [
            views[n] for n in names if decide(spec, views[n], self.h.families).patch is not None
        ]
        if spec.mode == Mode.ENFORCE and unwritten:
            self.waiting = f"writes to come: {unwritten}"
            return None
        return status, drift, views

    def _status(self, policy: PolicyView) -> dict[str, Any]:
        if policy.cluster:
            path = f"/apis/dualstack.dev/v1alpha1/clusterdualstackpolicies/{policy.name}"
        else:
            path = (
                f"/apis/dualstack.dev/v1alpha1/namespaces/{policy.namespace}/"
                f"dualstackpolicies/{policy.name}"
            )
        return dict(self.h.rest.request("GET", path).body.get("status") or {})

    def _views(self, ns: str) -> dict[str, ServiceView]:
        items = self.h.rest.request("GET", f"/api/v1/namespaces/{ns}/services").body["items"]
        return {i["metadata"]["name"]: ServiceView.from_body(i) for i in items}


def start_operator(h: Harness, mechanism: str, log: Path) -> OperatorProcess:
    namespaces = sorted(ns for (m, _), ns in h.namespaces.items() if m == mechanism)
    args = ["--metrics-port=0", f"--admission={mechanism}"]
    if mechanism == "webhook":
        args += ["--webhook-address=127.0.0.1", f"--webhook-port={free_port()}"]
    operator = OperatorProcess(h.cluster.operator_kubeconfig, namespaces, log, tuple(args))
    return operator.start()


def wait_until_admission_acts(h: Harness, mechanism: str) -> None:
    """Each governed namespace shows its admission at work on a probe (a dry run) where
    the decision says it would show; namespaces where it never would need no wait."""
    probes = [
        Request("ClusterIP", True, policy, families, ())
        for policy in (None, "SingleStack", "PreferDualStack", "RequireDualStack")
        for families in [(), (V4,), (V6,), (V4, V6), (V6, V4)]
    ]
    for index in range(len(CONFIGS)):
        ns = h.namespaces[(mechanism, index)]
        policy = h.policies[(mechanism, index)]
        for probe in probes:
            body = probe.body("probe", [])
            control = h.rest.create_service(h.control, body, dry_run=True)
            if not control.ok:
                continue
            expected = mutation([policy], body, h.families)
            if mechanism == "policy" and expected.spec is None:
                expected = mutation([policy], _as_validated(body, control, False), h.families)
            if expected.spec:
                shaped = json.loads(json.dumps(body))
                shaped["spec"].update(expected.spec)
                want = _stored(h.rest.create_service(h.control, shaped, dry_run=True))
                if want == _stored(control):
                    continue
                check: Callable[[Answer], bool] = functools.partial(_stores, want)
            elif expected.warning:
                check = functools.partial(_warns, expected.warning)
            else:
                continue
            wait_for(
                f"admission ({mechanism}) to act in {ns}",
                functools.partial(_admits, h.rest, ns, body, check),
                timeout=60,
            )
            break


def property_check(phase: Phase, run_seed: int) -> Callable[[], None]:
    """The hypothesis test over requests for one phase; the same seed for every phase."""

    @seed(run_seed)
    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(configs, requests())
    def check(index: int, req: Request) -> None:
        phase.send(index, req)

    for index, req in HAND_FOUND:
        check = example(index, req)(check)
    return check


@pytest.mark.timeout(1200)
def test_admission_never_refuses_what_the_server_accepts(harness: Harness, tmp_path: Path) -> None:
    h = harness
    run_seed = random.randrange(2**32)
    print(f"\nDO-NO-HARM seed {run_seed}")
    tallies: dict[str, Tally] = {}
    for offset, mechanism in enumerate(("policy", "webhook")):
        # The same requests on both paths, each with addresses of its own.
        phase = Phase(h, mechanism, random.Random(run_seed + offset))
        operator = start_operator(h, mechanism, tmp_path / f"operator-{mechanism}.log")
        try:
            wait_until_admission_acts(h, mechanism)

            check = property_check(phase, run_seed)
            check()
            phase.settle()
        finally:
            operator.stop()
        tallies[mechanism] = phase.tally
        print(f"\nDO-NO-HARM {h.cluster.api_families} {mechanism}: {phase.tally.line()}")
    assert tallies["policy"].accepted_without == tallies["webhook"].accepted_without
    assert tallies["policy"].accepted_with == tallies["webhook"].accepted_with

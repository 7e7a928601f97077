"""Generated DualStackPolicies, good and bad, sent to the real API server, and Services
of odd shapes: every policy the server accepts is reconciled without an exception in
the operator's log; every one it rejects is rejected by the schema, with a message
that names the field; no Service shape crashes a pass."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from localcluster import LocalCluster
from support.kube import Kubectl, dsp, service, status_when, wait_for
from support.operator_proc import OperatorProcess

StartOperator = Callable[..., OperatorProcess]

POLICY_KEYS = [
    "ipFamilyPolicy",
    "ipFamilies",
    "mode",
    "serviceSelector",
    "primaryFamilyChange",
    "maxRecreationsPerHour",
    "fieldConflicts",
]

POLICIES = ["SingleStack", "PreferDualStack", "RequireDualStack"]
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] = junk) -> Any:
    """``good`` nine times in ten, else ``bad``: most documents stay valid enough to be
    accepted and reconciled, and every field is still sometimes wrong."""
    return st.tuples(st.integers(0, 9), good, bad).map(lambda t: t[2] if t[0] == 0 else t[1])


label_name = st.from_regex(r"\A[a-z0-9]([-a-z0-9_.]{0,10}[a-z0-9])?\Z")
label_key = mostly(
    st.one_of(
        label_name,
        st.builds(
            lambda p, n: f"{p}/{n}", st.from_regex(r"\A[a-z]{1,8}\.[a-z]{2,4}\Z"), label_name
        ),
    ),
    st.one_of(
        st.text(min_size=0, max_size=12),  # mostly invalid: spaces, "!", unicode, empty
        st.just("a" * 64),  # one over the name limit
        st.just("bad key!"),
    ),
)
label_value = mostly(
    st.one_of(label_name, st.just("")), st.one_of(st.text(max_size=10), st.just("v" * 64))
)
requirement = st.fixed_dictionaries(
    {
        "key": label_key,
        "operator": mostly(
            st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]), st.sampled_from(["Gt", ""])
        ),
    },
    optional={"values": mostly(st.lists(label_value, max_size=4))},
)
selector = mostly(
    st.fixed_dictionaries(
        {},
        optional={
            "matchLabels": mostly(st.dictionaries(label_key, label_value, max_size=4)),
            "matchExpressions": mostly(st.lists(requirement, max_size=3)),
        },
    ),
    st.one_of(
        junk,
        # Huge selectors: more pairs than the schema allows.
        st.integers(min_value=60, max_value=80).map(
            lambda n: {"matchLabels": {f"k{i}": "v" for i in range(n)}}
        ),
    ),
)
spec_value: dict[str, st.SearchStrategy[Any]] = {
    "ipFamilyPolicy": mostly(st.sampled_from(POLICIES), st.sampled_from(["dual", ""]) | junk),
    "ipFamilies": mostly(
        st.lists(st.sampled_from(["IPv4", "IPv6"]), max_size=2, unique=True),
        st.lists(st.sampled_from(["IPv4", "IPv6", "ipv4", "IPv5", ""]), max_size=3) | junk,
    ),
    "mode": mostly(st.sampled_from(["Enforce", "Audit"]), st.just("enforce") | junk),
    "serviceSelector": selector,
    "primaryFamilyChange": mostly(st.sampled_from(["Report", "Recreate"]), st.just("Now") | junk),
    "maxRecreationsPerHour": mostly(st.integers(min_value=1, max_value=1000), junk),
    "fieldConflicts": mostly(st.sampled_from(["Respect", "Force"]), st.just("Ignore") | junk),
}
required = ("ipFamilyPolicy",)
spec = st.fixed_dictionaries(
    {k: v for k, v in spec_value.items() if k in required},
    optional={k: v for k, v in spec_value.items() if k not in required},
)
# Strict field validation: an unknown field is rejected, never silently dropped.
unknown = spec.map(lambda body: {**body, "unknownField": 1})
missing = spec.map(lambda body: {k: v for k, v in body.items() if k not in required})
document = mostly(spec, st.one_of(junk, unknown, missing))

names = (f"p{i:03}" for i in itertools.count())


BAD_KEY = {"matchLabels": {"bad key!": "x"}}
LONG_VALUE = {"matchLabels": {"app": "v" * 64}}
HUGE = {"matchLabels": {f"k{i}": "v" for i in range(65)}}
BAD_EXPRESSION = {"matchExpressions": [{"key": "a b", "operator": "Exists"}]}


@pytest.fixture
def watched(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> tuple[Kubectl, OperatorProcess]:
    """A namespace with the operator running on it (once for all the examples)."""
    dual.create(service("web"))
    return dual, start_operator(dual_cluster, dual)


def _clean(log: str) -> None:
    assert "Traceback" not in log, log[-3000:]
    assert " ERROR " not in log, log[-3000:]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=document)
# The cases found by hand (issue 14) always run, whatever is generated.
@example(body={"ipFamilyPolicy": "PreferDualStack", "serviceSelector": BAD_KEY})
@example(body={"ipFamilyPolicy": "PreferDualStack", "serviceSelector": LONG_VALUE})
@example(body={"ipFamilyPolicy": "PreferDualStack", "serviceSelector": HUGE})
@example(body={"ipFamilyPolicy": "PreferDualStack", "serviceSelector": BAD_EXPRESSION})
def test_generated_policies_are_reconciled_or_rejected_by_the_schema(
    watched: tuple[Kubectl, OperatorProcess], body: Any
) -> None:
    k, operator = watched
    name = next(names)
    doc = dsp(name)
    doc["spec"] = body
    err = k.stderr_of("create", "-f", "-", stdin=json.dumps(doc))
    event("rejected" if err else "accepted")
    if err:
        assert "InternalError" not in err, err
        assert "Internal error" not in err, err
        assert "is invalid" in err or "unknown field" in err, err
        assert "spec" in err, f"the message does not name the field: {err}"
        return
    try:
        wait_for(f"{name} reconciled", lambda: _reconciled(k, name), timeout=30)
        _clean(operator.log())
        # The schema is as strict as the operator: nothing it accepts is unusable.
        conditions = k.get("dsp", name)["status"]["conditions"]
        ready = next(c for c in conditions if c["type"] == "Ready")
        assert ready["reason"] != "InvalidSpec", f"accepted, yet invalid: {ready['message']}"
    finally:
        k.run("delete", "dsp", name, "--wait=false")


def _reconciled(k: Kubectl, name: str) -> bool:
    policy = k.get("dsp", name)
    status = policy.get("status") or {}
    return bool(status.get("observedGeneration") == policy["metadata"]["generation"])


def _odd_services() -> list[dict[str, Any]]:
    labels = {f"label-{i}.example.com/k{i}": f"v{i}" for i in range(200)}
    huge = service("huge-labels", selector={"app": "x"})
    huge["metadata"]["labels"] = labels
    return [
        service("headless-no-ports", clusterIP="None", ports=[]),
        service("headless", clusterIP="None"),
        service("external", type="ExternalName", externalName="example.com"),
        service("nodeport", type="NodePort"),
        service("lb", type="LoadBalancer"),
        service("many-ports", ports=[{"port": 1000 + i, "name": f"p{i}"} for i in range(50)]),
        huge,
    ]


def test_odd_services_never_crash_a_pass(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    operator = start_operator(dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="PreferDualStack"))
    for svc in _odd_services():
        dual.create(svc)
    # Flips: ClusterIP -> ExternalName -> ClusterIP, headless -> ExternalName -> headless.
    for name, back in (("nodeport", "NodePort"), ("headless", None)):
        dual.patch(
            "service",
            name,
            {"spec": {"type": "ExternalName", "externalName": "flip.example.com"}},
        )
        spec: dict[str, Any] = {"type": back or "ClusterIP", "externalName": None}
        if back is None:
            spec["clusterIP"] = "None"
        spec["ports"] = [{"port": 80}]
        dual.patch("service", name, {"spec": spec})
    dual.run("label", "service", "huge-labels", *[f"more-{i}=x" for i in range(100)])
    # ExternalName Services have no IP families: not governed; the rest converge.
    governed = len(_odd_services()) - 1
    status_when(
        dual,
        lambda s: s.get("compliantServices") == governed and s.get("driftedServices") == 0,
        timeout=60,
    )
    assert operator.alive()
    _clean(operator.log())

"""The compiled native policies, run by the real API server, against the pure decision.

No operator here: the shared policies and, per example, the namespace's parameter for
generated policies are applied as ``native_admission`` makes them, and generated
Services are created with dryRun=All (admission runs, nothing is stored).
What the API server makes of each Service must equal what it makes of the same
Service with ``admission.mutation``'s fields applied by hand in a namespace
without policies; an Audit warning must be exactly ``admission.mutation``'s for
the fields the Service is stored with.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dualstack_operator.admission.cel import (
    FIELD_FAMILIES,
    FIELD_POLICIES,
    parameter,
    shared_objects,
)
from dualstack_operator.admission.mutation import mutation
from dualstack_operator.api.models import MAX_ADMISSION_POLICIES, IPFamily
from dualstack_operator.core.views import PolicyView
from support.kube import Kubectl, KubectlError, wait_for

CLUSTER = [IPFamily.IPV4, IPFamily.IPV6]
KEYS = ["app", "tier"]
VALUES = ["a", "b"]

label_sets = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)
requirements = st.one_of(
    st.builds(
        lambda k, op, vs: {"key": k, "operator": op, "values": vs},
        st.sampled_from(KEYS),
        st.sampled_from(["In", "NotIn"]),
        st.lists(st.sampled_from(VALUES), min_size=1, max_size=2, unique=True),
    ),
    st.builds(
        lambda k, op: {"key": k, "operator": op},
        st.sampled_from(KEYS),
        st.sampled_from(["Exists", "DoesNotExist"]),
    ),
)
selectors = st.one_of(
    st.none(),
    st.builds(
        lambda labels, exprs: {
            **({"matchLabels": labels} if labels else {}),
            **({"matchExpressions": exprs} if exprs else {}),
        },
        label_sets,
        st.lists(requirements, max_size=2),
    ),
)


@st.composite
def policy_specs(draw: st.DrawFn) -> dict[str, Any]:
    """Specs the CRD accepts: family counts that fit the ipFamilyPolicy."""
    policy = draw(st.sampled_from(["SingleStack", "PreferDualStack", "RequireDualStack"]))
    sizes = {"SingleStack": [1], "PreferDualStack": [1, 2], "RequireDualStack": [2]}[policy]
    families = draw(st.one_of(st.none(), st.sampled_from([f for f in FIELD_FAMILIES if f])))
    spec: dict[str, Any] = {
        "ipFamilyPolicy": policy,
        "mode": draw(st.sampled_from(["Enforce", "Audit"])),
    }
    if families is not None and len(families) in sizes:
        spec["ipFamilies"] = list(families)
    selector = draw(selectors)
    if selector is not None:
        spec["serviceSelector"] = selector
    return spec


@st.composite
def services(draw: st.DrawFn, index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"port": 80}]}
    shape = draw(st.sampled_from(["ClusterIP", "NodePort", "Headless", "ExternalName"]))
    if shape == "ExternalName":
        spec = {"type": "ExternalName", "externalName": "example.com"}
    elif shape == "Headless":
        spec["clusterIP"] = "None"
    elif shape == "NodePort":
        spec["type"] = "NodePort"
    field_policy = draw(st.sampled_from(FIELD_POLICIES))
    if field_policy:
        spec["ipFamilyPolicy"] = field_policy
    families = draw(st.sampled_from(FIELD_FAMILIES))
    if families:
        spec["ipFamilies"] = list(families)
    meta: dict[str, Any] = {"name": f"s{index}", "labels": draw(label_sets)}
    if draw(st.booleans()) and draw(st.booleans()):
        meta["annotations"] = {"dualstack.dev/ignore": "true"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[PolicyView], list[dict[str, Any]]]:
    specs = draw(st.lists(policy_specs(), min_size=1, max_size=3))
    # Creation times out of name order, some equal: the tie-break by name counts too.
    seconds = draw(st.lists(st.integers(0, 2), min_size=len(specs), max_size=len(specs)))
    policies = [
        PolicyView.from_body(
            {
                "metadata": {
                    "name": f"p{i}",
                    "uid": f"u{i}",
                    "creationTimestamp": f"2026-01-01T00:00:0{sec}Z",
                },
                "spec": spec,
            }
        )
        for i, (spec, sec) in enumerate(zip(specs, seconds, strict=True))
    ]
    return policies, [draw(services(i)) for i in range(5)]


def probes(nonce: str) -> list[PolicyView]:
    """The oldest policies, selecting only Services labelled with this example's nonce:
    once they act, the API server runs this example's objects (they load asynchronously)."""
    return [
        PolicyView.from_body(
            {
                "metadata": {"name": name, "creationTimestamp": "2000-01-01T00:00:00Z"},
                "spec": {
                    "ipFamilyPolicy": "RequireDualStack",
                    "ipFamilies": ["IPv6", "IPv4"],
                    "mode": mode,
                    "serviceSelector": {"matchLabels": {"probe": f"{mode}-{nonce}"}},
                },
            }
        )
        for name, mode in (("probe-m", "Enforce"), ("probe-v", "Audit"))
    ]


def dry_run(k: Kubectl, body: dict[str, Any]) -> tuple[Any, str]:
    """What the API server would store (or its refusal), and its warnings."""
    try:
        proc = k.run_full(
            "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(body)
        )
    except KubectlError as err:
        return ("refused", err.stderr.split(":", 1)[0]), ""
    spec = json.loads(proc.stdout)["spec"]
    return (spec.get("ipFamilyPolicy"), spec.get("ipFamilies")), proc.stderr


@pytest.fixture
def control(dual: Kubectl) -> Iterator[Kubectl]:
    """A second namespace without admission objects: the server's own answer."""
    name = f"{dual.namespace}-ctl"
    admin = Kubectl(dual.binary, dual.kubeconfig)
    admin.run("create", "namespace", name)
    try:
        yield admin.in_namespace(name)
    finally:
        admin.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def test_native_policies_decide_like_the_pure_decision(dual: Kubectl, control: Kubectl) -> None:
    namespace = dual.namespace or ""
    admin = Kubectl(dual.binary, dual.kubeconfig)
    shared = shared_objects()
    for obj in shared:
        if "failurePolicy" in obj["spec"]:
            obj["spec"]["failurePolicy"] = "Fail"  # a broken expression must show here
    admin.apply({"apiVersion": "v1", "kind": "List", "items": shared})
    try:
        _check(dual, control, namespace, admin)
    finally:  # other tests' operators write them again as they should be
        for obj in reversed(shared):
            admin.run("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found")


def _check(dual: Kubectl, control: Kubectl, namespace: str, admin: Kubectl) -> None:

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(cases())
    def check(case: tuple[list[PolicyView], list[dict[str, Any]]]) -> None:
        policies, bodies = case
        nonce = uuid.uuid4().hex[:8]
        admin.apply(parameter(namespace, [*probes(nonce), *policies], CLUSTER) or {})

        def loaded() -> bool:
            mutated = {"metadata": {"name": "probe", "labels": {"probe": f"Enforce-{nonce}"}}}
            warned = {"metadata": {"name": "probe", "labels": {"probe": f"Audit-{nonce}"}}}
            base = {"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80}]}}
            (got, _) = dry_run(dual, {**base, **mutated})
            (_, warning) = dry_run(dual, {**base, **warned})
            return got == ("RequireDualStack", ["IPv6", "IPv4"]) and "probe-v (Audit)" in warning

        wait_for("this example's admission parameter to load", loaded)
        for body in bodies:
            expected = mutation(policies, body, CLUSTER)
            shaped = json.loads(json.dumps(body))
            shaped["spec"].update(expected.spec or {})
            want, _ = dry_run(control, shaped)
            got, warnings = dry_run(dual, body)
            assert got == want, (body, [p.spec for p in policies], expected)
            # Audit warnings come from a validating policy, which sees the fields after
            # the server's defaulting: the decision is asked about those.
            defaults, _ = dry_run(control, body)
            warning = None
            if defaults[0] != "refused" and expected.spec is None:
                stored = json.loads(json.dumps(body))
                stored["spec"].update(ipFamilyPolicy=defaults[0], ipFamilies=defaults[1])
                warning = mutation(policies, stored, CLUSTER).warning
            if warning:
                assert warning in warnings, (body, warnings)
            else:
                assert "would set" not in warnings, (body, warnings)

    check()


def test_the_largest_parameter_is_within_the_api_servers_limits(dual: Kubectl) -> None:
    """32 policies (the most a parameter chains), each with a large selector (64 labels
    and 32 expressions of 64 values) and its whole table, half of them Audit. A Service
    that every selector but the last's final expression lets through makes the CEL walk
    all of it: the API server stores the parameter (its size) and the shared policy
    still decides (its runtime cost); with failurePolicy Fail an error would refuse it."""
    namespace = dual.namespace or ""
    admin = Kubectl(dual.binary, dual.kubeconfig)
    labels = {f"example.com/key-{i:02}": f"value-{i:02}" for i in range(64)}
    values = [f"v{j:02}" for j in range(64)]
    policies = []
    for i in range(MAX_ADMISSION_POLICIES):
        last = i == MAX_ADMISSION_POLICIES - 1
        expressions = [
            {"key": f"example.com/set-{e:02}", "operator": "In", "values": values}
            for e in range(32)
        ]
        if not last:  # every selector fails only at its final expression
            expressions[-1] = {**expressions[-1], "values": values[:-1]}
        spec = {
            "ipFamilyPolicy": "RequireDualStack",
            "ipFamilies": ["IPv6", "IPv4"],
            "mode": "Enforce" if i % 2 or last else "Audit",
            "serviceSelector": {"matchLabels": labels, "matchExpressions": expressions},
        }
        policies.append(
            PolicyView.from_body(
                {
                    "metadata": {
                        "name": f"policy-{i:02}",
                        "namespace": namespace,
                        "creationTimestamp": f"2026-01-01T00:00:{i:02}Z",
                    },
                    "spec": spec,
                }
            )
        )
    param = parameter(namespace, policies, CLUSTER)
    assert param is not None
    assert len(param["spec"]["policies"]) == MAX_ADMISSION_POLICIES
    size = len(json.dumps(param))
    shared = shared_objects()
    for obj in shared:
        if "failurePolicy" in obj["spec"]:
            obj["spec"]["failurePolicy"] = "Fail"
    admin.apply({"apiVersion": "v1", "kind": "List", "items": shared})
    try:
        admin.apply(param, "--server-side")  # as the operator writes it: no annotation
        service_labels = {**labels, **{f"example.com/set-{e:02}": values[-1] for e in range(32)}}
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "walks-all", "labels": service_labels},
            "spec": {"ports": [{"port": 80}]},
        }
        got = wait_for(
            "the largest parameter to decide",
            lambda: (lambda a: a if a[0] == ("RequireDualStack", ["IPv6", "IPv4"]) else None)(
                dry_run(dual, body)
            ),
            timeout=60,
        )
        assert "Audit" not in got[1]
        print(f"\nLARGEST-PARAMETER bytes={size} policies={MAX_ADMISSION_POLICIES}")
    finally:
        for obj in reversed(shared):
            admin.run("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found")

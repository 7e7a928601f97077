"""The CRD: generated from the models, and refusing bad input at `kubectl apply` time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.kube import Kubectl


def dsp(spec: dict[str, Any], name: str = "p") -> dict[str, Any]:
    return {
        "apiVersion": "dualstack.dev/v1alpha1",
        "kind": "DualStackPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"ipFamilyPolicy": "DualStack"}, 'Unsupported value: "DualStack"'),
        ({}, "spec.ipFamilyPolicy: Required value"),
        (
            {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv5"]},
            'Unsupported value: "IPv5"',
        ),
        ({"ipFamilyPolicy": "PreferDualStack", "mode": "DryRun"}, 'Unsupported value: "DryRun"'),
        (
            {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv4"]},
            "ipFamilies must not repeat a family",
        ),
        (
            {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6", "IPv4"]},
            "must have at most 2 items",
        ),
        (
            {"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4", "IPv6"]},
            "SingleStack takes exactly one IP family",
        ),
        (
            {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6"]},
            "RequireDualStack needs both IP families",
        ),
        (
            {
                "ipFamilyPolicy": "PreferDualStack",
                "serviceSelector": {"matchExpressions": [{"key": "tier", "operator": "In"}]},
            },
            "In and NotIn need at least one value",
        ),
        (
            {
                "ipFamilyPolicy": "PreferDualStack",
                "serviceSelector": {"matchExpressions": [{"key": "t", "operator": "Near"}]},
            },
            'Unsupported value: "Near"',
        ),
        (
            {"ipFamilyPolicy": "PreferDualStack", "serviceSelector": {"matchLabels": "tier=web"}},
            "spec.serviceSelector.matchLabels: Invalid value",
        ),
        (
            {
                "ipFamilyPolicy": "PreferDualStack",
                "serviceSelector": {"matchLabels": {"bad key!": "x"}},
            },
            "label keys are an optional DNS-subdomain prefix",
        ),
        (
            {
                "ipFamilyPolicy": "PreferDualStack",
                "serviceSelector": {"matchLabels": {"ok": "bad value!"}},
            },
            "spec.serviceSelector.matchLabels.ok: Invalid value",
        ),
        (
            {
                "ipFamilyPolicy": "PreferDualStack",
                "serviceSelector": {"matchExpressions": [{"key": "a b", "operator": "Exists"}]},
            },
            "spec.serviceSelector.matchExpressions[0].key: Invalid value",
        ),
        (
            {
                "ipFamilyPolicy": "PreferDualStack",
                "serviceSelector": {
                    "matchLabels": {f"k{i}": "v" for i in range(65)},
                },
            },
            "must have at most 64 items",
        ),
    ],
)
def test_bad_input_is_refused_at_apply(dual: Kubectl, spec: dict[str, Any], message: str) -> None:
    err = dual.fails("apply", "-f", "-", stdin=json.dumps(dsp(spec)))
    assert message in err
    assert not dual.get("dualstackpolicies")["items"], "nothing was stored"


def test_good_input_is_stored_with_defaults_and_unknown_fields_pruned(dual: Kubectl) -> None:
    spec = {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"], "colour": "blue"}
    dual.create(dsp(spec), "--validate=false")
    stored = dual.get("dsp", "p")["spec"]
    assert stored == {
        "ipFamilyPolicy": "PreferDualStack",
        "ipFamilies": ["IPv6", "IPv4"],
        "mode": "Enforce",
        "primaryFamilyChange": "Report",
        "maxRecreationsPerHour": 10,
        "fieldConflicts": "Respect",
    }


def test_printer_columns(dual: Kubectl) -> None:
    dual.create(dsp({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}))
    header, row = dual.run("get", "dsp").splitlines()
    assert header.split() == [
        "NAME",
        "POLICY",
        "FAMILIES",
        "MODE",
        "MATCHED",
        "COMPLIANT",
        "DRIFTED",
        "READY",
        "ADMISSION",
        "AGE",
    ]
    # FAMILIES is written by the operator (status.families; test_printer_columns.py):
    # with no operator running, the cell is empty.
    assert row.split()[:3] == ["p", "RequireDualStack", "Enforce"]


def test_kubectl_explain_teaches_the_api(dual: Kubectl) -> None:
    text = " ".join(dual.run("explain", "dsp.spec").split())
    for field in ("ipFamilyPolicy", "ipFamilies", "mode", "serviceSelector"):
        assert field in text
    assert "the first is the primary" in text
    assert "never writes to a Service" in " ".join(dual.run("explain", "dsp.spec.mode").split())


def test_label_syntax_kubernetes_accepts_is_accepted(dual: Kubectl) -> None:
    selector = {
        "matchLabels": {"app.kubernetes.io/name": "web", "tier": "", "v": "a-b_c.d"},
        "matchExpressions": [{"key": "example.com/team", "operator": "In", "values": ["x.y"]}],
    }
    dual.create(dsp({"ipFamilyPolicy": "PreferDualStack", "serviceSelector": selector}))
    assert dual.get("dsp", "p")["spec"]["serviceSelector"] == selector

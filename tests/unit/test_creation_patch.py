"""What admission sets on a new Service: the client's chosen ClusterIPs fix their families."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from dualstack_operator.admission.cel import FIELD_ADDRESSES, FIELD_FAMILIES, FIELD_POLICIES
from dualstack_operator.admission.mutation import mutation
from dualstack_operator.core.creation import creation_patch
from dualstack_operator.core.decision import address_families
from dualstack_operator.core.views import PolicyView
from support.decision_cases import DUAL, DUAL6, ONLY4, policy

V4, V6 = "IPv4", "IPv6"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, ()),
        ({"clusterIP": ""}, ()),
        ({"clusterIP": "None"}, ()),
        ({"clusterIP": "None", "clusterIPs": ["None"]}, ()),
        ({"clusterIP": "10.96.200.21"}, (V4,)),
        ({"clusterIP": "fd00:10:96::c8"}, (V6,)),
        ({"clusterIP": "10.96.200.21", "clusterIPs": ["10.96.200.21", "fd00::1"]}, (V4, V6)),
        ({"clusterIPs": ["fd00::1", "10.0.0.1"]}, (V6, V4)),
        ({"clusterIP": "010.96.200.21"}, None),  # leading zeros: the server refuses it
        ({"clusterIP": "not-an-ip"}, None),
        ({"clusterIPs": ["10.0.0.1", "fd00::1", "10.0.0.2"]}, None),
    ],
)
def test_address_families(spec: dict[str, Any], expected: tuple[str, ...] | None) -> None:
    assert address_families(spec) == expected


@pytest.mark.parametrize(
    ("spec", "field_policy", "families", "addresses", "cluster", "expected"),
    [
        # Found by hand: each was refused by the API server with admission on.
        (
            policy("RequireDualStack", [V6, V4]),
            None,
            (),
            (V4,),
            DUAL,
            {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": [V4, V6]},
        ),
        (
            policy("PreferDualStack"),
            None,
            (),
            (V6,),
            DUAL,
            {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": [V6, V4]},
        ),
        (policy("SingleStack", [V4]), None, (), (V6,), DUAL, None),
        (
            policy("RequireDualStack", [V6, V4]),
            "PreferDualStack",
            (),
            (V4, V6),
            DUAL,
            {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": [V4, V6]},
        ),
        # The client's own ipFamilies go where the decision says.
        (
            policy("SingleStack"),
            "PreferDualStack",
            (V4, V6),
            (V4,),
            DUAL,
            {"ipFamilyPolicy": "SingleStack", "ipFamilies": [V4]},
        ),
        # Two chosen addresses cannot become one: left to the reconciler.
        (policy("SingleStack"), "PreferDualStack", (), (V4, V6), DUAL, None),
        # No address: the primary is still free, as before.
        (
            policy("RequireDualStack", [V6, V4]),
            None,
            (),
            (),
            DUAL,
            {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": [V6, V4]},
        ),
        # An address the decision cannot read: the server judges the request as it is.
        (policy("RequireDualStack", [V6, V4]), None, (), None, DUAL, None),
        (policy("RequireDualStack"), None, (), (V4,), ONLY4, None),
        (
            policy("PreferDualStack", [V4]),
            None,
            (),
            (V6,),
            DUAL6,
            {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": [V6, V4]},
        ),
    ],
)
def test_creation_patch_keeps_the_chosen_addresses(
    spec: Any,
    field_policy: str | None,
    families: tuple[str, ...],
    addresses: tuple[str, ...] | None,
    cluster: Any,
    expected: dict[str, Any] | None,
) -> None:
    assert creation_patch(spec, field_policy, families, cluster, addresses) == expected


SPECS = [
    policy(p, f)
    for p, f in [
        ("SingleStack", None),
        ("SingleStack", [V4]),
        ("SingleStack", [V6]),
        ("PreferDualStack", None),
        ("PreferDualStack", [V4]),
        ("PreferDualStack", [V6]),
        ("PreferDualStack", [V4, V6]),
        ("PreferDualStack", [V6, V4]),
        ("RequireDualStack", None),
        ("RequireDualStack", [V4, V6]),
        ("RequireDualStack", [V6, V4]),
    ]
]


@pytest.mark.parametrize("cluster", [DUAL, DUAL6, ONLY4], ids=["dual", "dual6", "ipv4"])
def test_creation_patch_never_moves_a_chosen_address(cluster: Any) -> None:
    """Over the whole domain: the families set start with the chosen ones, in order, and
    always come with the policy field the server needs for them."""
    for spec, field_policy, families, addresses in itertools.product(
        SPECS, FIELD_POLICIES, FIELD_FAMILIES, FIELD_ADDRESSES
    ):
        wanted = creation_patch(spec, field_policy, families, cluster, addresses)
        if wanted is None or not addresses:
            continue
        got = wanted["ipFamilies"]
        assert got[: len(addresses)] == list(addresses), (spec, addresses, wanted)
        assert len(set(got)) == len(got)
        if len(got) == 2:
            assert wanted["ipFamilyPolicy"] != "SingleStack"


def test_the_webhook_reads_the_addresses_from_the_request() -> None:
    view = PolicyView.from_body(
        {
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": [V6, V4]},
        }
    )
    body = {"metadata": {"name": "dns"}, "spec": {"clusterIP": "10.96.0.10"}}
    assert mutation([view], body, DUAL).spec == {
        "ipFamilyPolicy": "RequireDualStack",
        "ipFamilies": [V4, V6],
    }
    audit = PolicyView.from_body(
        {
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"ipFamilyPolicy": "SingleStack", "mode": "Audit"},
        }
    )
    warned = mutation([audit], {"metadata": {"name": "s"}, "spec": {}}, DUAL).warning
    assert warned == (
        "DualStackPolicy p (Audit) would set ipFamilyPolicy=SingleStack ipFamilies=IPv4; "
        "nothing was changed"
    )

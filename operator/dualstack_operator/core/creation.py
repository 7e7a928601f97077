"""What admission sets on a new Service: the one decision both admission paths give.

The webhook calls it per request, the CEL compiler tabulates it for the API server,
and recreation and the migration report ask it what a new Service would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dualstack_operator.api.models import DualStackPolicySpec, IPFamily, Mode
from dualstack_operator.core.decision import decide
from dualstack_operator.core.views import ServiceView


def creation_patch(
    spec: DualStackPolicySpec,
    field_policy: str | None,
    families: Sequence[str],
    cluster: Sequence[IPFamily],
    addresses: Sequence[str] | None = (),
) -> dict[str, Any] | None:
    """The fields to set on a new Service with these IP-family fields, or None.

    The one answer both admission paths give: the webhook calls it per request, and
    ``native_admission`` tabulates it for the API server. Nothing is allocated yet on
    CREATE, so a Service that names no address may still get any primary: decide as
    for a headless Service, whose families may change, asking for exactly what
    Enforce would patch. ``addresses`` are the families of the ClusterIPs the client
    chose (``decision.address_families``): those are fixed, in their order, as on a
    Service that exists, and the policy decides the rest. Where it cannot without
    dropping a chosen address (or the addresses cannot be read: None), the request is
    left as it is: admission never turns a create the server accepts into a refusal.
    """
    if addresses is None:
        return None
    pinned = list(addresses)
    svc = ServiceView(
        namespace="",
        name="",
        resource_version="",
        labels={},
        ignored=False,
        type="ClusterIP",
        headless=not pinned,
        ip_family_policy=field_policy,
        ip_families=tuple(pinned or families),
    )
    enforced = decide(spec.model_copy(update={"mode": Mode.ENFORCE}), svc, cluster)
    if enforced.patch is None:
        return None
    wanted = dict(enforced.patch["spec"])
    if pinned:
        target = list(wanted.get("ipFamilies", pinned))
        if target[: len(pinned)] != pinned:
            return None  # e.g. SingleStack, but the client chose an address of each family
        # Always both fields: the client's own ipFamilies must not outlive the decision.
        wanted["ipFamilies"] = target
    return wanted


def audit_warning(
    kind: str, policy: str, wanted: dict[str, Any], families: Sequence[str] = ()
) -> str:
    """What an Audit policy says instead of setting ``wanted`` (on a Service that has
    ``families``, which ``wanted`` keeps unless it names others)."""
    return (
        f"{kind} {policy} (Audit) would set "
        f"ipFamilyPolicy={wanted['ipFamilyPolicy']} "
        f"ipFamilies={','.join(wanted.get('ipFamilies', families))}; nothing was changed"
    )

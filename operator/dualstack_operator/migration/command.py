"""``dualstack-operator plan`` (and ``kubectl dualstack plan``): read the cluster, print the plan.

Read-only by construction: it lists Services (and DualStackPolicies unless given
with ``-f``), lists ServiceCIDRs for the cluster's families, NetworkPolicies for
readiness, and lists kube-system/kube-dns by name, each where allowed; nothing else
is sent.
With ``-f`` it needs no CRD and no right but listing Services: a finding it has no
right to read is reported as not checked. With ``--context`` (repeatable) or
``--all-contexts`` it reads each cluster in turn: one summary row per cluster, then
each cluster's plan.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from dualstack_operator.api import names
from dualstack_operator.api.models import DriftReason, IPFamily
from dualstack_operator.api.names import DNS_NAMESPACE, DNS_SERVICE
from dualstack_operator.core.errors import ApiError, Forbidden, waiting_out_429
from dualstack_operator.core.readiness import CLUSTER_DNS_SINGLE_STACK, NEEDS
from dualstack_operator.core.scope import effective_policies
from dualstack_operator.core.views import NetworkPolicyView, Page, PolicyView, ServiceView
from dualstack_operator.migration.report import (
    RENDERERS,
    Readings,
    Report,
    build_report,
    render_fleet,
)

# The operator's own namespace, which no cluster policy governs without a selector.
OWN = "dualstack-system"


class PlanSource(Protocol):
    """What the plan reads (and nothing else: it never writes)."""

    async def list_policies(self, namespaces: tuple[str, ...]) -> list[PolicyView]: ...
    async def list_cluster_policies(self) -> list[PolicyView]: ...
    async def list_namespace_labels(self) -> dict[str, dict[str, str]]: ...
    async def list_services(
        self, namespace: str | None, limit: int, continue_token: str | None
    ) -> Page[ServiceView]: ...
    async def list_service_cidr_families(self) -> list[IPFamily] | None: ...
    async def list_network_policies(
        self, namespace: str | None
    ) -> list[NetworkPolicyView] | None: ...
    async def get_service(self, namespace: str, name: str) -> ServiceView | None: ...
    async def close(self) -> None: ...


Connect = Callable[[str | None, str | None], Awaitable[PlanSource]]
Contexts = Callable[[str | None], list[str]]


class PlanInputError(Exception):
    """A policy file the plan cannot use; the message says which and why."""


def add_parser(sub: Any) -> None:
    plan = sub.add_parser(
        "plan",
        help="read-only: what the policies would do to the cluster's Services",
        description="What DualStackPolicies would do to the cluster's Services: patches, "
        "recreations and their risks, exclusions and conflicts. Writes nothing.",
    )
    plan.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="only this namespace (repeatable; default: all namespaces)",
    )
    plan.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="evaluate the DualStackPolicies in this YAML file instead of the cluster's "
        "(repeatable; a policy without a namespace applies to each -n namespace)",
    )
    plan.add_argument("-o", "--output", choices=sorted(RENDERERS), default="table")
    plan.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG, ~/.kube/config")
    fleet = plan.add_mutually_exclusive_group()
    fleet.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="NAME",
        help="the kubeconfig context to read (repeatable: one summary row per cluster, "
        "then each cluster's plan; default: the current context)",
    )
    fleet.add_argument(
        "--all-contexts", action="store_true", help="every context of the kubeconfig"
    )


def policies_from_files(
    paths: Sequence[Path], namespaces: Sequence[str]
) -> tuple[dict[str, list[PolicyView]], list[PolicyView]]:
    """DualStackPolicies (by namespace) and ClusterDualStackPolicies from YAML files;
    file order stands for age."""
    out: dict[str, list[PolicyView]] = {}
    cluster: list[PolicyView] = []
    index = 0
    for path in paths:
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        except (OSError, yaml.YAMLError) as err:
            raise PlanInputError(f"{path}: {err}") from err
        for doc in docs:
            meta = doc.get("metadata") or {}
            name = meta.get("name") or f"policy-{index}"
            if doc.get("kind") == names.CLUSTER_KIND:
                body = {
                    **doc,
                    "metadata": {**meta, "name": name, "creationTimestamp": f"{index:08}"},
                }
                view = PolicyView.from_body(body, cluster=True)
                if view.spec is None:
                    raise PlanInputError(f"{path}: {names.CLUSTER_KIND} {name}: {view.spec_error}")
                cluster.append(view)
                index += 1
                continue
            if doc.get("kind") != names.KIND:
                continue
            targets = [meta["namespace"]] if meta.get("namespace") else list(namespaces)
            if not targets:
                raise PlanInputError(
                    f"{path}: {names.KIND} {name} has no namespace: give one with -n"
                )
            for ns in targets:
                body = {
                    **doc,
                    "metadata": {
                        **meta,
                        "name": name,
                        "namespace": ns,
                        "creationTimestamp": f"{index:08}",
                    },
                }
                view = PolicyView.from_body(body)
                if view.spec is None:
                    raise PlanInputError(f"{path}: {names.KIND} {name}: {view.spec_error}")
                out.setdefault(ns, []).append(view)
            index += 1
    if not out and not cluster:
        raise PlanInputError(
            f"no {names.KIND} or {names.CLUSTER_KIND} in {', '.join(map(str, paths))}"
        )
    return out, cluster


async def _services(api: PlanSource, namespace: str | None) -> list[ServiceView]:
    views: list[ServiceView] = []
    token: str | None = None
    while True:
        page = await api.list_services(namespace, 500, token)
        views += page.items
        token = page.continue_token
        if not token:
            return views


def infer_families(services: Sequence[ServiceView]) -> list[IPFamily]:
    """Without ServiceCIDRs: the default/kubernetes Service's family first, then any seen."""
    seen: list[str] = []
    ordered = sorted(services, key=lambda s: (s.namespace, s.name) != ("default", "kubernetes"))
    for svc in ordered:
        for family in svc.ip_families:
            if family not in seen:
                seen.append(family)
    return [IPFamily(f) for f in seen if f in {str(x) for x in IPFamily}]


async def readings(api: PlanSource, scopes: Sequence[str | None]) -> Readings:
    """NetworkPolicies and the cluster DNS Service, each where the identity may read it."""
    not_checked: list[str] = []
    by_namespace: dict[str, list[NetworkPolicyView]] = {}
    netpols: dict[str, list[NetworkPolicyView]] | None = by_namespace
    for scope in scopes:
        found = await api.list_network_policies(scope)
        if found is None:
            netpols = None
            need = NEEDS[DriftReason.NETWORK_POLICY_ONE_FAMILY]
            not_checked.append(f"NetworkPolicyOneFamily: no right to {need}")
            break
        for view in found:
            by_namespace.setdefault(view.namespace, []).append(view)
    dns = None
    try:
        dns = await api.get_service(DNS_NAMESPACE, DNS_SERVICE)
    except Forbidden:
        not_checked.append(
            f"{CLUSTER_DNS_SINGLE_STACK}: no right to {NEEDS[CLUSTER_DNS_SINGLE_STACK]}"
        )
    return Readings(netpols, dns, not_checked)


async def collect(args: argparse.Namespace, connect: Connect, context: str | None = None) -> Report:
    api = await connect(args.kubeconfig, context)
    try:
        namespaces: list[str] = list(args.namespace)
        if args.filename:
            own, cluster_policies = policies_from_files(args.filename, namespaces)
        else:
            own = {}
            for view in await api.list_policies(tuple(namespaces)):
                own.setdefault(view.namespace, []).append(view)
            cluster_policies = await api.list_cluster_policies()
        policies = dict(own)
        if cluster_policies:
            # Namespaces without a policy of their own, by their labels (a namespace
            # with one is governed by it alone).
            for ns, labels in (await api.list_namespace_labels()).items():
                if ns not in own:
                    governing = effective_policies([], cluster_policies, ns, labels, OWN)
                    if governing:
                        policies[ns] = governing
        if namespaces:
            policies = {ns: v for ns, v in policies.items() if ns in namespaces}
        services: dict[str, list[ServiceView]] = {}
        scopes: Sequence[str | None] = sorted(policies) if namespaces or args.filename else [None]
        everything: list[ServiceView] = []
        for scope in scopes:
            everything += await _services(api, scope)
        for svc in everything:
            services.setdefault(svc.namespace, []).append(svc)
        cluster = await api.list_service_cidr_families()
        if cluster is None:
            cluster = infer_families(everything)
        read = await readings(api, scopes)
        return build_report(policies, services, cluster, read)
    finally:
        await api.close()


async def render(
    args: argparse.Namespace, connect: Connect, contexts: Contexts
) -> tuple[str, bool]:
    """One cluster's plan; or, for several contexts (or --all-contexts), the fleet's
    summary and each plan: a cluster that cannot be read is an error row, not the end.
    True when every cluster was read."""
    names: list[str] = list(args.context)
    if args.all_contexts:
        names = contexts(args.kubeconfig)
        if not names:
            raise PlanInputError("the kubeconfig has no context")
    if len(names) <= 1 and not args.all_contexts:
        report = await collect(args, connect, names[0] if names else None)
        return RENDERERS[args.output](report), True
    reports: dict[str, Report | str] = {}
    for name in names:
        try:
            reports[name] = await collect(args, connect, name)
        except (ApiError, PlanInputError) as err:
            reports[name] = str(err)
    ok = all(isinstance(r, Report) for r in reports.values())
    return render_fleet(reports, args.output), ok


def run(args: argparse.Namespace, connect: Connect, contexts: Contexts | None = None) -> int:
    listed: Contexts = contexts or (lambda _: [])
    try:
        out, ok = asyncio.run(waiting_out_429(lambda: render(args, connect, listed)))
        sys.stdout.write(out)
        if not ok:
            print("dualstack-operator plan: some clusters could not be read", file=sys.stderr)
            return 1
    except PlanInputError as err:
        print(f"dualstack-operator plan: {err}", file=sys.stderr)
        return 2
    except ApiError as err:
        print(f"dualstack-operator plan: the API server refused: {err}", file=sys.stderr)
        return 1
    return 0

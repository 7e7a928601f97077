"""``dualstack-operator plan`` (and ``kubectl dualstack plan``): read the cluster, print the plan.

Read-only by construction: it lists Services (and DualStackPolicies unless given
with ``-f``), and lists ServiceCIDRs for the cluster's families where allowed;
nothing else is sent. With ``-f`` it needs no CRD and no right but listing Services.
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
from dualstack_operator.api.models import IPFamily
from dualstack_operator.core.errors import ApiError, waiting_out_429
from dualstack_operator.core.scope import effective_policies
from dualstack_operator.core.views import Page, PolicyView, ServiceView
from dualstack_operator.migration.report import RENDERERS, build_report

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
    async def close(self) -> None: ...


Connect = Callable[[str | None], Awaitable[PlanSource]]


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


async def collect(args: argparse.Namespace, connect: Connect) -> str:
    api = await connect(args.kubeconfig)
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
        report = build_report(policies, services, cluster)
        return RENDERERS[args.output](report)
    finally:
        await api.close()


def run(args: argparse.Namespace, connect: Connect) -> int:
    try:
        sys.stdout.write(asyncio.run(waiting_out_429(lambda: collect(args, connect))))
    except PlanInputError as err:
        print(f"dualstack-operator plan: {err}", file=sys.stderr)
        return 2
    except ApiError as err:
        print(f"dualstack-operator plan: the API server refused: {err}", file=sys.stderr)
        return 1
    return 0

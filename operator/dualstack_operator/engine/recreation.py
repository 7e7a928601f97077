"""Opt-in recreation of Services whose primary family is wrong, with nothing lost.

The API server never lets a ClusterIP Service change its primary family, so the
only fix is a new Service of the same name. Before the delete, the Service's
manifest (everything but what the server allocates) is journaled in a ConfigMap
the operator owns; the entry goes only once the new Service exists. An operator
killed in between finds the entry at its next start and finishes the job, once.

The new Service asks for the old ClusterIPs of the families it keeps (clients know
them) and, for a new family, for a free address of the static band of its range: a
dry-run create cannot say which address is free. Both are in the journaled manifest.
Where the server refuses one (taken meanwhile, or the range changed), another pick, or
at last the server's own addresses, reported as such.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from dualstack_operator.api.models import DriftReason, IPFamily, Mode, PrimaryFamilyChange
from dualstack_operator.api.names import (
    API_VERSION,
    CLUSTER_KIND,
    JOURNAL_LABEL,
    MANAGED_BY_LABEL,
    NAME,
    OWNED_NAMESPACE_LABEL,
    RECREATE_ANNOTATION,
)
from dualstack_operator.api.reasons import EventReason
from dualstack_operator.core.creation import creation_patch
from dualstack_operator.core.decision import Decision
from dualstack_operator.core.errors import ApiError, Conflict, Invalid, NotFound
from dualstack_operator.core.plan import PolicyPlan
from dualstack_operator.core.recreation import (
    Entry,
    Outcome,
    Unavailable,
    describe_fields,
    journal_name,
    kept_addresses,
    recreatable,
    recreated_manifest,
    refused_address,
    static_address,
    with_addresses,
)
from dualstack_operator.core.views import ServiceView
from dualstack_operator.engine.backoff import Backoff
from dualstack_operator.engine.events import Events, policy_ref, ref, service_ref
from dualstack_operator.engine.ports import MetricsSink
from dualstack_operator.engine.queue import Result

log = logging.getLogger("dualstack_operator.engine.recreation")

FAULT_ENV = "DUALSTACK_FAULT_POINTS"
PICKS = 5  # addresses tried for a new family before the server is left to choose


def fault_point(name: str) -> None:
    """A test hook: die right here (SIGKILL, no cleanup) if the environment asks for it."""
    if name in os.environ.get(FAULT_ENV, "").split(","):
        log.warning("fault point %s: killing the process", name)
        os.kill(os.getpid(), signal.SIGKILL)


class RecreateStore(Protocol):
    """The calls recreation makes (``KubeAPI``)."""

    async def read_service(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def delete_service(
        self, namespace: str, name: str, uid: str, resource_version: str
    ) -> None: ...

    async def create_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def service_cidrs(self) -> list[str] | None: ...

    async def list_configmaps(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    async def create_configmap(self, namespace: str, body: dict[str, Any]) -> None: ...

    async def label_configmap(self, namespace: str, name: str, labels: dict[str, str]) -> None: ...

    async def delete_configmap(self, namespace: str, name: str) -> None: ...


class Recreator:
    """Recreations with their journal, their per-policy budget, one at a time per namespace."""

    def __init__(
        self,
        store: RecreateStore,
        journal_namespace: str,
        clock: Callable[[], float] = time.monotonic,
        unavailable: Unavailable | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.journal_namespace = journal_namespace
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 (an address to try, not a secret)
        self.unavailable = unavailable  # a right or the journal namespace is missing
        self.recent: dict[tuple[str, str], deque[float]] = {}  # (ns, policy) -> times

    # --- the budget ---------------------------------------------------------------------

    def budget_left(self, namespace: str, policy: str, per_hour: int) -> int:
        times = self.recent.setdefault((namespace, policy), deque())
        while times and self.clock() - times[0] >= 3600:
            times.popleft()
        return per_hour - len(times)

    def next_slot_seconds(self, namespace: str, policy: str) -> float:
        times = self.recent.get((namespace, policy)) or deque([self.clock() - 3600])
        return max(0.0, 3600 - (self.clock() - times[0]))

    # --- the journal --------------------------------------------------------------------

    async def pending(self, namespace: str | None = None) -> list[Entry]:
        """Journaled recreations still to finish (in one namespace, or all)."""
        selector = f"{MANAGED_BY_LABEL}={NAME},{JOURNAL_LABEL}=recreate"
        if namespace:
            selector += f",{OWNED_NAMESPACE_LABEL}={namespace}"
        items = await self.store.list_configmaps(self.journal_namespace, selector)
        return [Entry.of(item) for item in items]

    async def _journal(self, entry: Entry) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": journal_name(entry.namespace, entry.service),
                "labels": {
                    MANAGED_BY_LABEL: NAME,
                    JOURNAL_LABEL: "recreate",
                    OWNED_NAMESPACE_LABEL: entry.namespace,
                },
            },
            "data": {
                "manifest": json.dumps(entry.manifest, sort_keys=True),
                "uid": entry.old_uid,
                "policy": entry.policy,
                "policyKind": entry.policy_kind,
                "kept": json.dumps(list(entry.kept)),
            },
        }
        await self.store.create_configmap(self.journal_namespace, body)

    async def _forget(self, entry: Entry) -> None:
        with contextlib.suppress(NotFound):  # already gone
            await self.store.delete_configmap(
                self.journal_namespace, journal_name(entry.namespace, entry.service)
            )

    # --- recreation ---------------------------------------------------------------------

    async def recreate(
        self,
        namespace: str,
        name: str,
        policy: str,
        fields: Mapping[str, Any],
        per_hour: int,
        policy_kind: str = "DualStackPolicy",
    ) -> Outcome | None:
        """Journal, delete, create. None: nothing was done (the Service changed or went)."""
        service = await self.store.read_service(namespace, name)
        if service is None:
            return None
        meta = service.get("metadata") or {}
        families = [str(f) for f in fields.get("ipFamilies") or []]
        kept = kept_addresses(service, families)
        addresses, fallback = await self._addresses(families, kept) if kept else ([], "")
        entry = Entry(
            namespace,
            name,
            policy,
            str(meta.get("uid", "")),
            with_addresses(recreated_manifest(service, fields), addresses),
            policy_kind,
            tuple(kept.values()) if addresses else (),
        )
        await self._journal(entry)  # nothing is deleted that is not written down first
        try:
            await self.store.delete_service(
                namespace, name, entry.old_uid, str(meta.get("resourceVersion", ""))
            )
        except (Conflict, NotFound):
            # Changed since we read it (the next pass decides again), or deleted by
            # someone else (not ours to bring back).
            await self._forget(entry)
            return None
        self.recent.setdefault((namespace, policy), deque()).append(self.clock())
        fault_point("after-delete")
        outcome = await self.finish(entry)
        if fallback and not outcome.fallback:
            return Outcome(outcome.entry, outcome.done, outcome.message, outcome.created, fallback)
        return outcome

    async def _addresses(
        self, families: Sequence[str], kept: Mapping[str, str]
    ) -> tuple[list[str], str]:
        """The clusterIPs to ask for, in ``families``' order: the kept ones, and a pick of
        the service range for each new family. ([], why) when no range is known."""
        missing = [f for f in families if f not in kept]
        try:
            cidrs = await self.store.service_cidrs() if missing else []
        except ApiError as err:  # nothing is deleted yet: the server chooses, and says so
            return [], f"the service ranges could not be read ({err})"
        picked: dict[str, str] = {}
        for family in missing:
            cidr = next((c for c in cidrs or [] if (":" in c) == (family == "IPv6")), None)
            if cidr is None:
                return [], f"no {family} service range is known (ServiceCIDR kubernetes)"
            picked[family] = static_address(cidr, self.rng)
        return [kept.get(f) or picked[f] for f in families], ""

    async def _create(self, entry: Entry) -> tuple[dict[str, Any], str]:
        """Creates the journaled manifest, picking again where a picked address was taken
        meanwhile, and leaving the addresses to the server where a kept one cannot be
        had. Returns the Service and why the kept addresses were not, if they were not."""
        manifest, fallback = entry.manifest, ""
        for _ in range(PICKS):
            try:
                return await self.store.create_service(entry.namespace, manifest), fallback
            except Invalid as err:
                addresses = list(manifest["spec"].get("clusterIPs") or [])
                refused = refused_address(err.message, addresses)
                if refused is None:
                    raise
                families = [str(f) for f in manifest["spec"].get("ipFamilies") or []]
                kept = {f: ip for f, ip in zip(families, addresses, strict=False)
                        if ip in entry.kept}  # fmt: skip
                if refused in entry.kept:
                    fallback = f"the kept address {refused} could not be had ({err.message})"
                    manifest = with_addresses(manifest, [])
                else:  # our pick was taken meanwhile
                    picked, why = await self._addresses(families, kept)
                    manifest = with_addresses(manifest, picked)
                    fallback = why
        fallback = fallback or f"no free address found in {PICKS} picks"
        manifest = with_addresses(manifest, [])
        return await self.store.create_service(entry.namespace, manifest), fallback

    async def finish(self, entry: Entry) -> Outcome:
        """Creates the journaled Service unless it exists; the entry goes once it does."""
        current = await self.store.read_service(entry.namespace, entry.service)
        if current is not None:
            uid = str((current.get("metadata") or {}).get("uid", ""))
            if uid == entry.old_uid:
                await self._forget(entry)  # the delete never happened: decide again
                return Outcome(entry, False, "the Service was not deleted; nothing to finish")
            wanted = entry.manifest["spec"].get("ipFamilies")
            if (current.get("spec") or {}).get("ipFamilies") == wanted:
                await self._forget(entry)  # ours, created before the entry could go
                return Outcome(entry, True, "already recreated", current)
            return await self._taken(entry, uid)
        try:
            created, fallback = await self._create(entry)
        except Conflict:
            # Taken between our look and our create (or still terminating).
            current = await self.store.read_service(entry.namespace, entry.service)
            if current is None:
                return Outcome(entry, False, "the old Service is still terminating; retrying")
            return await self._taken(entry, str(current["metadata"].get("uid", "")))
        except ApiError as err:
            return Outcome(entry, False, f"the API server refused to create it again: {err}")
        await self._forget(entry)
        return Outcome(entry, True, "recreated", created, fallback)

    async def _taken(self, entry: Entry, uid: str) -> Outcome:
        """Someone else's Service has the name now: never overwritten; the entry is kept."""
        await self.store.label_configmap(
            self.journal_namespace,
            journal_name(entry.namespace, entry.service),
            {JOURNAL_LABEL: "superseded"},
        )
        return Outcome(
            entry,
            True,
            f"the name was taken meanwhile by another Service (uid {uid}); it was left alone. "
            f"The old manifest is kept in ConfigMap {self.journal_namespace}/"
            f"{journal_name(entry.namespace, entry.service)}",
        )


class Recreations:
    """The recreation step of a pass: finishing what the journal holds, then, under a
    Recreate policy, recreating one Service whose primary family is wrong, with its
    log, metric and Events."""

    def __init__(
        self,
        recreator: Recreator,
        events: Events,
        metrics: MetricsSink,
        backoff: Backoff,
        error_retry_seconds: float,
    ) -> None:
        self.recreator = recreator
        self.events = events
        self.metrics = metrics
        self.backoff = backoff
        self.error_retry_seconds = error_retry_seconds
        # Namespaces with a journaled recreation still to finish, and its failed attempts.
        self.journaled: dict[str, int] = {}

    async def refresh(self) -> set[str]:
        """Recreations a previous run journaled and did not finish: their namespaces.
        None are looked for where recreation is unavailable: the journal is not readable
        then, and the preflight has said why, once."""
        if self.recreator.unavailable is not None:
            return set()
        try:
            entries = await self.recreator.pending()
        except ApiError as err:
            log.warning("cannot read the recreation journal: %s", err)
            return set()
        for entry in entries:
            log.info(
                "%s/%s: a journaled recreation to finish (policy %s)",
                entry.namespace,
                entry.service,
                entry.policy,
            )
            self.journaled.setdefault(entry.namespace, 0)
        return {entry.namespace for entry in entries}

    async def finish(self, namespace: str) -> tuple[bool, Result]:
        """Finishes the namespace's journaled recreations; True while one is still open."""
        if namespace not in self.journaled:
            return False, Result()
        for entry in await self.recreator.pending(namespace):
            outcome = await self.recreator.finish(entry)
            await self._report(outcome)
            if not outcome.done:
                attempts = self.journaled.get(namespace, 0) + 1
                self.journaled[namespace] = attempts
                return True, Result(self.backoff.delay(attempts))
        self.journaled.pop(namespace, None)
        return False, Result()

    async def recreate_one(
        self,
        plan: PolicyPlan,
        ns: str,
        services: Mapping[str, ServiceView],
        cluster: Sequence[IPFamily],
    ) -> tuple[PolicyPlan, bool, Result]:
        """Under a Recreate policy, recreates one Service whose primary family is wrong.

        Returns the plan with the candidates' in-place patches taken out (a Service
        about to be recreated is not patched first), whether a recreation is open, and
        when to look again.
        """
        spec = plan.policy.spec
        if (
            spec is None
            or spec.mode != Mode.ENFORCE
            or spec.primary_family_change != PrimaryFamilyChange.RECREATE
        ):
            return plan, False, Result()
        policy = plan.policy
        candidates: list[tuple[ServiceView, dict[str, Any]]] = []
        overrides: dict[str, Decision] = {}
        for name, decision in sorted(plan.decisions.items()):
            svc = services.get(name)
            if decision.reason != DriftReason.PRIMARY_FAMILY_MISMATCH or svc is None:
                continue
            if not recreatable(svc):
                if svc.type == "LoadBalancer":
                    overrides[name] = Decision(
                        decision.state,
                        decision.reason,
                        decision.message + " (a LoadBalancer is recreated only with "
                        f"{RECREATE_ANNOTATION}=true on the Service)",
                        decision.patch,
                    )
                continue
            fields = creation_patch(spec, svc.ip_family_policy, svc.ip_families, cluster)
            if fields is not None:
                candidates.append((svc, fields))
        unavailable = self.recreator.unavailable
        if unavailable is not None:
            # Nothing is attempted (nothing is ever half done): the Services are reported,
            # and the policy's RecreateAvailable condition says why.
            for svc, _ in candidates:
                decision = plan.decisions[svc.name]
                message = f"{decision.message}; not recreated: {unavailable.message}"
                overrides[svc.name] = Decision(decision.state, decision.reason, message, None)
            return plan.with_overrides(overrides).blocked(unavailable), False, Result()
        budget = spec.max_recreations_per_hour
        exhausted = bool(candidates) and self.recreator.budget_left(ns, policy.name, budget) <= 0
        note, result = "; to be recreated", Result()
        if exhausted:
            wait = self.recreator.next_slot_seconds(ns, policy.name)
            result = Result(wait + 1)
            note = (
                f"; the budget of {budget} recreations per hour is used, "
                f"next in {wait / 60:.0f} min"
            )
        for svc, _ in candidates:
            decision = plan.decisions[svc.name]
            overrides[svc.name] = Decision(
                decision.state, decision.reason, decision.message + note, None
            )
        plan = plan.with_overrides(overrides)
        if not candidates or exhausted:
            return plan, False, result
        svc, fields = candidates[0]
        try:
            outcome = await self.recreator.recreate(
                ns, svc.name, policy.name, fields, budget, policy.kind
            )
        except ApiError as err:  # the journal could not be written: nothing was deleted
            self.metrics.recreated(ns, policy.name, ok=False)
            self.metrics.error("service")
            message = f"{svc.name}: not recreated, the journal could not be written: {err}"
            log.warning("%s/%s", ns, message)
            failed = EventReason.RECREATE_FAILED
            await self.events.post(policy_ref(policy), "Warning", failed, message)
            return plan, True, Result(self.error_retry_seconds)
        if outcome is None:
            return plan, True, Result()  # the Service changed or went: its event brings a pass
        await self._report(outcome)
        if not outcome.done:
            self.journaled[ns] = 1
            return plan, True, Result(self.backoff.delay(1))
        return plan, True, Result()

    async def _report(self, outcome: Outcome) -> None:
        """Log, metric and Events for one recreation attempt."""
        entry = outcome.entry
        ns, name = entry.namespace, entry.service
        fields = {k: entry.manifest["spec"].get(k) for k in ("ipFamilyPolicy", "ipFamilies")}
        cluster_scoped = entry.policy_kind == CLUSTER_KIND
        policy = ref(entry.policy_kind, API_VERSION, "" if cluster_scoped else ns, entry.policy)
        created = outcome.created
        if outcome.done and created is not None:
            self.metrics.recreated(ns, entry.policy, ok=True, addresses=outcome.addresses)
            ips = (created.get("spec") or {}).get("clusterIPs") or []
            now = describe_fields(fields["ipFamilyPolicy"], fields["ipFamilies"] or [])
            if outcome.fallback:
                addresses = f"new addresses only: {outcome.fallback}"
            elif entry.kept:
                addresses = f"{', '.join(entry.kept)} kept"
            else:
                addresses = "no family's address to keep"
            message = (
                f"{name} deleted and created again as {now} by policy {entry.policy}: "
                f"clusterIPs {', '.join(ips)} ({addresses}; old uid {entry.old_uid})"
            )
            log.info("%s/%s recreated: %s", ns, name, message)
            uid = str((created.get("metadata") or {}).get("uid", ""))
            recreated = EventReason.RECREATED
            await self.events.post(service_ref(ns, name, uid), "Normal", recreated, message)
            await self.events.post(policy, "Normal", recreated, message)
        elif outcome.done:
            log.warning("%s/%s: %s", ns, name, outcome.message)
            await self.events.post(
                policy, "Warning", EventReason.RECREATE_BLOCKED, f"{name}: {outcome.message}"
            )
        else:
            self.metrics.recreated(ns, entry.policy, ok=False)
            self.metrics.error("service")
            log.warning("%s/%s: %s (the journal keeps its manifest)", ns, name, outcome.message)
            await self.events.post(
                policy, "Warning", EventReason.RECREATE_FAILED, f"{name}: {outcome.message}"
            )

"""A policy's status, written when it differs, with an Event when a condition changes."""

from __future__ import annotations

import logging
from typing import Any

from dualstack_operator.api.reasons import ConditionType
from dualstack_operator.core.errors import ApiError, NotFound
from dualstack_operator.core.status import status_differs
from dualstack_operator.core.views import PolicyView
from dualstack_operator.engine.events import Events, policy_ref
from dualstack_operator.engine.ports import MetricsSink, StatusStore
from dualstack_operator.engine.queue import Result
from dualstack_operator.engine.remediation import failed_write
from dualstack_operator.engine.throttle import Throttle

log = logging.getLogger("dualstack_operator.engine.status")
# Conditions whose changes get no Event per policy (the reconciler posts one for all).
QUIET_CONDITIONS = frozenset({ConditionType.CLUSTER_DNS})


class StatusWriter:
    def __init__(
        self,
        store: StatusStore,
        throttle: Throttle,
        events: Events,
        metrics: MetricsSink,
        error_retry_seconds: float,
    ) -> None:
        self.store = store
        self.throttle = throttle
        self.events = events
        self.metrics = metrics
        self.error_retry_seconds = error_retry_seconds

    async def write(self, policy: PolicyView, status: dict[str, Any]) -> tuple[bool, Result]:
        """Writes the status if it differs; False when it could not be written now."""
        if not status_differs(policy.status, status):
            return True, Result()
        try:
            async with self.throttle.slot():
                if (wait := self.throttle.paused()) > 0:
                    return False, Result(wait)
                if policy.cluster:
                    await self.store.patch_cluster_policy_status(policy.name, status)
                else:
                    await self.store.patch_policy_status(policy.namespace, policy.name, status)
        except NotFound:
            return True, Result()  # deleted meanwhile
        except ApiError as err:
            self.metrics.error("policy")
            delay = failed_write(self.throttle, err, self.error_retry_seconds)
            log.warning("cannot write status of %s/%s: %s", policy.namespace, policy.name, err)
            return False, Result(delay)
        self.throttle.succeeded()
        old = {c.get("type"): c for c in policy.status.get("conditions") or []}
        for cond in status.get("conditions", []):
            if cond["type"] in QUIET_CONDITIONS:
                continue  # the same on every policy: said once, on the DNS Service
            before = old.get(cond["type"])
            healthy = cond["status"] == "True"
            if before is None and healthy:
                continue  # a policy seen healthy at once: its conditions say so, quietly
            if before is None or before.get("reason") != cond["reason"]:
                kind = "Normal" if healthy else "Warning"
                reason = cond["reason"]  # a ConditionReason: core.status.condition takes no other
                await self.events.post(policy_ref(policy), kind, reason, cond["message"])
        return True, Result()

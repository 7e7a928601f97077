"""The operator's writes and probes, through kubernetes-asyncio (the only I/O module).

RBAC the calls below need (the deployment manifests grant exactly these):
- services: patch                      (patch_service)
- services: create with dryRun=All     (probe_families; nothing is stored)
- servicecidrs.networking.k8s.io: get  (service_cidr_families)
- dualstackpolicies/status: patch      (patch_policy_status)
- events: create                       (post_event)
- mutatingwebhookconfigurations: get, create, update  (only with --admission)
- clusterkopfpeerings / kopfpeerings: create, get  (ensure_peering, read_peers; kopf
  needs list, watch, patch on them for peering itself)
Watching Services and policies (list, watch) is kopf's.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import uuid
from dataclasses import dataclass
from typing import Any, cast

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from dualstack_operator import models
from dualstack_operator.models import IPFamily

MERGE_PATCH = "application/merge-patch+json"
COMPONENT = "dualstack-operator"
# The generated client picks JSON patch for dicts unless told; its stubs omit the option.
_MERGE: dict[str, Any] = {"_content_type": MERGE_PATCH}


@dataclass(frozen=True)
class ApiError(Exception):
    """A refused request: the HTTP status and the API server's own message."""

    status: int
    message: str

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


def _error(exc: ApiException) -> ApiError:
    message = str(exc.reason)
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        message = json.loads(exc.body or b"{}").get("message", message)
    return ApiError(int(exc.status or 0), message)


def _families(cidrs: list[str]) -> list[IPFamily]:
    out: list[IPFamily] = []
    for cidr in cidrs:
        family = IPFamily.IPV6 if ":" in cidr else IPFamily.IPV4
        if family not in out:
            out.append(family)
    return out


class KubeAPI:
    def __init__(self, kubeconfig: str | None = None) -> None:
        self._client: client.ApiClient | None = None
        self._kubeconfig = kubeconfig

    async def connect(self) -> None:
        """In-cluster ServiceAccount first, else the kubeconfig (as kopf does)."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            await config.load_kube_config(
                config_file=self._kubeconfig, client_configuration=configuration
            )
        configuration.connection_pool_maxsize = 32  # room for concurrent patches
        self._client = client.ApiClient(configuration)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    @property
    def api(self) -> client.ApiClient:
        if self._client is None:
            raise RuntimeError("KubeAPI.connect() was not awaited")
        return self._client

    async def service_cidr_families(self) -> list[IPFamily] | None:
        """Families of the default ServiceCIDR, or None where that API is missing."""
        try:
            cidr = await client.NetworkingV1Api(self.api).read_service_cidr("kubernetes")
        except ApiException as exc:
            if exc.status in (403, 404):
                return None
            raise _error(exc) from exc
        return _families(list(cidr.spec.cidrs or []))

    async def probe_families(self) -> list[IPFamily]:
        """Server-side dry-run creates: what a RequireDualStack (else default) Service gets."""
        core = client.CoreV1Api(self.api)
        for policy in ("RequireDualStack", None):
            spec: dict[str, Any] = {"ports": [{"port": 80}]}
            if policy:
                spec["ipFamilyPolicy"] = policy
            body = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"dualstack-probe-{uuid.uuid4().hex[:8]}"},
                "spec": spec,
            }
            try:
                created = await core.create_namespaced_service(
                    "default", cast(Any, body), dry_run="All"
                )
            except ApiException as exc:
                if exc.status == 422 and policy:
                    continue  # "not configured for dual-stack services"
                raise _error(exc) from exc
            return [IPFamily(f) for f in created.spec.ip_families or []]
        raise ApiError(0, "the dry-run probe returned no families")

    async def patch_service(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str
    ) -> None:
        """Merge-patches a Service, only if unchanged since we looked."""
        body = {**patch, "metadata": {"resourceVersion": resource_version}}
        try:
            await client.CoreV1Api(self.api).patch_namespaced_service(
                name, namespace, body, field_manager=COMPONENT, **_MERGE
            )
        except ApiException as exc:
            raise _error(exc) from exc

    async def patch_policy_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            await client.CustomObjectsApi(self.api).patch_namespaced_custom_object_status(
                models.GROUP,
                models.VERSION,
                namespace,
                models.PLURAL,
                name,
                {"status": status},
                field_manager=COMPONENT,
                **_MERGE,
            )
        except ApiException as exc:
            raise _error(exc) from exc

    async def post_event(
        self, involved: dict[str, str], type: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event on ``involved`` (apiVersion, kind, namespace, name, uid)."""
        now = datetime.datetime.now(datetime.UTC)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{involved['name']}.",
                "namespace": involved["namespace"],
            },
            "involvedObject": involved,
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        try:
            await client.CoreV1Api(self.api).create_namespaced_event(
                involved["namespace"], cast(Any, event)
            )
        except ApiException as exc:
            raise _error(exc) from exc

    async def read_webhook_configuration(self, name: str) -> dict[str, Any] | None:
        try:
            obj = await client.AdmissionregistrationV1Api(
                self.api
            ).read_mutating_webhook_configuration(name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _error(exc) from exc
        found: dict[str, Any] = self.api.sanitize_for_serialization(obj)
        return found

    async def apply_webhook_configuration(
        self, body: dict[str, Any], existing: dict[str, Any] | None
    ) -> None:
        """Creates the configuration, or replaces ours (keeping others' metadata)."""
        api = client.AdmissionregistrationV1Api(self.api)
        try:
            if existing is None:
                await api.create_mutating_webhook_configuration(cast(Any, body))
                return
            meta = dict(existing.get("metadata") or {})
            meta["labels"] = {**(meta.get("labels") or {}), **body["metadata"]["labels"]}
            replacement = {**body, "metadata": meta}
            await api.replace_mutating_webhook_configuration(
                body["metadata"]["name"], cast(Any, replacement)
            )
        except ApiException as exc:
            raise _error(exc) from exc

    async def ensure_peering(self, name: str, namespaces: tuple[str, ...]) -> None:
        """Creates kopf's peering object if missing (cluster-wide, or per namespace)."""
        custom = client.CustomObjectsApi(self.api)
        body = {"apiVersion": "kopf.dev/v1", "metadata": {"name": name}}
        try:
            if not namespaces:
                await custom.create_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", {**body, "kind": "ClusterKopfPeering"}
                )
            for ns in namespaces:
                try:
                    await custom.create_namespaced_custom_object(
                        "kopf.dev", "v1", ns, "kopfpeerings", {**body, "kind": "KopfPeering"}
                    )
                except ApiException as exc:
                    if exc.status != 409:
                        raise
        except ApiException as exc:
            if exc.status != 409:  # already there: the usual case
                raise _error(exc) from exc

    async def read_peers(self, name: str, namespaces: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Kopf's peer records: identity -> priority, lifetime (s), lastseen (datetime)."""
        custom = client.CustomObjectsApi(self.api)
        try:
            if namespaces:
                obj = await custom.get_namespaced_custom_object(
                    "kopf.dev", "v1", namespaces[0], "kopfpeerings", name
                )
            else:
                obj = await custom.get_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", name
                )
        except ApiException as exc:
            raise _error(exc) from exc
        peers: dict[str, dict[str, Any]] = {}
        for ident, info in ((obj or {}).get("status") or {}).items():
            if not isinstance(info, dict):
                continue
            seen = datetime.datetime.fromisoformat(str(info.get("lastseen")))
            if seen.tzinfo is None:
                seen = seen.replace(tzinfo=datetime.UTC)
            peers[ident] = {
                "priority": int(info.get("priority", 0)),
                "lifetime": float(info.get("lifetime", 60)),
                "lastseen": seen,
            }
        return peers

"""The operator's writes and probes, through kubernetes-asyncio (the only I/O module).

RBAC the calls below need (the deployment manifests grant exactly these):
- services: patch                      (patch_service: server-side apply of the two fields)
- services: get, delete, create        (read_service, delete_service, create_service: only
  for primaryFamilyChange: Recreate)
- configmaps: list, create, patch, delete  (the recreation journal, in the operator's
  own namespace only)
- services: create with dryRun=All     (probe_families; nothing is stored)
- servicecidrs.networking.k8s.io: get  (service_cidr_families)
- dualstackpolicies/status: patch      (patch_policy_status)
- events: create                       (post_event)
- mutatingwebhookconfigurations: get, create, update  (only with --admission=webhook);
  delete (ours, when the native policies replace it)
- mutatingadmissionpolicies, validatingadmissionpolicies and their bindings:
  list, create, update, delete  (ours only, by label: the native admission path)
- dualstackadmissions: list, create, update, delete  (the native path's parameter in each
  governed namespace); services: create with dryRun=All in one of them (the probe that
  the shared policy serves)
- clusterkopfpeerings / kopfpeerings: create, get  (ensure_peering, read_peers; kopf
  needs list, watch, patch on them for peering itself)
- services: list, watch               (list_services, watch_services: the Service cache)
- endpointslices.discovery.k8s.io: list, watch  (list_endpoint_slices, watch_endpoint_slices:
  the EndpointSlice cache, for MissingEndpoints)
- servicecidrs, dualstackpolicies: list  (the plan command only; it needs nothing else)
Watching policies (list, watch) is kopf's; any_policies lists one at start.

Every failure leaves this module as one of ``errors``' typed ``ApiError``s.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from dualstack_operator.admission.cel import Kind
from dualstack_operator.api import names
from dualstack_operator.api.models import IPFamily
from dualstack_operator.api.names import (
    FIELD_MANAGER,
)
from dualstack_operator.core.errors import ApiError, NotFound, classify, retry_after
from dualstack_operator.core.views import (
    Page,
    PeerRecord,
    PolicyView,
    ServiceView,
    SliceView,
    UserInfo,
    View,
    WatchEvent,
)

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is YAML
REQUEST_CONNECTIONS = 32  # room for the concurrent patches, with the cache's lists
# The generated client picks JSON patch for dicts unless told; its stubs omit the option.
_MERGE: dict[str, Any] = {"_content_type": MERGE_PATCH}
_APPLY: dict[str, Any] = {"_content_type": APPLY_PATCH}


def _message(body: str | bytes | None, default: str) -> str:
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        return str(json.loads(body or b"{}").get("message", default))
    return default


def _error(exc: ApiException) -> ApiError:
    headers: Any = exc.headers or {}
    return classify(
        int(exc.status or 0),
        _message(exc.body, str(exc.reason)),
        retry_after(headers.get("Retry-After")),
    )


# What a broken connection raises below the generated client.
_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


async def _open(call: Awaitable[Any]) -> Any:
    """Sends a request made with ``_preload_content=False``: the raw aiohttp response
    if it succeeded, else a typed error.

    Skipping the generated client's model deserialization matters at scale: the
    operator never needs the objects the server sends back.
    """
    try:
        resp = await call
    except ApiException as exc:
        raise _error(exc) from exc
    except _TRANSPORT_ERRORS as exc:
        raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= resp.status <= 299:
        try:
            body = await resp.read()
        finally:
            resp.release()
        raise classify(
            resp.status,
            _message(body, resp.reason or str(resp.status)),
            retry_after(resp.headers.get("Retry-After")),
        )
    return resp


async def _raw(call: Awaitable[Any]) -> bytes:
    """The body of a successful request (see ``_open``)."""
    resp = await _open(call)
    try:
        body: bytes = await resp.read()
    except _TRANSPORT_ERRORS as exc:
        raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc
    finally:
        resp.release()
    return body


def _status_apply(
    kind: str, name: str, namespace: str | None, status: dict[str, Any]
) -> dict[str, Any]:
    """A policy's status as a server-side apply by the operator's field manager: the
    fields it sends are its own (a field it stops sending is removed), and conditions
    other controllers add (the list is a map keyed by type) stay theirs."""
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": names.API_VERSION,
        "kind": kind,
        "metadata": meta,
        "status": status,
    }


def _json(raw: bytes) -> dict[str, Any]:
    """A response body as JSON; one that is not (a cut connection, say) is a failed request."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ApiError(0, f"the API server's answer is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ApiError(0, "the API server's answer is not a JSON object")
    return doc


V = TypeVar("V", bound=View)


@dataclass(frozen=True)
class Collection(Generic[V]):
    """A collection the operator lists and watches, and what it keeps of each item."""

    prefix: str  # "/api/v1" or "/apis/<group>/<version>"
    plural: str
    view: Callable[[Mapping[str, Any]], V]

    def path(self, namespace: str | None) -> str:
        where = f"/namespaces/{namespace}" if namespace else ""
        return f"{self.prefix}{where}/{self.plural}"


SERVICES = Collection("/api/v1", "services", ServiceView.from_body)
ENDPOINT_SLICES = Collection(
    "/apis/discovery.k8s.io/v1",
    "endpointslices",
    lambda body: SliceView.from_body(body) or SliceView.placeholder(body),
)


def watch_event(kind: Collection[V], event: Mapping[str, Any]) -> WatchEvent[V]:
    """One line of a watch stream as an event of views; an ERROR line (a 410 Gone, say)
    is raised as the typed error it names."""
    obj = event.get("object") or {}
    type_ = str(event.get("type", ""))
    if type_ == "ERROR":
        raise classify(int(obj.get("code") or 0), str(obj.get("message", obj)))
    version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
    if type_ == "BOOKMARK":
        return WatchEvent(type_, version, None)
    return WatchEvent(type_, version, kind.view(obj))


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

    async def connect(self, watches: int = 1) -> None:
        """In-cluster ServiceAccount first, else the kubeconfig (as kopf does).

        ``watches``: the Service watches this client keeps open, one per watched
        namespace; each holds a pooled connection for good, so the pool has room for
        them on top of the requests in flight (writes, lists, reviews).
        """
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            await config.load_kube_config(
                config_file=self._kubeconfig, client_configuration=configuration
            )
        configuration.connection_pool_maxsize = REQUEST_CONNECTIONS + watches
        self._client = client.ApiClient(configuration)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    @property
    def api(self) -> client.ApiClient:
        if self._client is None:
            raise RuntimeError("KubeAPI.connect() was not awaited")
        return self._client

    def _get(self, path: str, query: list[tuple[str, Any]], timeout: Any = None) -> Any:
        """A raw GET of one API path (a list or a watch), as the generated client sends it."""
        return self.api.call_api(
            path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )

    async def list_page(
        self, kind: Collection[V], namespace: str | None, limit: int, continue_token: str | None
    ) -> Page[V]:
        """One page of a collection, reduced to views at once (the raw page is dropped)."""
        query: list[tuple[str, Any]] = [("limit", limit)]
        if continue_token:
            query.append(("continue", continue_token))
        doc = _json(await _raw(self._get(kind.path(namespace), query)))
        meta = doc.get("metadata") or {}
        return Page(
            items=[kind.view(item) for item in doc.get("items") or []],
            resource_version=str(meta.get("resourceVersion", "")),
            continue_token=meta.get("continue") or None,
        )

    async def watch(
        self,
        kind: Collection[V],
        namespace: str | None,
        resource_version: str,
        timeout_seconds: int,
        silence: int,
    ) -> AsyncIterator[WatchEvent[V]]:
        """A collection's events after ``resource_version`` until the server ends the watch."""
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_seconds),
        ]
        # The server ends the watch; this only guards against a silent connection.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=silence)
        resp = await _open(self._get(kind.path(namespace), query, timeout))
        try:
            while True:
                try:
                    line = await resp.content.readline()
                except _TRANSPORT_ERRORS as exc:
                    raise ApiError(0, f"watch broken: {type(exc).__name__}: {exc}") from exc
                if not line:
                    return  # the server ended the watch (its timeout, or shutting down)
                yield watch_event(kind, _json(line))
        finally:
            resp.release()

    async def list_services(
        self, namespace: str | None, limit: int, continue_token: str | None
    ) -> Page[ServiceView]:
        return await self.list_page(SERVICES, namespace, limit, continue_token)

    def watch_services(
        self, namespace: str | None, resource_version: str, timeout_seconds: int, silence: int
    ) -> AsyncIterator[WatchEvent[ServiceView]]:
        return self.watch(SERVICES, namespace, resource_version, timeout_seconds, silence)

    async def list_endpoint_slices(
        self, namespace: str | None, limit: int, continue_token: str | None
    ) -> Page[SliceView]:
        return await self.list_page(ENDPOINT_SLICES, namespace, limit, continue_token)

    def watch_endpoint_slices(
        self, namespace: str | None, resource_version: str, timeout_seconds: int, silence: int
    ) -> AsyncIterator[WatchEvent[SliceView]]:
        return self.watch(ENDPOINT_SLICES, namespace, resource_version, timeout_seconds, silence)

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
        """Server-side applies the family fields as ``dualstack-operator``, only if the
        Service is unchanged since we looked.

        ``patch`` must hold both fields (an apply that leaves out a field we own
        would drop it). Forced: fields last written by Update (kubectl patch, an
        imperative client) are fair game; fields another manager *applies* were
        already judged (ManagedByOther, or fieldConflicts: Force).
        """
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            **patch,
        }
        await _raw(
            client.CoreV1Api(self.api).patch_namespaced_service(
                name,
                namespace,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _preload_content=False,
                **_APPLY,
            )
        )

    async def read_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The whole Service as the server has it, or None."""
        try:
            body = await _raw(
                client.CoreV1Api(self.api).read_namespaced_service(
                    name, namespace, _preload_content=False
                )
            )
        except NotFound:
            return None
        found: dict[str, Any] = json.loads(body)
        return found

    async def delete_service(
        self, namespace: str, name: str, uid: str, resource_version: str
    ) -> None:
        """Deletes exactly the Service we read: preconditions on its uid and version."""
        options = {"preconditions": {"uid": uid, "resourceVersion": resource_version}}
        await _raw(
            client.CoreV1Api(self.api).delete_namespaced_service(
                name, namespace, body=cast(Any, options), _preload_content=False
            )
        )

    async def create_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        made: dict[str, Any] = json.loads(
            await _raw(
                client.CoreV1Api(self.api).create_namespaced_service(
                    namespace, cast(Any, body), field_manager=FIELD_MANAGER, _preload_content=False
                )
            )
        )
        return made

    async def list_configmaps(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        doc = json.loads(
            await _raw(
                client.CoreV1Api(self.api).list_namespaced_config_map(
                    namespace, label_selector=selector, _preload_content=False
                )
            )
        )
        return list(doc.get("items") or [])

    async def create_configmap(self, namespace: str, body: dict[str, Any]) -> None:
        await _raw(
            client.CoreV1Api(self.api).create_namespaced_config_map(
                namespace, cast(Any, body), field_manager=FIELD_MANAGER, _preload_content=False
            )
        )

    async def label_configmap(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        await _raw(
            client.CoreV1Api(self.api).patch_namespaced_config_map(
                name,
                namespace,
                {"metadata": {"labels": labels}},
                field_manager=FIELD_MANAGER,
                _preload_content=False,
                **_MERGE,
            )
        )

    async def delete_configmap(self, namespace: str, name: str) -> None:
        await _raw(
            client.CoreV1Api(self.api).delete_namespaced_config_map(
                name, namespace, _preload_content=False
            )
        )

    async def patch_policy_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await _raw(
            client.CustomObjectsApi(self.api).patch_namespaced_custom_object_status(
                names.GROUP,
                names.VERSION,
                namespace,
                names.PLURAL,
                name,
                _status_apply(names.KIND, name, namespace, status),
                field_manager=FIELD_MANAGER,
                force=True,
                _preload_content=False,
                **_APPLY,
            )
        )

    async def patch_cluster_policy_status(self, name: str, status: dict[str, Any]) -> None:
        await _raw(
            client.CustomObjectsApi(self.api).patch_cluster_custom_object_status(
                names.GROUP,
                names.VERSION,
                names.CLUSTER_PLURAL,
                name,
                _status_apply(names.CLUSTER_KIND, name, None, status),
                field_manager=FIELD_MANAGER,
                force=True,
                _preload_content=False,
                **_APPLY,
            )
        )

    async def post_event(
        self, involved: dict[str, str], type: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event on ``involved`` (apiVersion, kind, namespace, name, uid).

        A cluster-scoped object's Events go to the ``default`` namespace, as kubectl
        looks for them there.
        """
        namespace = involved["namespace"] or "default"
        now = datetime.datetime.now(datetime.UTC)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{involved['name']}.",
                "namespace": namespace,
            },
            "involvedObject": involved,
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        await _raw(
            client.CoreV1Api(self.api).create_namespaced_event(
                namespace, cast(Any, event), _preload_content=False
            )
        )

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

    async def list_policies(self, namespaces: tuple[str, ...]) -> list[PolicyView]:
        """Every DualStackPolicy (in these namespaces, or anywhere), as views."""
        custom = client.CustomObjectsApi(self.api)
        views: list[PolicyView] = []
        for ns in namespaces or (None,):
            if ns:
                call = custom.list_namespaced_custom_object(
                    names.GROUP, names.VERSION, ns, names.PLURAL, _preload_content=False
                )
            else:
                call = custom.list_cluster_custom_object(
                    names.GROUP, names.VERSION, names.PLURAL, _preload_content=False
                )
            doc = json.loads(await _raw(call))
            views += [PolicyView.from_body(item) for item in doc.get("items") or []]
        return views

    async def list_cluster_policies(self) -> list[PolicyView]:
        """Every ClusterDualStackPolicy; none where the CRD or the right to list is missing."""
        try:
            body = await _raw(
                client.CustomObjectsApi(self.api).list_cluster_custom_object(
                    names.GROUP, names.VERSION, names.CLUSTER_PLURAL, _preload_content=False
                )
            )
        except ApiError as err:
            if err.status in (403, 404):
                return []
            raise
        items = json.loads(body).get("items") or []
        return [PolicyView.from_body(item, cluster=True) for item in items]

    async def list_namespace_labels(self) -> dict[str, dict[str, str]]:
        body = await _raw(client.CoreV1Api(self.api).list_namespace(_preload_content=False))
        return {
            str(item["metadata"]["name"]): dict(item["metadata"].get("labels") or {})
            for item in json.loads(body).get("items") or []
        }

    async def list_service_cidr_families(self) -> list[IPFamily] | None:
        """The default ServiceCIDR's families by listing (the plan's only right), or None."""
        try:
            doc = json.loads(
                await _raw(
                    client.NetworkingV1Api(self.api).list_service_cidr(_preload_content=False)
                )
            )
        except ApiError as err:
            if err.status in (403, 404):
                return None
            raise
        for item in doc.get("items") or []:
            if (item.get("metadata") or {}).get("name") == "kubernetes":
                return _families(list((item.get("spec") or {}).get("cidrs") or []))
        return None

    async def any_policies(self, namespaces: tuple[str, ...]) -> bool:
        """Whether a DualStackPolicy exists (in these namespaces, or anywhere), or any
        ClusterDualStackPolicy (where its CRD is installed)."""
        custom = client.CustomObjectsApi(self.api)
        with contextlib.suppress(NotFound):
            listed = await _raw(
                custom.list_cluster_custom_object(
                    names.GROUP,
                    names.VERSION,
                    names.CLUSTER_PLURAL,
                    limit=1,
                    _preload_content=False,
                )
            )
            if json.loads(listed).get("items"):
                return True
        for ns in namespaces or (None,):
            args = (names.GROUP, names.VERSION, *((ns,) if ns else ()), names.PLURAL)
            list_call = (
                custom.list_namespaced_custom_object if ns else custom.list_cluster_custom_object
            )
            if json.loads(await _raw(list_call(*args, limit=1, _preload_content=False))).get(
                "items"
            ):
                return True
        return False

    async def served_admission_resources(self) -> set[str]:
        """The resources ``admissionregistration.k8s.io/v1`` serves (discovery)."""
        body = await _raw(
            client.AdmissionregistrationV1Api(self.api).get_api_resources(_preload_content=False)
        )
        return {str(r.get("name")) for r in json.loads(body).get("resources") or []}

    async def served_policy_resources(self) -> set[str]:
        """The resources ``dualstack.dev/v1alpha1`` serves: empty before the CRDs."""
        try:
            body = await _raw(
                client.CustomObjectsApi(self.api).get_api_resources(
                    names.GROUP, names.VERSION, _preload_content=False
                )
            )
        except NotFound:
            return set()
        return {str(r.get("name")) for r in json.loads(body).get("resources") or []}

    async def allowed(self, verb: str, group: str, resource: str, namespace: str | None) -> bool:
        """SelfSubjectAccessReview: may the operator's identity do this?"""
        sub = ""
        if "/" in resource:
            resource, sub = resource.split("/", 1)
        attrs = {"verb": verb, "group": group, "resource": resource, "subresource": sub}
        if namespace:
            attrs["namespace"] = namespace
        body = await _raw(
            client.AuthorizationV1Api(self.api).create_self_subject_access_review(
                cast(
                    Any,
                    {
                        "apiVersion": "authorization.k8s.io/v1",
                        "kind": "SelfSubjectAccessReview",
                        "spec": {"resourceAttributes": attrs},
                    },
                ),
                _preload_content=False,
            )
        )
        return bool((json.loads(body).get("status") or {}).get("allowed"))

    async def review_token(self, token: str) -> UserInfo | None:
        """TokenReview: the user a bearer token belongs to (None: not valid)."""
        body = await _raw(
            client.AuthenticationV1Api(self.api).create_token_review(
                cast(
                    Any,
                    {
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenReview",
                        "spec": {"token": token},
                    },
                ),
                _preload_content=False,
            )
        )
        status = json.loads(body).get("status") or {}
        if not status.get("authenticated"):
            return None
        user = status.get("user") or {}
        return UserInfo(
            username=str(user.get("username", "")),
            uid=str(user.get("uid", "")),
            groups=tuple(user.get("groups") or ()),
            extra=dict(user.get("extra") or {}),
        )

    async def may_get(self, user: UserInfo, path: str) -> bool:
        """SubjectAccessReview: may ``user`` get the non-resource URL ``path``?"""
        body = await _raw(
            client.AuthorizationV1Api(self.api).create_subject_access_review(
                cast(
                    Any,
                    {
                        "apiVersion": "authorization.k8s.io/v1",
                        "kind": "SubjectAccessReview",
                        "spec": {
                            "user": user.username,
                            "uid": user.uid,
                            "groups": list(user.groups),
                            "extra": user.extra,
                            "nonResourceAttributes": {"path": path, "verb": "get"},
                        },
                    },
                ),
                _preload_content=False,
            )
        )
        return bool((json.loads(body).get("status") or {}).get("allowed"))

    async def delete_webhook_configuration(self, name: str) -> None:
        """Deletes the configuration if it is there."""
        try:
            await client.AdmissionregistrationV1Api(self.api).delete_mutating_webhook_configuration(
                name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise _error(exc) from exc

    def _admission(self, verb: str, kind: Kind) -> Any:
        """The generated client's call for ``verb`` on one of the four admission kinds."""
        return getattr(client.AdmissionregistrationV1Api(self.api), f"{verb}_{kind.resource}")

    async def list_admission_objects(self, kind: Kind, selector: str) -> list[dict[str, Any]]:
        doc = json.loads(
            await _raw(
                self._admission("list", kind)(label_selector=selector, _preload_content=False)
            )
        )
        return list(doc.get("items") or [])

    async def create_admission_object(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        made: dict[str, Any] = json.loads(
            await _raw(
                self._admission("create", kind)(
                    body, field_manager=FIELD_MANAGER, _preload_content=False
                )
            )
        )
        return made

    async def replace_admission_object(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        """A full update; ``metadata.resourceVersion`` makes it fail on a stale view."""
        made: dict[str, Any] = json.loads(
            await _raw(
                self._admission("replace", kind)(
                    body["metadata"]["name"],
                    body,
                    field_manager=FIELD_MANAGER,
                    _preload_content=False,
                )
            )
        )
        return made

    async def delete_admission_object(self, kind: Kind, name: str) -> None:
        await _raw(self._admission("delete", kind)(name, _preload_content=False))

    async def list_admission_parameters(
        self, namespaces: tuple[str, ...], selector: str
    ) -> list[dict[str, Any]]:
        """Our DualStackAdmissions, in these namespaces (or all of them)."""
        custom = client.CustomObjectsApi(self.api)
        items: list[dict[str, Any]] = []
        for ns in namespaces or (None,):
            if ns:
                call = custom.list_namespaced_custom_object(
                    names.GROUP,
                    names.VERSION,
                    ns,
                    names.ADMISSION_PLURAL,
                    label_selector=selector,
                    _preload_content=False,
                )
            else:
                call = custom.list_cluster_custom_object(
                    names.GROUP,
                    names.VERSION,
                    names.ADMISSION_PLURAL,
                    label_selector=selector,
                    _preload_content=False,
                )
            items += json.loads(await _raw(call)).get("items") or []
        return items

    async def create_admission_parameter(self, body: dict[str, Any]) -> dict[str, Any]:
        made: dict[str, Any] = json.loads(
            await _raw(
                client.CustomObjectsApi(self.api).create_namespaced_custom_object(
                    names.GROUP,
                    names.VERSION,
                    body["metadata"]["namespace"],
                    names.ADMISSION_PLURAL,
                    body,
                    field_manager=FIELD_MANAGER,
                    _preload_content=False,
                )
            )
        )
        return made

    async def replace_admission_parameter(self, body: dict[str, Any]) -> dict[str, Any]:
        """A full update; ``metadata.resourceVersion`` makes it fail on a stale view."""
        meta = body["metadata"]
        made: dict[str, Any] = json.loads(
            await _raw(
                client.CustomObjectsApi(self.api).replace_namespaced_custom_object(
                    names.GROUP,
                    names.VERSION,
                    meta["namespace"],
                    names.ADMISSION_PLURAL,
                    meta["name"],
                    body,
                    field_manager=FIELD_MANAGER,
                    _preload_content=False,
                )
            )
        )
        return made

    async def delete_admission_parameter(self, namespace: str, name: str) -> None:
        await _raw(
            client.CustomObjectsApi(self.api).delete_namespaced_custom_object(
                names.GROUP,
                names.VERSION,
                namespace,
                names.ADMISSION_PLURAL,
                name,
                _preload_content=False,
            )
        )

    async def dry_run_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """What the API server would store for this Service (admission included); nothing
        is stored."""
        made: dict[str, Any] = json.loads(
            await _raw(
                client.CoreV1Api(self.api).create_namespaced_service(
                    namespace, cast(Any, body), dry_run="All", _preload_content=False
                )
            )
        )
        return made

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

    async def read_peers(self, name: str, namespaces: tuple[str, ...]) -> list[PeerRecord]:
        """Kopf's peer records in the peering object."""
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
        peers: list[PeerRecord] = []
        for ident, info in ((obj or {}).get("status") or {}).items():
            if not isinstance(info, dict):
                continue
            seen = datetime.datetime.fromisoformat(str(info.get("lastseen")))
            if seen.tzinfo is None:
                seen = seen.replace(tzinfo=datetime.UTC)
            peers.append(
                PeerRecord(
                    identity=str(ident),
                    priority=int(info.get("priority", 0)),
                    lifetime=float(info.get("lifetime", 60)),
                    lastseen=seen,
                )
            )
        return peers

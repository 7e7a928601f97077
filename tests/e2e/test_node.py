"""A real node in the local cluster, and the data plane dual-stack is for: pods get an
address of each family from the bridge, and kube-proxy carries a dual-stack Service's
traffic to them over both of its ClusterIPs."""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import os
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from dualstack_operator import __version__
from dualstack_operator.observability.tls import self_signed
from image import NAME as IMAGE_NAME
from localcluster import REPO, LocalCluster
from localcluster.node import import_image, kill_container, pod_log
from localcluster.node.node import attached_ctr as LocalNodeCtr
from localcluster.topology import NODE_NAME
from support.kube import Kubectl, dsp, service, wait_for
from support.traffic import answers, echo_pod, ready_pods

MANIFESTS = REPO / "manifests"


def test_the_node_is_ready_with_a_pod_cidr_and_an_address_of_each_family(
    node_cluster: LocalCluster, noded: Kubectl
) -> None:
    node = noded.get("node", NODE_NAME)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    cidrs = [ipaddress.ip_network(c) for c in node["spec"]["podCIDRs"]]
    assert [c.version for c in cidrs] == [4, 6]
    internal = [
        ipaddress.ip_address(a["address"])
        for a in node["status"]["addresses"]
        if a["type"] == "InternalIP"
    ]
    assert sorted(a.version for a in internal) == [4, 6]


def test_a_dual_stack_service_answers_on_both_cluster_ips(
    node_cluster: LocalCluster, noded: Kubectl
) -> None:
    for name in ("echo-a", "echo-b"):
        noded.create(echo_pod(name))
    svc = service(
        "echo",
        selector={"app": "echo"},
        ipFamilyPolicy="RequireDualStack",
        ports=[{"port": 80, "targetPort": 8080}],
    )
    noded.create(svc)

    pods = ready_pods(noded, "echo", 2)
    for pod in pods:
        versions = sorted(ipaddress.ip_address(a["ip"]).version for a in pod["status"]["podIPs"])
        assert versions == [4, 6], pod["status"]["podIPs"]

    def endpoints_ready() -> bool:
        slices = noded.get("endpointslices", "", "-l", "kubernetes.io/service-name=echo")["items"]
        ready = {
            s["addressType"]
            for s in slices
            for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready")
        }
        return ready == {"IPv4", "IPv6"}

    wait_for("ready endpoints of both families", endpoints_ready, timeout=60)
    cluster_ips = noded.get("service", "echo")["spec"]["clusterIPs"]
    assert [ipaddress.ip_address(ip).version for ip in cluster_ips] == [4, 6]
    for ip in cluster_ips:
        # Both backends answer through kube-proxy's rules for this family.
        assert answers(ip) == {"echo-a", "echo-b"}


def test_the_operator_image_runs_non_root_on_a_read_only_root(
    node_cluster: LocalCluster, noded: Kubectl, operator_image: Path
) -> None:
    """`make image`'s archive, imported into the node's containerd and run as a pod
    under the Deployment's security context: the console script answers."""
    import_image(node_cluster.state_dir, operator_image)
    noded.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "operator-version"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "operator",
                        "image": IMAGE_NAME,
                        "imagePullPolicy": "Never",
                        "args": ["--version"],
                        "securityContext": {
                            "runAsNonRoot": True,
                            "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                    }
                ],
            },
        }
    )

    def finished() -> str | None:
        phase = noded.get("pod", "operator-version")["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for("the image's pod to finish", finished, timeout=120)
    logs = pod_log(node_cluster.state_dir, noded.namespace or "", "operator-version", "operator")
    assert phase == "Succeeded", logs
    assert logs.strip() == f"dualstack-operator {__version__}"
    status = noded.get("pod", "operator-version")["status"]["containerStatuses"][0]
    assert status["imageID"], "run from the imported image"


def test_make_image_loads_into_a_running_node_from_the_repository_root(
    node_cluster: LocalCluster, operator_image: Path
) -> None:
    """As the README says it, with the node's directory given relatively (containerd 2's
    ctr read a relative socket as a URL: "invalid (non-empty) authority")."""
    relative = os.path.relpath(node_cluster.state_dir, REPO)
    ctr = LocalNodeCtr(node_cluster.state_dir)
    ctr("images", "rm", IMAGE_NAME, check=False)
    out = subprocess.run(
        ["make", "image", f"CLUSTER_DIR={relative}"],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "loaded into the node's containerd" in out.stdout
    assert IMAGE_NAME in ctr("images", "ls", "-q")


WEBHOOK_HOSTS = [
    "dualstack-operator-webhook.dualstack-system.svc",
    "dualstack-operator-webhook.dualstack-system.svc.cluster.local",
]


def _deploy(node_cluster: LocalCluster, admin: Kubectl, tmp_path: Path, archive: Path) -> Path:
    """`kubectl apply -k` of the manifests with the admission component, the image
    `make image` built, and a locally made certificate Secret instead of cert-manager's."""
    import_image(node_cluster.state_dir, archive)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = os.path.relpath(MANIFESTS, overlay)
    name, _, tag = IMAGE_NAME.rpartition(":")
    drop = "\n".join(
        f"- patch: |-\n    $patch: delete\n    apiVersion: cert-manager.io/v1\n"
        f"    kind: {kind}\n    metadata: {{name: {obj}, namespace: dualstack-system}}"
        for kind, obj in (
            ("Certificate", "dualstack-operator-webhook"),
            ("Issuer", "dualstack-operator-selfsigned"),
        )
    )
    (overlay / "kustomization.yaml").write_text(
        f"resources: [{base}]\n"
        f"components: [{base}/admission]\n"
        f"images:\n- name: ghcr.io/dualstack-dev/dualstack-operator\n"
        f"  newName: {name}\n  newTag: {tag}\n"
        f"patches:\n{drop}\n"
    )
    admin.run("apply", "-f", str(MANIFESTS / "base" / "namespace.yaml"))
    cert, key, ca = self_signed(tmp_path / "webhook-tls", WEBHOOK_HOSTS)
    (tmp_path / "ca.crt").write_bytes(ca)
    admin.in_namespace("dualstack-system").run(
        "create",
        "secret",
        "generic",
        "dualstack-operator-webhook-tls",
        f"--from-file=tls.crt={cert}",
        f"--from-file=tls.key={key}",
        f"--from-file=ca.crt={tmp_path / 'ca.crt'}",
    )
    admin.run("apply", "-k", str(overlay))
    return overlay


def _operator_pods(system: Kubectl) -> list[dict[str, Any]]:
    pods = system.get("pods", "", "-l", "app.kubernetes.io/name=dualstack-operator")["items"]
    return [p for p in pods if p["metadata"].get("deletionTimestamp") is None]


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod["status"].get("conditions") or []
    )


def _active(system: Kubectl) -> str | None:
    """The pod whose operator is active: the highest priority in kopf's peering."""
    peering = system.get("clusterkopfpeering", "dualstack-operator")
    peers = peering.get("status") or {}
    if not peers:
        return None
    # Keyed by identity ("<pod name>/<pid>"), each with its priority.
    best = max(peers.items(), key=lambda kv: int((kv[1] or {}).get("priority", 0)))
    return best[0].split("/")[0] or None


def test_deployed_as_users_deploy_it(
    node_cluster: LocalCluster,
    noded: Kubectl,
    operator_image: Path,
    tmp_path: Path,
) -> None:
    admin = Kubectl(noded.binary, noded.kubeconfig)
    overlay = _deploy(node_cluster, admin, tmp_path, operator_image)
    try:
        _as_users_deploy_it(node_cluster, noded, admin)
    finally:  # the chart's test installs the same cluster-wide objects next
        admin.run("delete", "-k", str(overlay), "--ignore-not-found", "--timeout=180s")
        admin.run(
            "delete", "mutatingwebhookconfiguration", "dualstack-operator", "--ignore-not-found"
        )


def _as_users_deploy_it(node_cluster: LocalCluster, noded: Kubectl, admin: Kubectl) -> None:
    system = admin.in_namespace("dualstack-system")
    pods = wait_for(
        "both replicas Running and Ready",
        lambda: (lambda ps: ps if len(ps) == 2 and all(map(_ready, ps)) else None)(
            _operator_pods(system)
        ),
        timeout=180,
    )
    # Pod Security restricted admitted them (the namespace enforces it).
    labels = admin.get("namespace", "dualstack-system")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for pod in pods:
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0, "liveness holds"

    # The metrics Service, scraped through each of its ClusterIPs.
    ips = system.get("service", "dualstack-operator-metrics")["spec"]["clusterIPs"]
    assert [ipaddress.ip_address(ip).version for ip in ips] == [4, 6]
    for ip in ips:
        host = f"[{ip}]" if ":" in ip else ip
        url = f"http://{host}:8080/metrics"

        def scraped(url: str = url) -> bool:
            try:
                with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - a ClusterIP
                    return "dualstack_cluster_ip_families" in resp.read().decode()
            except OSError:
                return False

        wait_for(f"metrics through {ip}", scraped, timeout=60)

    # A new Service is born compliant through the in-cluster webhook (its Service and
    # certificate); one that drifted later is fixed by the reconciler.
    noded.create(dsp(ipFamilyPolicy="PreferDualStack"))
    dual = ["IPv4", "IPv6"]

    def born_compliant() -> bool:
        name = f"born-{uuid.uuid4().hex[:6]}"
        created = noded.create(service(name))
        return bool(created["spec"].get("ipFamilies") == dual)

    wait_for("a Service born compliant through the webhook", born_compliant, timeout=120)
    noded.create(service("web"))
    noded.patch(
        "service", "web", {"spec": {"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}}
    )
    wait_for(
        "web fixed in-cluster",
        lambda: noded.get("service", "web")["spec"]["ipFamilies"] == dual,
        timeout=120,
    )
    active = wait_for("an active replica in the peering", lambda: _active(system), timeout=60)
    assert active in {p["metadata"]["name"] for p in pods}
    # The webhook Service sends requests to the standby too, whose kopf indexes
    # peering has frozen: it must still know the namespace's policy.
    (standby,) = [p for p in pods if p["metadata"]["name"] != active]
    wanted = {"op": "add", "path": "/spec/ipFamilies", "value": dual}

    def standby_mutates() -> list[dict[str, Any]] | None:
        try:
            patch = _review_at(standby["status"]["podIP"], noded.namespace or "", service("q"))
        except OSError:
            return None  # its webhook server starts after its startup hooks
        return patch if wanted in patch else None

    wait_for("the standby's webhook to mutate", standby_mutates, timeout=60)

    # SIGKILL of the active replica's process, and its pod gone (so that the kubelet
    # does not restart it in place): the other replica takes over.
    victim = system.get("pod", active)
    kill_container(node_cluster.state_dir, victim["status"]["containerStatuses"][0]["containerID"])
    system.run("delete", "pod", active, "--grace-period=0", "--force", "--wait=false")
    noded.create(service("after-failover"))
    wait_for(
        "after-failover fixed by the other replica",
        lambda: noded.get("service", "after-failover")["spec"]["ipFamilies"] == dual,
        timeout=180,
    )
    now = wait_for(
        "a new active replica",
        lambda: (lambda a: a if a != active else None)(_active(system)),
        timeout=120,
    )
    assert now != active


def _review_at(pod_ip: str, namespace: str, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON patch one replica's webhook answers for a Service creation (straight to
    its pod address, from the host over the bridge)."""
    obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Service"},
            "resource": {"group": "", "version": "v1", "resource": "services"},
            "operation": "CREATE",
            "userInfo": {"username": "test"},
            "namespace": namespace,
            "object": obj,
        },
    }
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own certificate
    request = urllib.request.Request(
        f"https://{pod_ip}:9443/services-ip-families",
        data=json.dumps(review).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as resp:  # noqa: S310
        answer = json.loads(resp.read())["response"]
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(answer.get("patch") or "W10="))
    return patch


HELM_NAMESPACE = "dualstack-helm"
CHART = REPO / "charts" / "dualstack-operator"


def _helm(helm: Path, kubeconfig: Path, home: Path, *args: str) -> str:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}
    out = subprocess.run(
        [str(helm), *args], env=env, capture_output=True, text=True, check=False, timeout=400
    )
    assert out.returncode == 0, f"helm {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _rolled_out(system: Kubectl, image: str) -> list[dict[str, Any]] | None:
    pods = _operator_pods(system)
    done = len(pods) == 2 and all(_ready(p) for p in pods)
    return (
        pods if done and all(p["spec"]["containers"][0]["image"] == image for p in pods) else None
    )


class Creator(threading.Thread):
    """Creates a Service every 0.2 s while the installation is upgraded, recording what
    each one was born with."""

    def __init__(self, k: Kubectl) -> None:
        super().__init__(daemon=True)
        self.k = k
        self.stop = threading.Event()
        self.born: dict[str, tuple[float, list[str]]] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            name = f"during-{len(self.born):03}"
            created = self.k.create(service(name, selector={"app": name}))
            self.born[name] = (time.time(), created["spec"].get("ipFamilies") or [])
            self.stop.wait(0.2)


def test_installed_tested_upgraded_and_uninstalled_with_helm(
    node_cluster: LocalCluster,
    noded: Kubectl,
    operator_image: Path,
    helm: Path,
    tmp_path: Path,
) -> None:
    """`helm install` with the image `make image` built (both replicas Ready under
    restricted Pod Security, a policy reconciled, a Service born compliant through the
    native policies), `helm test`, two `helm upgrade`s while Services are being created,
    then `helm uninstall`, counted from the API server's audit log."""
    import_image(node_cluster.state_dir, operator_image)
    name, _, tag = IMAGE_NAME.rpartition(":")
    admin = Kubectl(noded.binary, noded.kubeconfig)
    # A second tag of the same image: what a new release looks like to the rollout.
    LocalNodeCtr(node_cluster.state_dir)("images", "tag", "--force", IMAGE_NAME, f"{name}:next")
    admin.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": HELM_NAMESPACE,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        }
    )
    system = admin.in_namespace(HELM_NAMESPACE)
    values = [
        "--set", f"image.repository={name}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never", "--set", "admission=policy",
    ]  # fmt: skip
    try:
        out = _helm(
            helm, noded.kubeconfig, tmp_path, "install", "dualstack-operator", str(CHART),
            "-n", HELM_NAMESPACE, *values, "--wait", "--timeout=4m",
        )  # fmt: skip
        assert "kubectl apply -n <namespace>" in out, "NOTES.txt tells what to apply next"
        pods = wait_for("both replicas Ready", lambda: _rolled_out(system, IMAGE_NAME), timeout=120)
        for pod in pods:
            assert pod["status"]["containerStatuses"][0]["restartCount"] == 0

        # A policy reconciled, and a Service born compliant through the native policies.
        dual = ["IPv4", "IPv6"]
        noded.create(service("old", selector={"app": "old"}))
        noded.create(dsp(ipFamilyPolicy="RequireDualStack"))
        wait_for("old fixed", lambda: noded.get("service", "old")["spec"]["ipFamilies"] == dual,
                 timeout=120)  # fmt: skip

        def born_compliant() -> bool:
            made = noded.create(service(f"born-{uuid.uuid4().hex[:6]}"))
            return bool(made["spec"].get("ipFamilies") == dual)

        wait_for("a Service born compliant", born_compliant, timeout=120)
        status = wait_for(
            "the policy's status",
            lambda: (lambda s: s if s.get("compliantServices", 0) >= 2 else None)(
                noded.get("dsp", "default").get("status") or {}
            ),
            timeout=120,
        )
        _helm(helm, noded.kubeconfig, tmp_path, "test", "dualstack-operator", "-n", HELM_NAMESPACE)

        # Two upgrades while Services are being created: changed values, then a new tag.
        audit = node_cluster.audit
        before = {n for (res, n, _), _ in audit.writes(noded.namespace or "").items()
                  if res == "services"}  # fmt: skip
        creator = Creator(noded)
        began = time.time()
        creator.start()
        try:
            for change in (["--set", "logFormat=text"], ["--set", "image.tag=next"]):
                _helm(
                    helm, noded.kubeconfig, tmp_path, "upgrade", "dualstack-operator",
                    str(CHART), "-n", HELM_NAMESPACE, "--reuse-values", *change,
                    "--wait", "--timeout=4m",
                )  # fmt: skip
            wait_for("the new pods", lambda: _rolled_out(system, f"{name}:next"), timeout=180)
        finally:
            creator.stop.set()
            creator.join(timeout=30)
        ended = time.time()
        gap = sorted(n for n, (_, families) in creator.born.items() if families != dual)
        assert len(creator.born) > 20, "Services were created all through the upgrades"

        def fixed(name: str) -> bool:
            return bool(noded.get("service", name)["spec"]["ipFamilies"] == dual)

        for late in gap:  # landed in a gap: fixed by the next pass
            wait_for(f"{late} fixed", functools.partial(fixed, late), timeout=60)
        writes = audit.writes(noded.namespace or "")
        compliant = {"old", *(n for n in creator.born if n not in gap)} - before
        touched = {n for (res, n, _), _ in writes.items() if res == "services"} & compliant
        print(
            f"UPGRADE two helm upgrades in {ended - began:.0f}s: {len(creator.born)} Services "
            f"created, {len(gap)} not born compliant {gap}, {len(touched)} operator writes "
            f"to compliant Services"
        )
        assert touched == set(), "no write to a compliant Service"
        kept = noded.get("dsp", "default").get("status") or {}
        assert kept.get("observedGeneration") == status.get("observedGeneration")
        assert kept.get("compliantServices", 0) >= status["compliantServices"], "status kept"
    finally:
        out = _helm(helm, noded.kubeconfig, tmp_path, "uninstall", "dualstack-operator",
                    "-n", HELM_NAMESPACE, "--wait")  # fmt: skip
    # Uninstalled: the Services are as they were, the CRDs and policies are kept.
    assert noded.get("service", "old")["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    assert admin.get("crd", "dualstackpolicies.dualstack.dev")["metadata"]["name"]
    assert noded.get("dsp", "default")["metadata"]["name"] == "default"
    assert not _operator_pods(system)

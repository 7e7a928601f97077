"""The operator's ports serve only what they should, refuse what they should, and stay up."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localcluster import LocalCluster, free_port
from support.kube import Kubectl, dsp, service, wait_for
from support.operator_proc import OperatorProcess

StartOperator = Callable[..., OperatorProcess]


def _get(
    port: int,
    path: str,
    method: str = "GET",
    tls: bool = False,
    host: str = "127.0.0.1",
    **headers: str,
) -> int:
    conn: http.client.HTTPConnection
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the operator's self-signed pair
        conn = http.client.HTTPSConnection(host, port, timeout=10, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def _serving(operator: OperatorProcess) -> bool:
    return operator.policy_passes() >= 0


UNSERVED = [
    "/",
    "/index.html",
    "/debug/pprof/",
    "/debug/vars",
    "/metrics/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/static/",
    "/.git/config",
]


def test_metrics_and_liveness_ports_serve_only_their_endpoints(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    operator = start_operator(dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="PreferDualStack"))
    wait_for("metrics", lambda: _serving(operator))
    metrics, liveness = operator.metrics_port, operator.liveness_port
    wait_for("liveness", lambda: _get(liveness, "/healthz") == 200)
    assert _get(metrics, "/metrics") == 200
    assert _get(metrics, "/readyz") == 200
    for path in UNSERVED:
        assert _get(metrics, path) == 404, path
        assert _get(liveness, path) in (404, 405), path
    assert _get(metrics, "/metrics", "POST") == 405
    assert _get(metrics, "/metrics", "DELETE") == 405
    assert _get(metrics, "/metrics") == 200, "still serving"


def test_liveness_answers_an_ipv6_kubelet(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    """Without --metrics-address (as deployed) /healthz answers on IPv6 too: on an
    IPv6-only cluster the kubelet probes the pod's IPv6 address, and a probe bound to
    0.0.0.0 would fail it into a restart loop."""
    operator = start_operator(dual_cluster, dual, "--metrics-address=")
    port = operator.liveness_port
    wait_for("liveness on ::1", lambda: _answers("::1", port, "/healthz"))
    assert _get(port, "/healthz") == 200


def _answers(host: str, port: int, path: str) -> bool:
    try:
        return _get(port, path, host=host) == 200
    except OSError:
        return False


def _review(uid: str = "1", **request: object) -> dict[str, object]:
    base: dict[str, object] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Service"},
        "resource": {"group": "", "version": "v1", "resource": "services"},
        "operation": "CREATE",
        "userInfo": {"username": "someone"},
        "namespace": "default",
        "object": service("x"),
    }
    base.update(request)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": base}


MALFORMED: list[tuple[str, bytes]] = [
    ("not JSON", b"{not json"),
    ("not UTF-8", b"\xff\xfe\x00"),
    ("a list", b"[1, 2, 3]"),
    ("a string", b'"AdmissionReview"'),
    ("not a review", json.dumps({"kind": "Pod", "apiVersion": "v1"}).encode()),
    (
        "no request",
        json.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}).encode(),
    ),
    ("request a string", json.dumps(_review() | {"request": "x"}).encode()),
    ("no uid", json.dumps(_review(uid="")).encode()),
    ("object a list", json.dumps(_review(object=[1])).encode()),
    ("spec a string", json.dumps(_review(object={"metadata": {}, "spec": "x"})).encode()),
    ("no object", json.dumps(_review(object=None)).encode()),
    ("no userInfo", json.dumps(_review(userInfo=None)).encode()),
]


@pytest.fixture
def webhook(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> Iterator[int]:
    port = free_port()
    operator = start_operator(
        dual_cluster,
        dual,
        "--admission=webhook",
        "--webhook-address=127.0.0.1",
        f"--webhook-port={port}",
    )
    dual.create(dsp(ipFamilyPolicy="PreferDualStack"))
    wait_for("the webhook", lambda: _post(port, json.dumps(_review()).encode())[0] == 200)
    yield port
    assert "Traceback" not in operator.log()


def _post(port: int, body: bytes, path: str = "/services-ip-families") -> tuple[int, bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


@pytest.mark.parametrize(("case", "body"), MALFORMED, ids=[c for c, _ in MALFORMED])
def test_webhook_answers_malformed_reviews_400_and_stays_up(
    webhook: int, case: str, body: bytes
) -> None:
    status, _ = _post(webhook, body)
    assert status == 400, case
    status, answer = _post(webhook, json.dumps(_review(uid="after")).encode())
    assert status == 200, "the webhook went down"
    review = json.loads(answer)
    assert review["response"]["uid"] == "after"
    assert review["response"]["allowed"] is True


def test_webhook_refuses_plain_http(webhook: int) -> None:
    with socket.create_connection(("127.0.0.1", webhook), timeout=10) as sock:
        sock.sendall(
            b"POST /services-ip-families HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
        )
        try:
            answer = sock.recv(4096)
        except OSError:
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 200"), answer
    assert b"AdmissionReview" not in answer
    assert _post(webhook, json.dumps(_review()).encode())[0] == 200, "the webhook went down"
    assert _get(webhook, "/", tls=True) in (404, 405)


def test_secure_metrics_only_for_tokens_allowed_to_get_them(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator, tmp_path: Path
) -> None:
    ns = dual.namespace or ""
    admin = Kubectl(dual.binary, dual.kubeconfig)
    reader_role = f"metrics-reader-{ns}"[:63]
    for account in ("scraper", "stranger"):
        dual.run("create", "serviceaccount", account)
    admin.run("create", "clusterrole", reader_role, "--verb=get", "--non-resource-url=/metrics")
    admin.run(
        "create",
        "clusterrolebinding",
        reader_role,
        f"--clusterrole={reader_role}",
        f"--serviceaccount={ns}:scraper",
    )
    try:
        tokens = {
            account: dual.run("create", "token", account, "--duration=1h").strip()
            for account in ("scraper", "stranger")
        }
        operator = start_operator(dual_cluster, dual, "--metrics-secure")
        port = operator.metrics_port

        def scrape(**headers: str) -> int:
            try:
                return _get(port, "/metrics", tls=True, **headers)
            except OSError:
                return 0

        wait_for("HTTPS metrics", lambda: scrape() != 0)
        assert scrape(Authorization=f"Bearer {tokens['scraper']}") == 200
        assert scrape(Authorization=f"Bearer {tokens['stranger']}") == 403
        assert scrape() == 401
        assert scrape(Authorization="Bearer not-a-token") == 401
        assert scrape(Authorization=f"Basic {tokens['scraper']}") == 401
        with pytest.raises((OSError, http.client.HTTPException)):
            _get(port, "/metrics")  # plain HTTP to the TLS port gets no metrics
        assert _get(port, "/readyz", tls=True) == 200, "probes need no token"
    finally:
        admin.run("delete", "clusterrolebinding,clusterrole", reader_role, "--ignore-not-found")

"""Workloads and traffic on the local node: echo pods that answer with their name, and
a prober that sends a request every few milliseconds and records what failed, when."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from localcluster.node import ECHO_IMAGE
from localcluster.topology import CLUSTER_DOMAIN
from support.kube import Kubectl, wait_for


def echo_pod(name: str, app: str = "echo") -> dict[str, Any]:
    """A pod of the locally built echo server (port 8080, both families; restricted)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "containers": [
                {
                    "name": "echo",
                    "image": ECHO_IMAGE,
                    "imagePullPolicy": "Never",  # built locally; nothing is ever pulled
                    "env": [
                        {
                            "name": "POD_NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        }
                    ],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                    "securityContext": {
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                }
            ]
        },
    }


def ready_pods(k: Kubectl, app: str, count: int) -> list[dict[str, Any]]:
    """Waits until ``count`` pods labelled app=``app`` are Ready."""

    def ready() -> list[dict[str, Any]] | None:
        pods = k.get("pods", "", "-l", f"app={app}")["items"]
        ok = [
            p
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions") or []
            )
        ]
        return ok if len(ok) == count else None

    return wait_for(f"{count} {app} pods Ready", ready, timeout=120)


def url(ip: str, port: int = 80) -> str:
    return f"http://[{ip}]:{port}/" if ":" in ip else f"http://{ip}:{port}/"


def lookup(name: str, rdtype: str, server: str, timeout: float = 1) -> list[str]:
    """The addresses the cluster DNS at ``server`` gives for ``name`` (A or AAAA); [] for
    no such name, no answer or no reply."""
    query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
    try:
        reply = dns.query.udp(query, server, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return []
    if reply.rcode() != dns.rcode.NOERROR:
        return []
    return sorted(item.to_text() for rrset in reply.answer for item in rrset)


def service_name(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}."


def answer(ip: str, timeout: float = 3) -> str | None:
    """The name of the pod that answered at ``ip``:80, or None."""
    try:
        with urllib.request.urlopen(url(ip), timeout=timeout) as resp:  # noqa: S310
            return str(resp.read().decode().split()[0])
    except OSError:
        return None


def answers(ip: str, pods: int = 2) -> set[str]:
    """The pods that answered at ``ip``:80, once ``pods`` have (kube-proxy may not have
    programmed its rules at the first request)."""
    seen: set[str] = set()

    def enough() -> set[str] | None:
        name = answer(ip)
        if name is not None:
            seen.add(name)
        return seen if len(seen) >= pods else None

    return wait_for(f"{pods} pods through {ip}", enough, timeout=60, interval=0.1)


@dataclass(eq=False)  # a thread is hashed by identity
class Prober(threading.Thread):
    """A request to ``ip`` (or to what ``resolve`` answers, looked up for each request)
    every ``every`` seconds, each with ``timeout``, until stopped; ``results`` holds
    (start time, ok) per request."""

    ip: str
    every: float = 0.01
    timeout: float = 1.0  # a refusal fails at once; a slow answer on a busy machine is no failure
    resolve: Callable[[], list[str]] | None = None  # by name: the address to use, each time
    results: list[tuple[float, bool]] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        while not self.stopped.is_set():
            began = time.monotonic()
            self.results.append((began, self._once()))
            self.stopped.wait(max(0.0, self.every - (time.monotonic() - began)))

    def _once(self) -> bool:
        ips = [self.ip] if self.resolve is None else self.resolve()
        return bool(ips) and answer(ips[0], self.timeout) is not None

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)

    def ok_since(self, count: int) -> bool:
        """The last ``count`` requests all succeeded."""
        last = self.results[-count:]
        return len(last) == count and all(ok for _, ok in last)

    def gap(self) -> tuple[float, int, int]:
        """(the longest run of failed requests in ms, from the first failure to the next
        success; failed requests in it; failed requests after it)."""
        longest, in_longest, end = 0.0, 0, -1
        i, n = 0, len(self.results)
        while i < n:
            if self.results[i][1]:
                i += 1
                continue
            j = i
            while j < n and not self.results[j][1]:
                j += 1
            until = self.results[j][0] if j < n else time.monotonic()
            if until - self.results[i][0] > longest:
                longest, in_longest, end = until - self.results[i][0], j - i, j
            i = j
        after = sum(1 for _, ok in self.results[end:] if not ok) if end >= 0 else 0
        return longest * 1000, in_longest, after

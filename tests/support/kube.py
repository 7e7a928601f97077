"""A thin kubectl wrapper for tests: they assert on what kubectl shows, as a user would."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class KubectlError(RuntimeError):
    def __init__(self, args: list[str], code: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed ({code}): {stderr.strip()}")
        self.code = code
        self.stderr = stderr


@dataclass(frozen=True)
class Kubectl:
    """kubectl bound to one kubeconfig (and optionally one namespace)."""

    binary: Path
    kubeconfig: Path
    namespace: str | None = None

    def in_namespace(self, namespace: str) -> Kubectl:
        return Kubectl(self.binary, self.kubeconfig, namespace)

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}"]
        if self.namespace:
            argv.append(f"--namespace={self.namespace}")
        argv += list(args)
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        if check and proc.returncode != 0:
            raise KubectlError(list(args), proc.returncode, proc.stderr)
        return proc.stdout

    def run_full(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Runs a command that must succeed; returns stdout and stderr (warnings go there)."""
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}"]
        if self.namespace:
            argv.append(f"--namespace={self.namespace}")
        proc = subprocess.run(
            [*argv, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        if proc.returncode != 0:
            raise KubectlError(list(args), proc.returncode, proc.stderr)
        return proc

    def fails(self, *args: str, stdin: str | None = None) -> str:
        """Runs a command that must fail; returns its stderr."""
        try:
            out = self.run(*args, stdin=stdin)
        except KubectlError as err:
            return err.stderr
        raise AssertionError(f"kubectl {' '.join(args)} succeeded: {out}")

    def stderr_of(self, *args: str, stdin: str | None = None) -> str:
        """Runs a command; returns its stderr if it failed, else an empty string."""
        try:
            self.run(*args, stdin=stdin)
        except KubectlError as err:
            return err.stderr
        return ""

    def get(self, kind: str, name: str = "", *args: str) -> Any:
        target = [kind, name] if name else [kind]
        return json.loads(self.run("get", *target, *args, "-o", "json"))

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object, or None while it does not exist (a Service between the delete and
        the create of a recreation, say)."""
        out = self.run("get", kind, name, "--ignore-not-found", "-o", "json")
        found: dict[str, Any] | None = json.loads(out) if out.strip() else None
        return found

    def apply(self, obj: dict[str, Any], *args: str) -> str:
        return self.run("apply", "-f", "-", *args, stdin=json.dumps(obj))

    def create(self, obj: dict[str, Any], *args: str) -> Any:
        return json.loads(self.run("create", "-f", "-", "-o", "json", *args, stdin=json.dumps(obj)))

    def patch(self, kind: str, name: str, patch: dict[str, Any], *args: str) -> Any:
        out = self.run(
            "patch", kind, name, "--type=merge", "-p", json.dumps(patch), "-o", "json", *args
        )
        return json.loads(out)


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2
) -> T:
    """Polls ``probe`` until it returns something truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def service(name: str, **spec: Any) -> dict[str, Any]:
    """A Service manifest; ``spec`` keys are the Service spec's own field names."""
    spec.setdefault("ports", [{"port": 80, "targetPort": 8080}])
    if spec.get("type") == "ExternalName":
        spec.pop("ports")
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def deny_services(
    admin: Kubectl, namespace: str, name: str, operation: str, expression: str, message: str
) -> str:
    """A real API-server rejection: a ValidatingAdmissionPolicy refusing Service
    ``operation``s in one namespace where ``expression`` is false. Returns its name."""
    name = name[:63]
    admin.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": [operation],
                            "resources": ["services"],
                        }
                    ]
                },
                "validations": [{"expression": expression, "message": message}],
            },
        }
    )
    admin.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        }
    )
    return name


def deny_require_dual_stack(admin: Kubectl, namespace: str, message: str) -> str:
    """Refuses Service updates to RequireDualStack in one namespace (the operator's patches)."""
    expression = "object.spec.ipFamilyPolicy != 'RequireDualStack'"
    return deny_services(
        admin, namespace, f"deny-require-{namespace}", "UPDATE", expression, message
    )


def dsp(name: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dualstack.dev/v1alpha1",
        "kind": "DualStackPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def status_when(
    k: Kubectl, pred: Callable[[dict[str, Any]], bool], name: str = "default", timeout: float = 60
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status: dict[str, Any] = k.get("dsp", name).get("status") or {}
        return status if status and pred(status) else None

    return wait_for(f"status of {name} to match", probe, timeout=timeout)


def families(k: Kubectl, name: str) -> tuple[str | None, list[str]]:
    spec = k.get("service", name)["spec"]
    return spec.get("ipFamilyPolicy"), spec.get("ipFamilies", [])


def token_kubeconfig(
    admin: Kubectl, cluster: Any, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig holding a token minted for a ServiceAccount (TokenRequest)."""
    import base64

    token = admin.run("create", "token", account, "-n", namespace, "--duration=1h").strip()
    ca = (cluster.state_dir / "pki" / "ca.crt").read_bytes()
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {
                            "server": cluster.server,
                            "certificate-authority-data": base64.b64encode(ca).decode(),
                        },
                    }
                ],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": "sa"}}],
                "current-context": "local",
            }
        )
    )
    return path

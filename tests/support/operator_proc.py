"""The operator under test, as a real process (the way users run it)."""

from __future__ import annotations

import os
import signal
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from localcluster import Process, Supervisor, free_port
from support.kube import wait_for


class OperatorProcess:
    """``dualstack-operator run --namespace ...`` against a kubeconfig, stopped by PID."""

    def __init__(
        self,
        kubeconfig: Path,
        namespaces: list[str],
        log_path: Path,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.env = env or {}
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        self.args = (
            f"--metrics-port={self.metrics_port}",
            "--metrics-address=127.0.0.1",
            f"--liveness-port={self.liveness_port}",
            *args,
        )
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.log_path = log_path
        self.proc: Process | None = None

    def start(self) -> OperatorProcess:
        argv = [sys.executable, "-m", "dualstack_operator", "run"]
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        argv += self.args
        self.proc = Supervisor(self.log_path.parent, record=False).start(
            "operator",
            argv,
            {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env},
            log=self.log_path,
        )
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signals the operator and waits; SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        code = self.proc.stop(sig, grace=timeout)
        self.proc = None
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def pause(self) -> None:
        """SIGSTOP: the operator stops reading its connections (a long GC pause, a frozen node)."""
        assert self.proc is not None
        self.proc.send(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send(signal.SIGCONT)

    def scrape(self) -> str:
        """The operator's /metrics ("" while it does not serve them)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return str(resp.read().decode())
        except OSError:
            return ""

    def policy_passes(self) -> int:
        """Policy reconcile passes completed so far (from the operator's own /metrics)."""
        for line in self.scrape().splitlines():
            if line.startswith('dualstack_reconcile_duration_seconds_count{kind="policy"}'):
                return int(float(line.split()[-1]))
        return -1

    def wait_exit(self, timeout: float = 60) -> int:
        """Waits for the process to end by itself (a fault point); its exit code."""
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def after_next_pass(operator: OperatorProcess, trigger: Callable[[], object]) -> int:
    """Fires ``trigger`` (an event for the operator) and waits until a policy pass has
    run after it; returns the pass count. Negative properties ("nothing was written")
    are asserted after a pass that had the chance to write, never after a sleep."""
    before = wait_for("the operator's metrics", lambda: operator.policy_passes() + 1) - 1
    trigger()
    return wait_for(
        "a reconcile pass after the trigger",
        lambda: (lambda n: n if n > before else None)(operator.policy_passes()),
    )

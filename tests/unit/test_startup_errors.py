"""Startup errors end the process with one clear line, never a traceback or a hang."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from localcluster import free_port


def run(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dualstack_operator", "run", "--metrics-port=0", *args],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def unreachable(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{free_port()}'}}}}]\n"
        "users: [{name: u, user: {token: x}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "cannot load the kubeconfig"),
        ("broken", "cannot load the kubeconfig"),
        ("unreachable", "cannot reach the API server at https://127.0.0.1:"),
    ],
)
def test_one_clear_line_and_a_non_zero_exit(tmp_path: Path, case: str, message: str) -> None:
    if case == "missing":
        kubeconfig = tmp_path / "nonexistent"
    elif case == "broken":
        kubeconfig = tmp_path / "broken"
        kubeconfig.write_text("this: [is not a kubeconfig")
    else:
        kubeconfig = unreachable(tmp_path)
    out = run(kubeconfig, "--liveness-port=0")
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines, out.stderr
    assert lines[-1].startswith(f"dualstack-operator: {message}"), out.stderr
    assert "Traceback" not in out.stderr
    assert len(lines) == 1, out.stderr

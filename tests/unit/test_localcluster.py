"""The launcher's own logic, without starting a control plane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from localcluster import parse_families, stop_recorded


@pytest.mark.parametrize("text", ["ipv4", "ipv6", "ipv4,ipv6", "ipv6,ipv4", " IPv6 , IPv4 "])
def test_families_accepted(text: str) -> None:
    fams = parse_families(text)
    assert ",".join(fams) == text.replace(" ", "").lower()


@pytest.mark.parametrize("text", ["", "ipv5", "ipv4,ipv4", "ipv4,ipv6,ipv4", "dual"])
def test_families_refused(text: str) -> None:
    with pytest.raises(ValueError, match="FAMILIES must be one of"):
        parse_families(text)


def test_stop_leaves_unrelated_processes_alone(tmp_path: Path) -> None:
    """A recorded PID that now runs something else (PID reuse) is never signalled."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "pids.json").write_text(json.dumps([{"name": "etcd", "pid": bystander.pid}]))
        assert stop_recorded(tmp_path) == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()

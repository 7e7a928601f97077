"""The launcher's own logic, without starting a control plane."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localcluster import parse_families, stop_recorded, wait_port_free


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


def test_a_restart_waits_while_its_port_is_held() -> None:
    """A listener still holding the port (a killed server's socket the kernel keeps)
    makes the wait fail at its deadline; once it is gone the port is free at once."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        assert not wait_port_free(port, time.monotonic() + 0.3)
    finally:
        held.close()
    assert wait_port_free(port, time.monotonic() + 5)

"""Processes started for the local cluster and its tests, and how they are stopped.

One ``Supervisor`` starts every child: the control plane's and the node's components,
the operator under test, Prometheus, the benches' operator. Each child leads its own
process group and may get SIGKILL when its parent dies (a killed pytest leaves nothing).
A supervisor with a state directory records its children's PIDs there
(``pids.json``), so ``make cluster-down`` or a later run stops them by PID, and only
after checking that the PID still runs a command naming that directory: a PID reused
by an unrelated process is never signalled.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

PIDS_FILE = "pids.json"
_PR_SET_PDEATHSIG = 1


def set_pdeathsig() -> None:
    """Runs in the child: SIGKILL it if the parent dies without tearing down."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A loopback TCP port that is free now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port_free(port: int, deadline: float) -> bool:
    """Whether a listener could bind 127.0.0.1:``port`` (as the Go servers do, with
    SO_REUSEADDR) before the deadline; polls until then."""
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                return True
            except OSError:
                pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def is_ours(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and its command line mentions ``marker``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (reaping it if it is our child)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"  # exited, not yet reaped by its parent


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def terminate(pid: int, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
    """``sig`` to the process group ``pid`` leads, then SIGKILL after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    if not wait_gone(pid, grace):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_gone(pid, 5.0)


class Process:
    """One supervised child."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def send(self, signum: int) -> None:
        """``signum`` to the whole group (SIGSTOP/SIGCONT pause and resume it all)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 15.0) -> int | None:
        """``sig`` to the group, then SIGKILL after ``grace`` seconds; the exit code (waited
        for through the handle, so it is the child's own, not lost to another reaper)."""
        if self.popen.poll() is None:
            self.send(sig)
            try:
                return self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.popen.wait(timeout=5)
        return None

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Supervisor:
    """Starts children with their output in ``logs/<name>.log`` (or a given file);
    with ``record``, keeps their PIDs in ``<state_dir>/pids.json`` for ``stop_recorded``."""

    def __init__(
        self, state_dir: Path, *, die_with_parent: bool = True, record: bool = True
    ) -> None:
        self.state_dir = state_dir
        self.die_with_parent = die_with_parent
        self.record = record
        self._children: dict[str, Process] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        log: Path | None = None,
        cwd: Path | None = None,
    ) -> Process:
        path = log or self.state_dir / "logs" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        preexec: Callable[[], None] | None = set_pdeathsig if self.die_with_parent else None
        with path.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,  # own process group: stopped by PID, never by name
                preexec_fn=preexec,  # only sets PDEATHSIG
                cwd=cwd,
            )
        child = self._children[name] = Process(name, popen, path)
        if self.record:
            entries = [e for e in recorded(self.state_dir) if e["name"] != name]
            self._write([*entries, {"name": name, "pid": popen.pid}])
        return child

    def get(self, name: str) -> Process:
        return self._children[name]

    def __iter__(self) -> Iterator[Process]:
        return iter(list(self._children.values()))

    def exited(self) -> Process | None:
        """The first child that has exited, if any (a component that failed to start)."""
        return next((c for c in self._children.values() if not c.alive()), None)

    def stop(self, name: str) -> None:
        child = self._children.pop(name, None)
        if child is None:
            return
        child.stop()
        if self.record:
            self._write([e for e in recorded(self.state_dir) if e["name"] != name])

    def forget(self) -> None:
        """After ``stop_recorded``: reap what it stopped."""
        for child in self._children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=1)
        self._children.clear()

    def _write(self, entries: list[dict[str, object]]) -> None:
        (self.state_dir / PIDS_FILE).write_text(json.dumps(entries))


def recorded(state_dir: Path) -> list[dict[str, object]]:
    """The children recorded under ``state_dir``, in start order."""
    record = state_dir / PIDS_FILE
    entries: list[dict[str, object]] = json.loads(record.read_text()) if record.exists() else []
    return entries


def stop_recorded_pids(state_dir: Path, names: Sequence[str] | None = None) -> list[str]:
    """Stops the recorded children (``names`` only, or all in reverse start order) by PID,
    each only if it still runs a command naming ``state_dir``; returns what it stopped."""
    marker = str(state_dir.resolve())
    entries = recorded(state_dir)
    chosen = [e for e in entries if e["name"] in names] if names else list(reversed(entries))
    stopped = []
    for entry in chosen:
        pid = int(str(entry["pid"]))
        if is_ours(pid, marker):
            terminate(pid)
            stopped.append(f"{entry['name']} (pid {pid})")
    return stopped

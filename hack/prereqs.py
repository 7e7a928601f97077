"""System packages each local tier needs, checked before anything is built: what is
missing is named in one line with the ``apt-get install`` that brings it (never a
compiler error or a traceback halfway through a build). Standard library only."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def _command(name: str) -> Callable[[], bool]:
    return lambda: shutil.which(name) is not None


def _seccomp() -> bool:
    """runc links libseccomp: its header and its pkg-config entry."""
    if shutil.which("pkg-config") is None:
        return Path("/usr/include/seccomp.h").exists()
    probe = ["pkg-config", "--exists", "libseccomp"]
    return subprocess.run(probe, check=False).returncode == 0


# (Debian package, its check) per tier.
NEEDS: dict[str, list[tuple[str, Callable[[], bool]]]] = {
    "node": [
        ("containernetworking-plugins", lambda: Path("/usr/lib/cni/bridge").exists()),
        ("iptables", _command("iptables")),
        ("iproute2", _command("ip")),
        ("pkg-config", _command("pkg-config")),
        ("libseccomp-dev", _seccomp),
        ("gcc", _command("gcc")),
    ],
    "image": [
        ("debootstrap", _command("debootstrap")),
        ("buildah", _command("buildah")),
    ],
}


def missing(*tiers: str) -> list[str]:
    out: list[str] = []
    for tier in tiers:
        out += [package for package, ok in NEEDS[tier] if not ok() and package not in out]
    return out


def require(*tiers: str) -> None:
    """Exits with one line naming what ``tiers`` lack."""
    absent = missing(*tiers)
    if absent:
        print(
            f"{' and '.join(tiers)} need{'s' if len(tiers) == 1 else ''} "
            f"{', '.join(absent)}: apt-get install -y {' '.join(absent)}",
            file=sys.stderr,
        )
        raise SystemExit(1)


if __name__ == "__main__":
    require(*(sys.argv[1:] or NEEDS))

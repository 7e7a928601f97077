"""`make demo` tells the migration story to the end: plan, the policy, admission, then
Recreate with each IPv4 ClusterIP kept (the script itself, as a user runs it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _ips(out: str, section: str, name: str) -> list[str]:
    """The CLUSTER-IPS of one Service in the listing that follows ``section``."""
    listing = out.split(section, 1)[1]
    row = next(line for line in listing.splitlines() if line.startswith(f"{name} "))
    found = re.search(r"\[([^\]]*)\]\s*$", row)
    assert found, row
    return found.group(1).split()


def test_the_demo_ends_ipv6_primary_with_the_ipv4_addresses_kept(binaries: Path) -> None:
    # (binaries: the control plane is built; the demo starts its own in .local/demo)
    done = subprocess.run(
        ["bash", "hack/demo.sh"], cwd=REPO, capture_output=True, text=True, timeout=480,
        check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, f"{out[-3000:]}\n{done.stderr[-2000:]}"
    assert "VERDICT" in out, "plan ran before the policy"
    assert "`spec.primaryFamilyChange: Recreate` on the policy" in out, "the mismatch names the fix"
    born = next(line for line in out.splitlines() if line.startswith("newcomer "))
    assert "[IPv6 IPv4]" in born, "born IPv6-first through admission"
    for name in ("web", "checkout"):
        before = _ips(out, "Before (the IPv4 ClusterIPs clients know):", name)
        after = _ips(out, "After: IPv6 primary", name)
        assert ":" in after[0], f"{name}: IPv6 primary"
        assert after[1] == before[0], f"{name}: the IPv4 address kept"
    assert 'dualstack_recreations_total{addresses="kept"' in out

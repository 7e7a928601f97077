"""The image recipe, checked without a container runtime (none here): hadolint and shape."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from localcluster import REPO

DOCKERFILE = REPO / "Dockerfile"


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    out = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_multi_stage_slim_non_root_from_the_wheel() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert len(stages) == 2
    assert all("slim" in s for s in stages)
    final = text.split("\nFROM ")[-1]
    assert "USER 65532:65532" in final, "non-root, matching the Deployment's runAsUser"
    assert "--find-links=/wheels dualstack-operator==" in final, "installed from the built wheel"
    assert not re.search(r"apt-get|gcc|build-essential", final), "no compilers in the final stage"
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert version is not None
    assert f"dualstack-operator=={version.group(1)}" in final

"""The image recipe's text: hadolint and its shape (its build is in the node test)."""

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


def test_one_recipe_on_a_base_given_as_an_argument() -> None:
    """Users get python:3.12-slim-bookworm; `make image` passes its own Debian root (it
    builds and runs this very file: tests/e2e/test_node.py)."""
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE=python:3\.12-slim-bookworm$", text, flags=re.M)
    stages = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert stages == ["${BASE}", "${BASE}"]
    final = text.split("\nFROM ")[-1]
    assert "USER 65532:65532" in final, "non-root, matching the Deployment's runAsUser"
    assert "COPY --from=build /opt/dualstack /opt/dualstack" in final
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final), "nothing built here"

"""The chart's copies of the CRDs, the alerts and the dashboard are what their sources
generate (``make crds``): Helm reads only files inside the chart."""

from __future__ import annotations

from pathlib import Path

import pytest

from chart_files import REPO, expected


@pytest.mark.parametrize("path", sorted(expected()), ids=lambda p: p.name)
def test_chart_copy_is_current(path: Path) -> None:
    name = path.relative_to(REPO)
    assert path.exists(), f"{name} is missing: run `make crds`"
    assert path.read_text() == expected()[path], f"{name} is stale: run `make crds`"

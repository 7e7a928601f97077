"""The chart's copies of what has one source elsewhere (``make crds`` writes them; a unit
test fails when they drift): the CRDs, generated from the models as ``crds/`` is; kopf's
peering CRDs from ``manifests/base/peering.yaml``; the alerts and the dashboard from
``manifests/monitoring``. Helm reads only files inside the chart, hence copies."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from dualstack_operator.api.crd import KINDS, render
from generated import write_all

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "dualstack-operator"
MONITORING = REPO / "manifests" / "monitoring"


def expected() -> dict[Path, str]:
    """Every generated file of the chart and its content."""
    files = {CHART / "crds" / kind.file: render(kind) for kind in KINDS}
    peering = (REPO / "manifests" / "base" / "peering.yaml").read_text()
    files[CHART / "crds" / "kopfpeerings.yaml"] = peering
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    header = "# Generated from manifests/monitoring/prometheusrule.yaml by `make crds`.\n"
    files[CHART / "files" / "prometheusrule-spec.yaml"] = header + yaml.safe_dump(
        rule["spec"], sort_keys=False, width=10_000, allow_unicode=True
    )
    dashboard = MONITORING / "dashboards" / "dualstack-operator.json"
    files[CHART / "files" / "dualstack-operator.json"] = dashboard.read_text()
    return files


def main() -> int:
    return write_all(expected(), REPO)


if __name__ == "__main__":
    sys.exit(main())

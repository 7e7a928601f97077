"""Every shipped alert is actionable (pure: read from the manifest), and has a runbook:
an entry in docs/troubleshooting.md, as does every drift reason."""

from __future__ import annotations

import re
from collections import Counter
from urllib.parse import urlsplit

import yaml

from dualstack_operator.api.models import DriftReason
from dualstack_operator.core.readiness import CLUSTER_DNS_SINGLE_STACK
from localcluster import REPO
from support.monitoring import alert_rules

TROUBLESHOOTING = REPO / "docs" / "troubleshooting.md"
CHART = REPO / "charts" / "dualstack-operator" / "Chart.yaml"


def test_every_alert_tells_the_on_call_person_what_to_do() -> None:
    for rule in alert_rules():
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]


def github_anchor(heading: str) -> str:
    """The anchor a forge (GitHub) gives a heading: its text without Markdown (code
    spans, emphasis, links), lowercased, punctuation dropped, spaces made hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, ... as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        heading = re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)
        if fenced or heading is None:
            continue
        anchor = github_anchor(heading.group(1))
        found.add(f"{anchor}-{seen[anchor]}" if seen[anchor] else anchor)
        seen[anchor] += 1
    return found


def test_anchors_are_made_as_github_makes_them() -> None:
    doc = "# Title\n## `/readyz` answers 503\n```sh\n# not a heading\n```\n## Title\n"
    assert anchors(doc) == {"title", "readyz-answers-503", "title-1"}
    assert github_anchor("Throttled by the API server (429)") == "throttled-by-the-api-server-429"


def runbook_base() -> str:
    """The troubleshooting page on the project's home (the chart's ``home``)."""
    home = str(yaml.safe_load(CHART.read_text())["home"]).rstrip("/")
    return f"{home}/blob/main/docs/troubleshooting.md"


def test_every_alert_links_its_entry_in_the_troubleshooting_page() -> None:
    headings = anchors(TROUBLESHOOTING.read_text())
    for rule in alert_rules():
        url = rule["annotations"].get("runbook_url", "")
        page, _, anchor = url.partition("#")
        assert page == runbook_base(), f"{rule['alert']}: runbook_url {url!r}"
        assert urlsplit(url).scheme == "https"
        assert anchor in headings, f"{rule['alert']}: no heading for #{anchor} in {TROUBLESHOOTING}"
        assert anchor == rule["alert"].lower(), f"{rule['alert']}: its own entry, not #{anchor}"


def test_every_drift_reason_has_an_entry_in_the_troubleshooting_page() -> None:
    headings = anchors(TROUBLESHOOTING.read_text())
    reasons = [str(r) for r in DriftReason] + [str(CLUSTER_DNS_SINGLE_STACK)]
    missing = [r for r in reasons if r.lower() not in headings]
    assert not missing, f"no heading in {TROUBLESHOOTING.name} for {missing}"

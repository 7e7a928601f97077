"""Every shipped alert is actionable (pure: read from the manifest)."""

from __future__ import annotations

from support.monitoring import alert_rules


def test_every_alert_tells_the_on_call_person_what_to_do() -> None:
    for rule in alert_rules():
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]

"""The fleet's Prometheus rules: each file passes promtool check rules, and the unit tests in
roles/prometheus/tests/rules_test.yml pass promtool test rules (the same Prometheus as the hosts')."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PROMTOOL = ROOT / ".cache/prometheus-tools/bin/promtool"
RULES = sorted((ROOT / "roles/prometheus/files/rules").glob("*.yml"))


@pytest.fixture(scope="module")
def promtool() -> Path:
    if not PROMTOOL.exists():
        pytest.fail("promtool is missing: run tools/install-prometheus-tools.sh (make setup does)")
    return PROMTOOL


@pytest.mark.parametrize("rules", RULES, ids=lambda p: p.name)
def test_rule_file_passes_promtool_check(promtool: Path, rules: Path) -> None:
    result = subprocess.run([promtool, "check", "rules", rules], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_unit_tests(promtool: Path) -> None:
    tests = ROOT / "roles/prometheus/tests/rules_test.yml"
    result = subprocess.run([promtool, "test", "rules", tests], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_and_carries_severity_summary_and_runbook() -> None:
    import yaml

    alerts = [
        rule
        for group in yaml.safe_load((ROOT / "roles/prometheus/files/rules/alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    ]
    tested = {
        case["alertname"]
        for test in yaml.safe_load((ROOT / "roles/prometheus/tests/rules_test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]
        assert alert["annotations"]["runbook"], alert["alert"]
        assert alert["alert"] in tested, f"{alert['alert']} has no promtool test where it fires"

"""The fleet's Prometheus rules: each file passes promtool check rules, and the unit tests in
roles/prometheus/tests/rules_test.yml pass promtool test rules (the same Prometheus as the hosts').
The model observability rules are a template (thresholds are variables): rendered with the role's
defaults, they pass the same checks and roles/prometheus/tests/model_rules_test.yml."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PROMTOOL = ROOT / ".cache/prometheus-tools/bin/promtool"
RULES = sorted((ROOT / "roles/prometheus/files/rules").glob("*.yml"))
MODEL_RULES = ROOT / "roles/prometheus/templates/model_rules.yml.j2"
MODEL_TESTS = ROOT / "roles/prometheus/tests/model_rules_test.yml"


def render_model_rules(path: Path, **overrides: object) -> Path:
    """The model rules template rendered as the role renders it, with its defaults (and overrides)."""
    import jinja2
    import yaml

    defaults = yaml.safe_load((ROOT / "roles/prometheus/defaults/main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["comment"] = lambda text: f"#\n# {text}\n#"
    text = env.from_string(MODEL_RULES.read_text()).render(
        ansible_managed="Ansible managed", **{**defaults, **overrides}
    )
    path.write_text(text)
    return path


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


def test_model_rules_pass_promtool_check_and_their_unit_tests(promtool: Path, tmp_path: Path) -> None:
    rules = render_model_rules(tmp_path / "model.yml")
    result = subprocess.run([promtool, "check", "rules", rules], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    tests = tmp_path / MODEL_TESTS.name
    tests.write_text(MODEL_TESTS.read_text())
    result = subprocess.run([promtool, "test", "rules", tests], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_model_thresholds_are_the_variables(tmp_path: Path) -> None:
    import yaml

    rules = render_model_rules(
        tmp_path / "model.yml", prometheus_model_out_of_range_threshold=0.3, prometheus_model_psi_for="1h"
    )
    alerts = {r["alert"]: r for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert alerts["ModelInputOutOfRange"]["expr"].endswith("> 0.3")
    assert alerts["ModelPredictionMixShift"]["for"] == "1h"


def test_every_alert_is_tested_and_carries_severity_summary_and_runbook(tmp_path: Path) -> None:
    import yaml

    alerts = [
        rule
        for path in (ROOT / "roles/prometheus/files/rules/alerts.yml", render_model_rules(tmp_path / "model.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    tested = {
        case["alertname"]
        for tests in (ROOT / "roles/prometheus/tests/rules_test.yml", MODEL_TESTS)
        for test in yaml.safe_load(tests.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]
        assert alert["annotations"]["runbook"], alert["alert"]
        assert alert["alert"] in tested, f"{alert['alert']} has no promtool test where it fires"

"""Alertmanager with production's routes, receivers and vaulted secrets, checked on the host."""

from __future__ import annotations

import json
import time

UNITS = ["prometheus-alertmanager"]
AM = "http://127.0.0.1:9093/api/v2"


def get(host, path: str):
    return json.loads(host.check_output(f"curl -fsS {AM}/{path}"))


def post_alerts(host, alerts: list[dict]) -> None:
    body = json.dumps(alerts).replace("'", "'\\''")
    host.run_expect([0], f"curl -fsS -X POST -H 'Content-Type: application/json' -d '{body}' {AM}/alerts")


def test_package_and_service(host):
    assert host.package("prometheus-alertmanager").version.startswith("0.25.")
    svc = host.service("prometheus-alertmanager")
    assert svc.is_enabled
    assert svc.is_running
    assert host.socket("tcp://0.0.0.0:9093").is_listening
    assert not host.socket("tcp://0.0.0.0:9094").is_listening, "clustering is off"
    assert get(host, "status")["cluster"]["status"] == "disabled"


def test_configuration_holds_the_vaulted_secrets_and_is_not_world_readable(host):
    config = host.file("/etc/prometheus/alertmanager.yml")
    assert config.user == "root"
    assert config.group == "prometheus"
    assert config.mode == 0o640
    text = config.content_string
    assert "slack_api_url: https://hooks.slack.example.invalid/services/T00000000/" in text
    assert "credentials: example-pager-token-not-real" in text
    assert "$ANSIBLE_VAULT" not in text
    host.run_expect([0], "amtool check-config /etc/prometheus/alertmanager.yml")


def test_a_broken_configuration_was_refused_and_the_live_one_serves(host):
    assert "unclosed" not in host.file("/etc/prometheus/alertmanager.yml").content_string
    assert 'severity=~"critical|warning"' in get(host, "status")["config"]["original"]


def test_critical_alerts_page_mail_and_reach_the_channel_warnings_only_the_channel(host):
    post_alerts(
        host,
        [
            {"labels": {"alertname": "MolPage", "severity": "critical", "instance": "app-1"}},
            {"labels": {"alertname": "MolWarn", "severity": "warning", "instance": "app-2"}},
        ],
    )
    alerts = {a["labels"]["alertname"]: a for a in get(host, "alerts")}
    assert sorted(r["name"] for r in alerts["MolPage"]["receivers"]) == ["email", "pager", "team-chat"]
    assert [r["name"] for r in alerts["MolWarn"]["receivers"]] == ["team-chat"]


def test_a_critical_alert_of_a_host_inhibits_its_warnings(host):
    post_alerts(
        host,
        [
            {"labels": {"alertname": "MolDown", "severity": "critical", "instance": "app-3"}},
            {"labels": {"alertname": "MolSlow", "severity": "warning", "instance": "app-3"}},
        ],
    )
    deadline = time.monotonic() + 20
    while True:
        alerts = {a["labels"]["alertname"]: a for a in get(host, "alerts")}
        if alerts.get("MolSlow", {}).get("status", {}).get("state") == "suppressed":
            break
        assert time.monotonic() < deadline, alerts.get("MolSlow")
        time.sleep(1)
    assert alerts["MolSlow"]["status"]["inhibitedBy"]
    assert alerts["MolDown"]["status"]["state"] == "active"

"""Prometheus, as an operator would check it on the monitoring host after the side effects."""

from __future__ import annotations

import json
import time
from pathlib import Path

UNITS = ["prometheus"]
ROLE = Path(__file__).resolve().parents[3] / "roles" / "prometheus"


def api(host, path: str) -> dict:
    return json.loads(host.check_output(f"curl -fsS 'http://127.0.0.1:9090/api/v1/{path}'"))["data"]


def test_package_and_service(host):
    assert host.package("prometheus").version.startswith("2.42.")
    svc = host.service("prometheus")
    assert svc.is_enabled
    assert svc.is_running
    pid = int(host.check_output("systemctl show -p MainPID --value prometheus"))
    assert host.process.get(pid=pid).user == "prometheus"
    assert host.socket("tcp://0.0.0.0:9090").is_listening


def test_settings_reach_the_command_line_and_the_configuration(host):
    flags = api(host, "status/flags")
    assert flags["storage.tsdb.retention.time"] == "3d"
    assert flags["storage.tsdb.path"] == "/var/lib/prometheus/metrics2"
    config = api(host, "status/config")["yaml"]
    assert "environment: molecule" in config
    assert "scrape_interval: 3s" in config  # the side effect's change, reloaded
    host.run_expect([0], "promtool check config /etc/prometheus/prometheus.yml")


def test_every_job_bounds_what_one_scrape_may_bring(host):
    import yaml

    jobs = yaml.safe_load(api(host, "status/config")["yaml"])["scrape_configs"]
    jobs += yaml.safe_load(host.file("/root/prometheus-ec2.yml").content_string)["scrape_configs"]
    assert {job["job_name"] for job in jobs} >= {"prometheus", "model_service", "node"}
    for job in jobs:
        assert job["sample_limit"] == 20000, job["job_name"]
        assert job["label_limit"] == 30, job["job_name"]
        assert job["label_name_length_limit"] == 128, job["job_name"]
        assert job["label_value_length_limit"] == 512, job["job_name"]


def test_a_new_setting_was_a_reload_not_a_restart(host):
    assert host.check_output("systemctl show -p MainPID --value prometheus") == host.check_output(
        "cat /root/prometheus.pid"
    )
    before = host.check_output("cat /root/prometheus.reload-before")
    info = api(host, "status/runtimeinfo")
    assert info["lastConfigTime"] > before
    assert info["reloadConfigSuccess"] is True


def test_rules_are_loaded(host):
    groups = {g["name"]: len(g["rules"]) for g in api(host, "rules")["groups"]}
    assert groups["modelfleet.availability"] == 4
    assert groups["modelfleet.service.recording"] == 6
    assert groups["modelfleet.model.recording"] == 3
    assert groups["modelfleet.model"] == 2
    assert sum(groups.values()) == 28
    host.run_expect([0], "promtool check rules /etc/prometheus/rules/alerts.yml /etc/prometheus/rules/recording.yml")
    model = host.file("/etc/prometheus/rules/modelfleet-model.yml").content_string
    assert "model_feature:out_of_range:ratio > 0.05" in model  # the role's default threshold
    assert "for: 15m" in model


def test_a_rule_file_that_does_not_parse_never_replaced_the_live_one(host):
    live = host.file("/etc/prometheus/rules/alerts.yml").content_string
    assert live == (ROLE / "files/rules/alerts.yml").read_text()
    assert "NotPromQL" not in live


def test_discovered_targets_carry_their_labels_without_a_restart(host):
    deadline = time.monotonic() + 30
    while True:
        targets = api(host, "targets")["activeTargets"]
        app = {t["labels"]["instance"]: t for t in targets if t["labels"]["job"] == "model_service"}
        if set(app) == {"app-1", "app-2"} and all(t["health"] == "up" for t in app.values()):
            break
        assert time.monotonic() < deadline, app
        time.sleep(1)
    assert app["app-2"]["labels"]["release"] == "r2"
    assert app["app-2"]["scrapeUrl"] == "http://localhost:9090/metrics"
    sd = json.loads(host.file("/etc/prometheus/targets/app.json").content_string)
    assert [g["targets"] for g in sd] == [["127.0.0.1:9090"], ["localhost:9090"]]


def test_ec2_discovery_renders_a_valid_configuration(host):
    config = host.file("/root/prometheus-ec2.yml").content_string
    assert "ec2_sd_configs:" in config
    assert '- name: tag:Project\n            values: ["modelfleet"]' in config
    assert "target_label: az" in config
    assert "target_label: release" in config
    assert "endpoint: http://127.0.0.1:45999" in config


def test_the_container_drop_in_is_in_place(host):
    assert (
        "PrivateUsers=false" in host.file("/etc/systemd/system/prometheus.service.d/private-users.conf").content_string
    )

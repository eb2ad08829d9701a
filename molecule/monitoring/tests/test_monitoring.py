"""The monitoring host watching the app host: targets, queries, rules, dashboards, an alert end to end."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import testinfra

testinfra_hosts = ["ansible://mf-monitoring"]
UNITS = ["prometheus", "prometheus-alertmanager"]
ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
APP_JOBS = {"model_service", "node", "nginx"}
# PromQL words that are not metric names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def api(host, path: str):
    return json.loads(host.check_output(f"curl -fsS 'http://127.0.0.1:9090/api/v1/{path}'"))["data"]


def query(host, promql: str) -> list[dict]:
    data = host.check_output(f"curl -fsS --data-urlencode 'query={promql}' http://127.0.0.1:9090/api/v1/query")
    return json.loads(data)["data"]["result"]


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels, keywords or numbers)."""
    text = re.sub(r'"[^"]*"', "", promql)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        word = match.group(0)
        if following.startswith("(") or word in KEYWORDS or word.startswith("$"):
            continue
        names.add(word)
    return names


def wait(what: str, timeout: float, check):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(2)


def test_every_expected_target_is_up(host):
    def all_up():
        targets = api(host, "targets")["activeTargets"]
        up = {(t["labels"]["job"], t["labels"]["instance"]) for t in targets if t["health"] == "up"}
        return up if {(job, "mf-app_host") for job in APP_JOBS} <= up else None

    up = wait("every app job up", 60, all_up)
    assert {job for job, _ in up} == APP_JOBS | {"prometheus", "alertmanager"}


def test_a_model_service_metric_returns_samples(host):
    result = wait("model_service_ready samples", 30, lambda: query(host, 'model_service_ready{instance="mf-app_host"}'))
    assert len(result) == 2, "one sample per process"
    assert {r["value"][1] for r in result} == {"1"}
    assert {r["metric"]["release"] for r in result} == {"molecule"}


def test_rules_are_loaded_and_every_metric_they_read_is_scraped(host):
    groups = api(host, "rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 28
    assert all(rule["health"] == "ok" for rule in rules), [r for r in rules if r["health"] != "ok"]
    for rule in rules:
        if rule["type"] == "alerting":
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert rule["annotations"]["summary"]
            assert rule["annotations"]["runbook"]
    recorded = {rule["name"] for rule in rules if rule["type"] == "recording"}
    exported = set(api(host, "label/__name__/values"))
    read = set().union(*(metric_names(rule["query"]) for rule in rules))
    assert read - recorded - exported == set()


def test_every_dashboard_query_names_only_metrics_that_are_exported(host):
    recorded = {rule["name"] for group in api(host, "rules")["groups"] for rule in group["rules"]}
    exported = set(api(host, "label/__name__/values"))
    for path in sorted((ROOT / "roles/grafana/files/dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                names = metric_names(target["expr"])
                assert names, target["expr"]
                missing = names - recorded - exported
                assert not missing, f"{path.name} / {panel['title']}: {sorted(missing)} in {target['expr']}"


def _predictions(instance: dict[str, float], seconds: float, rate: float = 5.0, stop=None) -> int:
    """Single-row predictions through the app host's nginx at a bounded rate for a bounded time (or until
    the ``stop`` event is set)."""
    import requests

    sent, deadline = 0, time.monotonic() + seconds
    with requests.Session() as session:
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            started = time.monotonic()
            answer = session.post("http://127.0.0.1:18180/predict", json=instance, timeout=10)
            assert answer.status_code in (200, 429), answer.text
            sent += answer.status_code == 200
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
    return sent


def test_out_of_range_inputs_fire_the_drift_alert_and_in_range_ones_do_not(host):
    import threading

    metadata = json.loads((ROOT / "build/molecule/models/demo-v1/metadata.json").read_text())
    ranges = metadata["training"]["feature_ranges"]
    instance = {name: round(r["min"] + 0.5 * (r["max"] - r["min"]), 3) for name, r in ranges.items()}

    def share(feature: str) -> float | None:
        found = query(host, f'model_feature:out_of_range:ratio{{feature="{feature}"}}')
        return float(found[0]["value"][1]) if found else None

    def drift_alerts() -> list[dict]:
        return [a for a in api(host, "alerts")["alerts"] if a["labels"]["alertname"] == "ModelInputOutOfRange"]

    def ready_through_nginx() -> bool:
        import requests

        try:
            return requests.get("http://127.0.0.1:18180/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait("the service ready through nginx", 60, ready_through_nginx)

    # In range: the share is recorded as 0 for every feature and nothing is pending or firing.
    assert _predictions(instance, 25) > 50
    wait("an in-range share recorded", 20, lambda: share("feat3") is not None)
    assert share("feat3") == 0.0
    assert drift_alerts() == []
    mix = query(host, "model_class:predictions:share")
    assert mix, "the live class mix is recorded"
    assert query(host, "model:predictions:psi"), "the PSI of the class mix is recorded"

    # feat3 far below its training range in every row: the share goes to 1 and the alert fires.
    odd = {**instance, "feat3": ranges["feat3"]["min"] - 10 * (ranges["feat3"]["max"] - ranges["feat3"]["min"])}
    stop = threading.Event()
    load = threading.Thread(target=_predictions, args=(odd, 60, 5.0, stop), daemon=True)
    load.start()
    try:
        (alert,) = wait(
            "ModelInputOutOfRange firing", 60, lambda: [a for a in drift_alerts() if a["state"] == "firing"]
        )
    finally:
        stop.set()
        load.join(70)
    assert alert["labels"]["feature"] == "feat3"
    assert alert["labels"]["model"] == metadata["name"]
    assert alert["labels"]["severity"] == "warning"
    assert share("feat4") == 0.0


# Last: it stops the service, and nginx then holds the processes as failed for a while.
def test_a_stopped_model_service_fires_an_alert_that_alertmanager_receives(host):
    app = testinfra.get_host("ansible://mf-app_host", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])
    app.run_expect([0], "systemctl stop model-service@8001 model-service@8002")
    try:

        def firing():
            alerts = api(host, "alerts")["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "ModelServiceDown" and a["state"] == "firing"]

        (alert,) = wait("ModelServiceDown firing", 150, firing)
        assert alert["labels"]["instance"] == "mf-app_host"
        assert alert["labels"]["severity"] == "critical"

        def received():
            out = host.check_output("curl -fsS http://127.0.0.1:9093/api/v2/alerts")
            return [a for a in json.loads(out) if a["labels"]["alertname"] == "ModelServiceDown"]

        (got,) = wait("Alertmanager receiving ModelServiceDown", 30, received)
        assert got["status"]["state"] == "active"
        assert got["annotations"]["runbook"]
    finally:
        app.run_expect([0], "systemctl start model-service@8001 model-service@8002")

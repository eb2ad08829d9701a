"""The model service on a host after deploy, hot reload, a refused artifact and a rolled-back release."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

UNITS = ["model-service@8001", "model-service@8002"]
PORTS = (8001, 8002)
MODELS = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "build" / "molecule" / "models"


def get_json(host, url: str) -> dict:
    return json.loads(host.check_output(f"curl -fsS {url}"))


def test_user_has_no_login(host):
    user = host.user("model-service")
    assert user.shell == "/usr/sbin/nologin"
    assert user.group == "model-service"


def test_layout_and_modes(host):
    current = host.file("/opt/model-service/current")
    assert current.is_symlink
    assert current.linked_to == "/opt/model-service/releases/1.0.0"
    # Named by content: the sha256 of metadata.json, which holds the sha256 of every other file.
    digest = hashlib.sha256((MODELS / "demo-v2" / "metadata.json").read_bytes()).hexdigest()[:12]
    served = f"/opt/model-service/models/demo-classifier-2.0.0-{digest}"
    assert host.file("/opt/model-service/models/current").linked_to == served
    assert host.file(f"{served}/model.ubj").mode == 0o644
    config = host.file("/etc/model-service/config.toml")
    assert config.mode == 0o640
    assert config.group == "model-service"
    assert host.file("/opt/model-service/releases/1.0.0").user == "root"
    # The rolled-back release is kept for inspection but is not what runs.
    assert host.file("/opt/model-service/releases/1.0.0-broken/bin/model-service").exists


def test_installed_without_index(host):
    # prepare.yml pointed pip at an index that logs every request: the installs made none.
    assert host.service("index-trap").is_running
    assert "index-url" in host.check_output("/opt/model-service/releases/1.0.0/bin/pip config list")
    requests_seen = host.check_output("journalctl -u index-trap -o cat --no-pager | grep -c 'GET ' || true")
    assert requests_seen.strip() == "0"
    assert host.file("/opt/model-service/releases/1.0.0/.build-sha256").exists
    freeze = host.check_output("/opt/model-service/releases/1.0.0/bin/pip freeze")
    assert "modelfleet-model-service" in freeze
    assert "xgboost-cpu==3.2.0" in freeze


@pytest.mark.parametrize("unit", UNITS)
def test_units_enabled_running_as_service_user(host, unit):
    service = host.service(unit)
    assert service.is_enabled
    assert service.is_running
    pid = int(host.check_output(f"systemctl show -p MainPID --value {unit}"))
    assert host.process.get(pid=pid).user == "model-service"


@pytest.mark.parametrize("port", PORTS)
def test_listens_on_loopback_only(host, port):
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


@pytest.mark.parametrize("port", PORTS)
def test_ready_and_serving_the_hot_reloaded_model(host, port):
    ready = get_json(host, f"http://127.0.0.1:{port}/ready")
    assert ready == {"status": "ready", "model": "demo-classifier", "model_version": "2.0.0"}


def test_prediction_equals_the_artifact_on_the_controller(host):
    from model_service.app import create_app
    from model_service.config import Settings

    metadata = json.loads((MODELS / "demo-v2" / "metadata.json").read_text())
    ranges = metadata["training"]["feature_ranges"]
    instance = {name: round(r["min"] + 0.3 * (r["max"] - r["min"]), 2) for name, r in ranges.items()}
    local = create_app(Settings(model_path=MODELS / "demo-v2", access_log=False)).test_client()
    expected = local.post("/predict", json=instance).get_json()
    body = json.dumps(instance)
    for port in PORTS:
        remote = json.loads(
            host.check_output(
                f"curl -fsS -H 'Content-Type: application/json' -d '{body}' http://127.0.0.1:{port}/predict"
            )
        )
        assert remote["predicted_class"] == expected["predicted_class"]
        assert remote["model_version"] == "2.0.0"
        for label, p in expected["probabilities"].items():
            assert abs(remote["probabilities"][label] - p) <= 1e-5


def test_metrics_cover_every_process(host):
    text = host.check_output("curl -fsS http://127.0.0.1:8001/metrics")
    assert len(re.findall(r'^model_service_model_info\{.*version="2.0.0".*\} 1.0$', text, re.M)) == 2
    reloads = float(re.search(r"^model_service_model_reloads_total (\S+)$", text, re.M).group(1))
    assert reloads >= 2, "both processes took 2.0.0 by hot reload"


def test_access_log_in_journal(host):
    host.check_output("curl -fsS -H 'X-Request-ID: journal-probe' http://127.0.0.1:8001/health")
    lines = host.check_output("journalctl -u model-service@8001 -o cat --no-pager -n 200").splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{") and "journal-probe" in line]
    assert entries
    assert entries[-1]["path"] == "/health"


def test_unit_limits_memory_and_tasks(host):
    props = host.check_output("systemctl show model-service@8001 -p MemoryMax -p TasksMax")
    assert dict(line.split("=", 1) for line in props.splitlines()) == {"MemoryMax": str(1 << 30), "TasksMax": "64"}


def test_unit_exposure_is_low(exposure):
    assert exposure("model-service@8001.service") <= 2.0

"""A converged app host, used the way clients, load balancers and Prometheus use it: over the network."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from pathlib import Path

import pytest
import requests

testinfra_hosts = ["ansible://mf-app_host"]
API = "http://127.0.0.1:18180"
MODEL = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "build" / "molecule" / "models" / "demo-v1"
UNITS = ["nginx", "model-service@8001", "model-service@8002", "prometheus-node-exporter", "prometheus-nginx-exporter"]


@pytest.fixture(scope="module")
def instance() -> dict[str, float]:
    ranges = json.loads((MODEL / "metadata.json").read_text())["training"]["feature_ranges"]
    return {name: round(r["min"] + 0.7 * (r["max"] - r["min"]), 2) for name, r in ranges.items()}


def polite_post(path: str, **kwargs) -> requests.Response:
    """POST, waiting out the scenario's low rate limit if an earlier test used it up."""
    for _ in range(20):
        response = requests.post(API + path, timeout=10, **kwargs)
        if response.status_code != 429:
            return response
        time.sleep(0.5)
    return response


@pytest.mark.parametrize("unit", UNITS)
def test_every_service_runs(host, unit):
    assert host.service(unit).is_running
    assert host.service(unit).is_enabled


def test_ready_through_nginx():
    response = requests.get(API + "/ready", timeout=10)
    assert response.status_code == 200
    assert response.json()["model_version"] == "1.0.0"


def test_prediction_through_nginx_equals_the_artifact_on_the_controller(instance):
    from model_service.app import create_app
    from model_service.config import Settings

    expected = create_app(Settings(model_path=MODEL, access_log=False)).test_client().post("/predict", json=instance)
    expected_body = expected.get_json()
    for _ in range(4):  # both processes behind nginx
        response = polite_post("/predict", json=instance, headers={"X-Request-ID": "e2e-1"})
        assert response.status_code == 200
        body = response.json()
        assert response.headers["X-Request-ID"] == "e2e-1"
        assert body["predicted_class"] == expected_body["predicted_class"]
        for label, p in expected_body["probabilities"].items():
            assert abs(body["probabilities"][label] - p) <= 1e-5


def test_batch_through_nginx(instance):
    response = polite_post("/predict", json={"instances": [instance] * 10})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 10


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (b"{broken", "application/json", 400, "invalid_json"),
        (b'{"feat1": 1}', "application/json", 422, "invalid_features"),
        (b'{"feat1": 1}', "text/plain", 415, "unsupported_media_type"),
        (b"{" + b" " * 1_100_000 + b"}", "application/json", 413, "payload_too_large"),
    ],
)
def test_bad_requests_get_json_errors_through_nginx(body, content_type, status, error):
    response = polite_post("/predict", data=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] == error
    assert response.json()["detail"]


def test_nginx_passes_every_body_the_service_accepts(instance):
    # One limit for both (model_service_max_body_bytes, 1 MiB): just under it nginx passes the body on.
    body = json.dumps(instance).encode()
    padded = body[:-1] + b" " * (1_048_576 - len(body) - 1) + b"}"
    response = polite_post("/predict", data=padded, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    response = polite_post("/predict", data=padded + b" ", headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_rate_limit_gives_429_json():
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: requests.get(API + "/health", timeout=10), range(120)))
    limited = [r for r in responses if r.status_code == 429]
    assert limited, "120 requests at once must exceed 20 r/s with a burst of 20"
    assert limited[0].json()["error"] == "rate_limited"
    assert {r.status_code for r in responses} <= {200, 429}


def test_every_scrape_target_answers_on_the_metrics_listener():
    time.sleep(1)
    service = requests.get("http://127.0.0.1:18190/metrics", timeout=10).text
    assert "model_service_model_info{" in service
    assert "model_service_rows_predicted_total" in service
    node = requests.get("http://127.0.0.1:18190/metrics/node", timeout=10).text
    assert "node_exporter_build_info{" in node
    nginx = requests.get("http://127.0.0.1:18190/metrics/nginx", timeout=10).text
    assert "nginx_up 1" in nginx


@pytest.mark.parametrize("port", [18191, 18192])
def test_exporters_not_reachable_from_outside_but_through_the_listener(port):
    # 9100 and 9113 are published, but the exporters listen on the host's loopback only.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)


def test_both_processes_answer_behind_nginx(host, instance):
    for i in range(8):
        response = polite_post("/predict", json=instance, headers={"X-Request-ID": f"spread-{i}"})
        assert response.status_code == 200
    lines = host.check_output("grep spread- /var/log/nginx/access.log").splitlines()
    upstreams = {json.loads(line)["upstream"] for line in lines}
    assert upstreams == {"127.0.0.1:8001", "127.0.0.1:8002"}


def test_service_not_reachable_directly_from_outside(host):
    assert not host.socket("tcp://0.0.0.0:8001").is_listening
    assert host.socket("tcp://127.0.0.1:8001").is_listening


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_open_inference_protocol_through_nginx(instance, binary):
    import numpy as np
    import tritonclient.http as triton

    client = triton.InferenceServerClient(API.removeprefix("http://"))
    assert client.is_model_ready("demo-classifier")
    features = json.loads((MODEL / "metadata.json").read_text())["features"]  # the tensor's column order
    rows = np.array([[instance[name] for name in features]] * 3, dtype=np.float32)
    tensor = triton.InferInput("input-0", [3, rows.shape[1]], "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "predicted_class")]
    for _ in range(20):
        try:
            result = client.infer("demo-classifier", [tensor], outputs=outputs)
            break
        except triton.InferenceServerException as error:
            if error.status() != "429":
                raise
            time.sleep(0.5)
    expected = polite_post("/predict", json=instance).json()
    assert result.as_numpy("predicted_class").tolist() == [expected["predicted_class"]] * 3
    probabilities = result.as_numpy("probabilities")[0]
    labels = json.loads((MODEL / "metadata.json").read_text())["classes"]
    assert np.abs(probabilities - np.array([expected["probabilities"][str(c)] for c in labels])).max() <= 1e-5

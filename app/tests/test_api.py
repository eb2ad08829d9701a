"""The HTTP contract, through Flask's test client (no network)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import xgboost
from model_service.app import PUBLIC_METADATA, create_app
from model_service.config import Settings
from model_service.metrics import Metrics
from model_service.runtime import TreeRuntime
from model_service.state import ServiceState
from openapi_spec_validator import validate


def post(client, body, content_type: str = "application/json", **headers):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post("/predict", data=data, content_type=content_type, headers=headers)


def reference(artifact: Path, rows: list[dict], features: list[str]) -> np.ndarray:
    booster = xgboost.Booster()
    booster.load_model(str(artifact / "model.ubj"))
    matrix = np.array([[row[f] for f in features] for row in rows], dtype=np.float32)
    return booster.inplace_predict(matrix)


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def assert_error(response, status: int, code: str, *words: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == code
    for word in words:
        assert word in body["detail"]
    return body


def test_single_prediction_matches_xgboost(client, artifact, metadata, instance) -> None:
    response = post(client, instance)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"predicted_class", "probabilities", "confidence", "model_version"}
    assert body["model_version"] == "1.0.0"
    expected = reference(artifact, [instance], metadata["features"])[0]
    got = np.array([body["probabilities"][str(c)] for c in metadata["classes"]])
    assert np.abs(got - expected).max() <= 1e-5
    assert body["predicted_class"] == metadata["classes"][int(expected.argmax())]
    assert body["confidence"] == pytest.approx(float(expected.max()), abs=1e-5)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("size", [1, 5, 50])
def test_batch_prediction_matches_xgboost(client, artifact, metadata, instance, size) -> None:
    rng = np.random.default_rng(size)
    rows = [{k: v * float(rng.uniform(0.5, 1.5)) for k, v in instance.items()} for _ in range(size)]
    response = post(client, {"instances": rows})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_version"] == "1.0.0"
    assert len(body["predictions"]) == size
    expected = reference(artifact, rows, metadata["features"])
    got = np.array([[p["probabilities"][str(c)] for c in metadata["classes"]] for p in body["predictions"]])
    assert np.abs(got - expected).max() <= 1e-5


def test_integers_are_numbers(client, instance) -> None:
    assert post(client, {k: int(v) for k, v in instance.items()}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        (b"{not json", 400, "invalid_json", ["not valid JSON"]),
        (b"", 400, "invalid_json", ["empty"]),
        (b'{"feat1": NaN}', 400, "invalid_json", ["NaN"]),
        (b'{"feat1": Infinity}', 400, "invalid_json", []),
        (b"[1, 2, 3]", 422, "invalid_body", ["JSON object", "array"]),
        (b"42", 422, "invalid_body", ["JSON object"]),
        (b'"text"', 422, "invalid_body", ["string"]),
        (b"null", 422, "invalid_body", ["null"]),
        (b'{"instances": []}', 422, "empty_batch", ["empty"]),
        (b'{"instances": {"feat1": 1}}', 422, "invalid_body", ["must be an array"]),
        (b'{"instances": [1]}', 422, "invalid_instance", ["instances[0]"]),
        (b'{"instances": [[1, 2]]}', 422, "invalid_instance", ["instances[0]"]),
        (b'{"instances": [], "feat1": 1}', 422, "invalid_body", ["only the key 'instances'"]),
    ],
)
def test_malformed_bodies(client, body, status, code, words) -> None:
    assert_error(post(client, body), status, code, *words)


def test_missing_and_unknown_features_are_named(client, instance) -> None:
    body = dict(instance)
    del body["feat3"], body["feat17"]
    body["colour"] = 1.0
    assert_error(
        post(client, body), 422, "invalid_features", "missing features: feat3, feat17", "unknown features: colour"
    )


def test_empty_object_lists_missing_features(client) -> None:
    detail = assert_error(post(client, {}), 422, "invalid_features", "missing features: feat1")["detail"]
    assert "and 26 more" in detail


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (True, ["feat5 must be a number, not a boolean"]),
        ("12", ["feat5 must be a number, not a string"]),
        (None, ["not a null"]),
        ([1.0], ["not a array"]),
        ({"x": 1}, ["not a object"]),
        (1e300, ["too large"]),
    ],
)
def test_bad_values(client, instance, value, words) -> None:
    body = dict(instance)
    body["feat5"] = value
    assert_error(post(client, body), 422, "invalid_value", *words)


def test_huge_number_literal(client, instance) -> None:
    text = json.dumps(instance).replace('"feat2": ' + json.dumps(instance["feat2"]), '"feat2": 1e999')
    response = post(client, text.encode())
    assert response.status_code in (400, 422)
    assert response.get_json()["error"] in ("invalid_json", "invalid_value")


def test_bad_value_in_batch_names_the_row(client, instance) -> None:
    bad = dict(instance)
    bad["feat9"] = "x"
    assert_error(post(client, {"instances": [instance, bad]}), 422, "invalid_value", "instances[1]: feat9")


def test_wrong_content_type(client, instance) -> None:
    assert_error(post(client, json.dumps(instance), content_type="text/plain"), 415, "unsupported_media_type")
    assert_error(client.post("/predict", data=json.dumps(instance)), 415, "unsupported_media_type", "none")


def test_json_content_type_with_charset(client, instance) -> None:
    assert post(client, json.dumps(instance), content_type="application/json; charset=utf-8").status_code == 200


def test_body_over_limit(client, instance) -> None:
    assert_error(post(client, b"{" + b" " * 300_000 + b"}"), 413, "payload_too_large", "200000 bytes")


def test_batch_over_limit(client, instance) -> None:
    assert_error(post(client, {"instances": [instance] * 51}), 413, "batch_too_large", "51 rows", "limit is 50")


def test_unknown_route_and_method(client) -> None:
    assert_error(client.get("/nope"), 404, "not_found", "/openapi.json")
    assert_error(client.get("/predict"), 405, "method_not_allowed")


def test_request_id_echoed_or_generated(client, instance) -> None:
    assert post(client, instance, **{"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = post(client, instance).headers["X-Request-ID"]
    assert len(generated) == 32
    assert post(client, instance, **{"X-Request-ID": "bad id!"}).headers["X-Request-ID"] != "bad id!"
    assert client.get("/nope", headers={"X-Request-ID": "r1"}).headers["X-Request-ID"] == "r1"


def test_health_ready_model(client, metadata) -> None:
    assert client.get("/health").get_json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.get_json()["model_version"] == "1.0.0"
    model = client.get("/model").get_json()
    assert model["features"] == metadata["features"]
    assert model["files"] == metadata["files"]
    assert model["runtime"] == {"small_batches": "tree", "large_batches": "xgboost", "tree_runtime_refused": None}
    assert "path" not in model
    assert not any(isinstance(v, str) and v.startswith("/") for v in model.values())
    # The training profile (ranges, quantiles, class frequencies) is not on the public /model.
    assert "training" in metadata
    assert "training" not in model
    assert "drift_signals" not in model
    assert set(model) == {*PUBLIC_METADATA, "runtime"}
    profile = client.get("/model/profile").get_json()
    assert profile["training"] == metadata["training"]
    assert profile["runtime"] == model["runtime"]


def test_tree_runtime_fallback_is_visible(artifact, monkeypatch) -> None:
    real = TreeRuntime.predict_proba
    monkeypatch.setattr(TreeRuntime, "predict_proba", lambda self, rows: real(self, rows) + 1e-3)
    client = create_app(Settings(model_path=artifact, access_log=False)).test_client()
    runtime = client.get("/model").get_json()["runtime"]
    assert runtime["small_batches"] == "xgboost"
    assert "differs from xgboost" in runtime["tree_runtime_refused"]
    text = client.get("/metrics").get_data(as_text=True)
    assert "model_service_runtime_fallbacks_total 1.0" in text
    assert 'runtime="xgboost"' in text


def test_not_ready_without_model() -> None:
    settings = Settings(access_log=False)
    app = create_app(settings, ServiceState(settings, Metrics()))
    client = app.test_client()
    assert client.get("/health").status_code == 200
    assert_error(client.get("/ready"), 503, "not_ready")
    assert_error(post(client, {"feat1": 1}), 503, "not_ready")


def test_ready_turns_503_while_draining(client) -> None:
    client.application.extensions["model_service"].start_draining()
    assert_error(client.get("/ready"), 503, "draining")
    assert client.get("/health").status_code == 200


def test_metrics_content(client, instance) -> None:
    post(client, instance)
    post(client, {"instances": [instance] * 3})
    post(client, b"{bad")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'model_service_requests_total{method="POST",route="/predict",status="200"} 2.0' in text
    assert 'model_service_requests_total{method="POST",route="/predict",status="400"} 1.0' in text
    assert "model_service_rows_predicted_total 4.0" in text
    assert 'model_service_request_duration_seconds_bucket{le="0.25",route="/predict"}' in text
    assert 'model_service_model_info{name="demo-classifier",runtime="tree",version="1.0.0"} 1.0' in text
    assert "model_service_model_load_failures_total 0.0" in text
    assert "model_service_in_flight_requests" in text


def test_cpu_per_request_is_counted_by_route(client, instance) -> None:
    def cpu(text: str) -> float:
        found = re.search(r'model_service_request_cpu_seconds_total\{route="/predict"\} ([0-9.e+-]+)', text)
        assert found, text
        return float(found.group(1))

    for _ in range(3):  # past the first calls' one-time costs
        post(client, instance)
        post(client, {"instances": [instance] * 50})
    before = cpu(client.get("/metrics").get_data(as_text=True))
    for _ in range(10):
        post(client, instance)
    single = cpu(client.get("/metrics").get_data(as_text=True)) - before
    for _ in range(10):
        assert post(client, {"instances": [instance] * 50}).status_code == 200
    batches = cpu(client.get("/metrics").get_data(as_text=True)) - before - single
    # Ten requests of 50 rows (the test limit) cost more CPU than ten of one row: the counter follows the work.
    assert 0 < single < batches, (single, batches)


def test_methods_a_client_invents_do_not_become_series(client) -> None:
    for i in range(50):
        assert client.open("/predict", method=f"M{i}").status_code == 405
    client.open("/health", method="BREW")
    text = client.get("/metrics").get_data(as_text=True)
    methods = set(re.findall(r'model_service_requests_total\{method="([^"]+)"', text))
    assert "OTHER" in methods
    assert methods <= {"GET", "OTHER"}, methods
    other = re.findall(r'model_service_requests_total\{method="OTHER",[^}]*status="405"\} ([0-9.]+)', text)
    assert sum(map(float, other)) == 51, text


def test_openapi_is_valid_and_matches_routes(client, metadata) -> None:
    document = client.get("/openapi.json").get_json()
    validate(document)
    rules = [rule for rule in client.application.url_map.iter_rules() if rule.endpoint != "static"]
    assert set(document["paths"]) == {openapi_path(rule.rule) for rule in rules}
    for rule in rules:
        documented = set(document["paths"][openapi_path(rule.rule)])
        assert documented == {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
    instance_schema = document["components"]["schemas"]["Instance"]
    assert instance_schema["required"] == metadata["features"]
    assert instance_schema["additionalProperties"] is False
    assert document["paths"]["/predict"]["post"]["responses"].keys() >= {"200", "400", "413", "415", "422", "503"}

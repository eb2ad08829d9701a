"""The Open Inference Protocol (v2) through the official client, tritonclient[http], against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as triton
import xgboost
from conftest import LiveService
from tritonclient.utils import InferenceServerException

MODEL = "demo-classifier"


@pytest.fixture(scope="module")
def server(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    service = LiveService(artifact, tmp_path_factory.mktemp("v2"), max_batch_rows="50")
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def client(server: LiveService) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(f"127.0.0.1:{server.port}")


@pytest.fixture(scope="module")
def rows(artifact: Path) -> np.ndarray:
    import json

    ranges = json.loads((artifact / "metadata.json").read_text())["training"]["feature_ranges"]
    low = np.array([r["min"] for r in ranges.values()], dtype=np.float32)
    high = np.array([r["max"] for r in ranges.values()], dtype=np.float32)
    return (low + np.random.default_rng(3).random((20, low.size), dtype=np.float32) * (high - low)).astype(np.float32)


def xgboost_probabilities(artifact: Path, rows: np.ndarray) -> np.ndarray:
    booster = xgboost.Booster()
    booster.load_model(str(artifact / "model.ubj"))
    return booster.inplace_predict(rows)


def infer(client, rows: np.ndarray, binary: bool, outputs=("probabilities", "predicted_class"), **kwargs):
    tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    asked = [triton.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    return client.infer(MODEL, [tensor], outputs=asked, **kwargs)


def test_health_and_metadata(client, artifact) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, model_version="1.0.0")
    assert not client.is_model_ready("other-model")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata(MODEL)
    assert metadata["versions"] == ["1.0.0"]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 36]}]
    assert {o["name"]: (o["datatype"], o["shape"]) for o in metadata["outputs"]} == {
        "probabilities": ("FP32", [-1, 7]),
        "predicted_class": ("INT64", [-1]),
    }
    assert client.get_model_metadata(MODEL, model_version="1.0.0") == metadata


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_matches_xgboost(client, artifact, rows, binary) -> None:
    result = infer(client, rows, binary, request_id="req-7")
    expected = xgboost_probabilities(artifact, rows)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (20, 7)
    assert np.abs(probabilities - expected).max() < 1e-5
    classes = np.arange(1, 8)[expected.argmax(axis=1)]
    assert result.as_numpy("predicted_class").tolist() == classes.tolist()
    assert result.get_response()["id"] == "req-7"
    assert result.get_response()["model_version"] == "1.0.0"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_single_row_on_a_version_path(client, artifact, rows, binary) -> None:
    one = rows[:1]
    tensor = triton.InferInput("input-0", [1, 36], "FP32")
    tensor.set_data_from_numpy(one, binary_data=binary)
    result = client.infer(MODEL, [tensor], model_version="1.0.0")
    assert result.as_numpy("predicted_class") is None  # probabilities alone unless asked
    assert np.abs(result.as_numpy("probabilities") - xgboost_probabilities(artifact, one)).max() < 1e-5


def test_fp64_input_and_mixed_output_forms(client, artifact, rows) -> None:
    tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows.astype(np.float64), binary_data=True)
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=False),
        triton.InferRequestedOutput("predicted_class", binary_data=True),
    ]
    result = client.infer(MODEL, [tensor], outputs=outputs)
    assert np.abs(result.as_numpy("probabilities") - xgboost_probabilities(artifact, rows)).max() < 1e-5
    assert result.as_numpy("predicted_class").shape == (20,)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_errors_reach_the_client_with_the_reason(client, rows, binary) -> None:
    with pytest.raises(InferenceServerException, match="limit is 50") as too_many:
        infer(client, np.repeat(rows, 3, axis=0), binary)
    assert too_many.value.status() == "413"
    bad = rows.copy()
    bad[2, 5] = np.nan
    # A NaN in binary data is refused as a value; in JSON it is not JSON at all.
    reason, status = ("not finite", "422") if binary else ("NaN and Infinity are not JSON", "400")
    with pytest.raises(InferenceServerException, match=reason) as not_finite:
        infer(client, bad, binary)
    assert not_finite.value.status() == status
    with pytest.raises(InferenceServerException, match="is not served here") as unknown:
        client.infer("other-model", [triton.InferInput("input-0", [1, 36], "FP32")])
    assert unknown.value.status() == "404"
    tensor = triton.InferInput("input-0", [20, 35], "FP32")
    tensor.set_data_from_numpy(rows[:, :35], binary_data=binary)
    with pytest.raises(InferenceServerException, match=r"shape must be \[rows, 36\]"):
        client.infer(MODEL, [tensor])


def test_v2_errors_use_the_protocol_shape_and_are_counted(server, rows) -> None:
    answer = requests.post(f"{server.url}/v2/models/{MODEL}/infer", data=b"{nope", timeout=5)
    assert answer.status_code == 400
    assert set(answer.json()) == {"error"}
    assert requests.get(f"{server.url}/v2/models/{MODEL}/nothing", timeout=5).json().keys() == {"error"}
    body = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 36], "data": rows[0].tolist()}]}
    assert requests.post(f"{server.url}/v2/models/{MODEL}/infer", json=body, timeout=5).status_code == 200
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    route = 'route="/v2/models/<name>/infer"'
    assert f'model_service_requests_total{{method="POST",{route},status="200"}}' in metrics
    assert f'model_service_requests_total{{method="POST",{route},status="400"}}' in metrics
    over = requests.post(f"{server.url}/v2/models/{MODEL}/infer", data=b"{" + b" " * 2_000_000 + b"}", timeout=10)
    assert over.status_code == 413
    assert set(over.json()) == {"error"}


def test_a_request_cannot_make_the_answer_larger_than_its_rows(server, rows) -> None:
    # 646 KB listing one output again and again once made a process build gigabytes and die.
    tensor = {"name": "input-0", "datatype": "FP32", "shape": [20, 36], "data": rows[:20].ravel().tolist()}
    body = {"inputs": [tensor], "outputs": [{"name": "probabilities"}] * 20_000}
    answer = requests.post(f"{server.url}/v2/models/{MODEL}/infer", json=body, timeout=30)
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json() == {"error": "'outputs' names probabilities more than once; ask for each output once"}
    # Each output once: the answer holds the rows' outputs and nothing more.
    body["outputs"] = [{"name": "probabilities"}, {"name": "predicted_class"}]
    answer = requests.post(f"{server.url}/v2/models/{MODEL}/infer", json=body, timeout=30)
    assert answer.status_code == 200
    assert [o["shape"] for o in answer.json()["outputs"]] == [[20, 7], [20]]
    assert len(answer.content) < 20 * (7 + 1) * 40
    assert server.proc.poll() is None

"""The training profile in the artifact and the drift signals the service counts from it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import rewrite_metadata
from model_service.app import create_app
from model_service.artifact import load_model
from model_service.config import Settings
from model_service.drift import DECILES, check_profile, observe_many, psi, training_profile
from model_service.errors import ArtifactError
from prometheus_client import CollectorRegistry, Histogram, generate_latest


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_training_profile_of_known_data() -> None:
    data = np.column_stack([np.arange(101, dtype=np.float32), np.full(101, 7, dtype=np.float32)])
    labels = np.array([0] * 25 + [1] * 75 + [1])
    profile = training_profile(data, labels, ["a", "b"], ["no", "yes"])
    assert profile["feature_ranges"] == {"a": {"min": 0.0, "max": 100.0}, "b": {"min": 7.0, "max": 7.0}}
    assert profile["feature_quantiles"]["a"] == pytest.approx([10 * i for i in range(1, 10)])
    assert profile["feature_quantiles"]["b"] == [7.0] * len(DECILES)
    assert profile["class_frequencies"] == pytest.approx({"no": 25 / 101, "yes": 76 / 101})


def test_trained_artifact_carries_the_profile(metadata) -> None:
    training = metadata["training"]
    assert set(training["feature_quantiles"]) == set(metadata["features"])
    assert sum(training["class_frequencies"].values()) == pytest.approx(1.0)
    check_profile(metadata, "metadata.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t["feature_quantiles"]["feat1"].reverse(), "non-decreasing"),
        (lambda t: t["feature_quantiles"]["feat2"].pop(), "9 finite non-decreasing"),
        (lambda t: t["class_frequencies"].pop("3"), "share of every class"),
        (lambda t: t["class_frequencies"].update({"1": 0.9}), "sum to 1"),
        (lambda t: t["feature_ranges"]["feat3"].update({"min": 1e30}), "min <= max"),
        (lambda t: t["feature_quantiles"]["feat4"].__setitem__(0, -1e30), "outside the feature's range"),
    ],
)
def test_a_wrong_profile_is_refused_and_the_served_model_stays(broken_copy, change, message) -> None:
    def spoil(directory: Path) -> None:
        training = json.loads((directory / "metadata.json").read_text())["training"]
        change(training)
        rewrite_metadata(directory, training=training)

    with pytest.raises(ArtifactError, match=message):
        load_model(broken_copy(spoil))


def test_an_artifact_without_the_profile_loads_with_its_signals_off(broken_copy, instance) -> None:
    def old(directory: Path) -> None:
        training = json.loads((directory / "metadata.json").read_text())["training"]
        del training["feature_quantiles"], training["class_frequencies"]
        rewrite_metadata(directory, training=training)

    client = create_app(Settings(model_path=broken_copy(old), access_log=False)).test_client()
    signals = client.get("/model/profile").get_json()["drift_signals"]
    assert signals["input_ranges"] is True
    assert signals["class_mix"] is False
    assert "class_frequencies" in signals["off_because"]
    assert client.post("/predict", json=instance).status_code == 200
    assert "model_service_training_class_frequency{" not in client.get("/metrics").get_data(as_text=True)


def test_counters_of_a_request_in_and_out_of_range(client, metadata, instance) -> None:
    ranges = metadata["training"]["feature_ranges"]
    labels = {"model": "demo-classifier", "version": "1.0.0"}
    text = client.get("/metrics").get_data(as_text=True)
    assert all(metric(text, "model_service_predictions_total", **labels, **{"class": str(c)}) == 0 for c in range(1, 8))
    assert metric(text, "model_service_training_class_frequency", **labels, **{"class": "4"}) == pytest.approx(
        metadata["training"]["class_frequencies"]["4"]
    )
    odd = {**instance, "feat3": ranges["feat3"]["min"] - 1, "feat5": ranges["feat5"]["max"] + 1}
    answer = client.post("/predict", json={"instances": [instance, odd, odd]}).get_json()
    client.post("/predict", json=instance)
    text = client.get("/metrics").get_data(as_text=True)
    below = metric(text, "model_service_feature_out_of_range_total", **labels, feature="feat3", side="below")
    above = metric(text, "model_service_feature_out_of_range_total", **labels, feature="feat5", side="above")
    assert (below, above) == (2, 2)
    assert metric(text, "model_service_feature_out_of_range_total", **labels, feature="feat3", side="above") == 0
    assert metric(text, "model_service_feature_out_of_range_total", **labels, feature="feat1", side="below") == 0
    predicted = [p["predicted_class"] for p in answer["predictions"]]
    counts = {c: metric(text, "model_service_predictions_total", **labels, **{"class": str(c)}) for c in range(1, 8)}
    assert sum(counts.values()) == 4
    for c in set(predicted):
        assert counts[c] >= predicted.count(c)
    assert metric(text, "model_service_prediction_confidence_count", **labels) == 4
    confidences = [p["confidence"] for p in answer["predictions"]]
    assert metric(text, "model_service_prediction_confidence_sum", **labels) >= sum(confidences)


def test_requests_refused_for_a_missing_feature_are_counted(client, instance) -> None:
    body = dict(instance)
    del body["feat7"]
    assert client.post("/predict", json=body).status_code == 422
    text = client.get("/metrics").get_data(as_text=True)
    labels = {"model": "demo-classifier", "version": "1.0.0"}
    assert metric(text, "model_service_feature_missing_total", **labels, feature="feat7") == 1
    assert metric(text, "model_service_feature_missing_total", **labels, feature="feat8") == 0


def test_observing_a_batch_equals_observing_each_value() -> None:
    values = np.array([0.1, 0.2, 0.25, 0.5, 0.5, 0.99, 1.0, 0.3])
    one, many = CollectorRegistry(), CollectorRegistry()
    buckets = (0.2, 0.3, 0.5, 0.9, 1.0)
    single = Histogram("c", "c", buckets=buckets, registry=one)
    batch = Histogram("c", "c", buckets=buckets, registry=many)
    for value in values:
        single.observe(float(value))
    observe_many(batch, values)

    def samples(registry: CollectorRegistry) -> list[str]:
        return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]

    assert samples(one) == samples(many)


def test_psi_on_known_shares() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = 0.15 * math.log(1.6) + 0.05 * math.log(1.2) - 0.05 * math.log(0.8) - 0.15 * math.log(0.4)
    assert psi([0.25] * 4, [0.4, 0.3, 0.2, 0.1]) == pytest.approx(expected)
    assert psi([0.25] * 4, [0.4, 0.3, 0.2, 0.1]) == pytest.approx(0.2282, abs=1e-4)
    assert math.isfinite(psi([0.5, 0.5], [1.0, 0.0]))  # a class never seen is floored, not infinite

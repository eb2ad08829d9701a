"""Prometheus metrics of the service (prometheus_client).

Several waitress processes on one host share one directory named by PROMETHEUS_MULTIPROC_DIR
(the service sets it from the ``metrics_dir`` setting before this module is imported): every
process writes its samples there and ``/metrics`` of any process answers for all of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# Gauges whose label sets are set to 0 when the model they describe is no longer served (render drops them).
_SERVED_ONLY = ("model_service_model_info", "model_service_training_class_frequency")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The service's metrics, on their own registry so that every app (and test) has a fresh set."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "model_service_requests", "HTTP requests answered.", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "model_service_request_duration_seconds",
            "Time to answer a request, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter("model_service_rows_predicted", "Rows (instances) predicted.", registry=r)
        # CPU per request (with model_service_requests_total): what a release costs in hosts for the same
        # traffic, which latency alone does not show on a lightly loaded host. The canary gate compares it.
        self.cpu = Counter(
            "model_service_request_cpu_seconds",
            "CPU time the threads answering requests spent on them, by route.",
            ["route"],
            registry=r,
        )
        self.in_flight = Gauge(
            "model_service_in_flight_requests", "Requests being answered now.", registry=r, multiprocess_mode="livesum"
        )
        self.model_info = Gauge(
            "model_service_model_info",
            "The model being served (value 1), by name, version and runtime.",
            ["name", "version", "runtime"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.model_loaded = Gauge(
            "model_service_model_loaded_timestamp_seconds",
            "When the model being served was loaded.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "model_service_ready", "1 while the process is ready to serve.", registry=r, multiprocess_mode="liveall"
        )
        self.load_failures = Counter(
            "model_service_model_load_failures", "Artifacts refused at load or reload.", registry=r
        )
        self.reloads = Counter("model_service_model_reloads", "Models swapped in by a hot reload.", registry=r)
        self.runtime_fallbacks = Counter(
            "model_service_runtime_fallbacks",
            "Loads where the fast tree runtime could not serve the model and xgboost serves every batch size.",
            registry=r,
        )
        # Model observability (drift.py): what live inputs and predictions look like against training.
        model = ["model", "version"]
        self.out_of_range = Counter(
            "model_service_feature_out_of_range",
            "Values of a feature outside its training range, by side (below, above).",
            [*model, "feature", "side"],
            registry=r,
        )
        self.missing = Counter(
            "model_service_feature_missing",
            "Requests refused because they lack a feature.",
            [*model, "feature"],
            registry=r,
        )
        self.predictions = Counter(
            "model_service_predictions", "Rows predicted, by predicted class.", [*model, "class"], registry=r
        )
        self.confidence = Histogram(
            "model_service_prediction_confidence",
            "Probability of the predicted class, per row.",
            model,
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.training_frequency = Gauge(
            "model_service_training_class_frequency",
            "Share of each class among the training labels of the model being served.",
            [*model, "class"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self._model_labels: tuple[str, str, str] | None = None

    def set_model(self, name: str, version: str, runtime: str, loaded_at: float) -> None:
        labels = (name, version, runtime)
        previous, self._model_labels = self._model_labels, labels
        if previous is not None and previous != labels:
            # In multiprocess mode a label set once written stays in this process' file: zero it
            # (render() drops zero samples of this gauge) as well as removing it from memory.
            self.model_info.labels(*previous).set(0)
            self.model_info.remove(*previous)
        self.model_info.labels(*labels).set(1)
        self.model_loaded.set(loaded_at)

    def render(self) -> tuple[bytes, str]:
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        registry.register(_ServedModelsOnly(multiprocess.MultiProcessCollector(None, path=directory)))
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _ServedModelsOnly:
    """The multiprocess samples, less the label sets of models that a process no longer serves."""

    def __init__(self, inner: multiprocess.MultiProcessCollector) -> None:
        self._inner = inner

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():
            if family.name in _SERVED_ONLY:
                family.samples = [sample for sample in family.samples if sample.value != 0]
            yield family


def process_exited(pid: int) -> None:
    """Drop the live gauges of a process that has gone (multiprocess mode only)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


def sweep_dead_processes(directory: str) -> list[int]:
    """Drop the live gauges of processes that died without saying so (killed, or failed to start).

    Called by each process at start: otherwise /metrics keeps reporting them, with their model
    versions, until the directory is emptied.
    """
    swept = []
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
            swept.append(pid)
        except PermissionError:
            pass  # alive, another user's
    return sorted(set(swept))

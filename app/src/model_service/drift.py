"""What the model saw in training, and how live traffic compares: the training profile and its signals.

An artifact's ``training`` section holds, per feature, its range (``feature_ranges``) and deciles
(``feature_quantiles``), and the share of each class among the training labels (``class_frequencies``).
While serving, ``DriftSignals`` counts, per feature, the values below and above the training range and,
per class, the predictions, and observes each prediction's confidence: a few vectorised numpy operations
per request, whatever the batch size. Prometheus turns them into out-of-range shares and the population
stability index (PSI) of the predicted-class mix against the training frequencies (rules in the
prometheus role). Artifacts written before the profile existed still load; the signals they cannot feed
are off, and ``/model`` says which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from .errors import ArtifactError

DECILES = tuple(round(0.1 * i, 1) for i in range(1, 10))


def training_profile(data: np.ndarray, labels: np.ndarray, features: Sequence[str], classes: Sequence[Any]) -> dict:
    """``feature_ranges``, ``feature_quantiles`` (deciles) and ``class_frequencies`` of training data.

    ``labels`` are class indices into ``classes``.
    """
    quantiles = np.quantile(data.astype(np.float64), DECILES, axis=0)
    counts = np.bincount(np.asarray(labels, dtype=np.intp), minlength=len(classes))
    return {
        "feature_ranges": {
            name: {"min": float(data[:, i].min()), "max": float(data[:, i].max())} for i, name in enumerate(features)
        },
        "feature_quantiles": {name: [float(q) for q in quantiles[:, i]] for i, name in enumerate(features)},
        "class_frequencies": {str(label): float(counts[i] / counts.sum()) for i, label in enumerate(classes)},
    }


def check_profile(metadata: dict[str, Any], where: str) -> None:
    """Refuse a training profile that is present but wrong (an absent part is allowed: signals off)."""
    check_feature_profile(metadata, where)
    check_class_profile(metadata, where)


def _training(metadata: dict[str, Any], where: str) -> dict[str, Any]:
    training = metadata.get("training", {})
    if not isinstance(training, dict):
        raise ArtifactError(f"{where}: training must be an object")
    return training


def check_feature_profile(metadata: dict[str, Any], where: str) -> None:
    """The ranges and deciles of the features (checked before anything reads them)."""
    training, features = _training(metadata, where), metadata["features"]
    ranges = training.get("feature_ranges")
    if ranges is not None:
        if not isinstance(ranges, dict) or not set(features) <= set(ranges):
            raise ArtifactError(f"{where}: training.feature_ranges must give the range of every feature")
        for name, bounds in ranges.items():
            low, high = (bounds.get("min"), bounds.get("max")) if isinstance(bounds, dict) else (None, None)
            if not (_finite(low) and _finite(high) and low <= high):
                raise ArtifactError(f"{where}: training.feature_ranges.{name} must be finite numbers with min <= max")
    quantiles = training.get("feature_quantiles")
    if quantiles is not None:
        if not isinstance(quantiles, dict) or not set(features) <= set(quantiles):
            raise ArtifactError(f"{where}: training.feature_quantiles must give the deciles of every feature")
        for name, values in quantiles.items():
            if not (
                isinstance(values, list)
                and len(values) == len(DECILES)
                and all(_finite(v) for v in values)
                and all(a <= b for a, b in pairwise(values))
            ):
                raise ArtifactError(
                    f"{where}: training.feature_quantiles.{name} must be {len(DECILES)} finite non-decreasing numbers"
                )
            if (
                ranges is not None
                and name in ranges
                and not (ranges[name]["min"] <= values[0] <= values[-1] <= ranges[name]["max"])
            ):
                raise ArtifactError(f"{where}: training.feature_quantiles.{name} lie outside the feature's range")


def check_class_profile(metadata: dict[str, Any], where: str) -> None:
    """The shares of the classes among the training labels."""
    training, classes = _training(metadata, where), [str(c) for c in metadata["classes"]]
    frequencies = training.get("class_frequencies")
    if frequencies is not None:
        if not isinstance(frequencies, dict) or set(frequencies) != set(classes):
            raise ArtifactError(f"{where}: training.class_frequencies must give the share of every class")
        values = list(frequencies.values())
        if not all(_finite(v) and 0 <= v <= 1 for v in values) or abs(sum(values) - 1) > 1e-6:
            raise ArtifactError(f"{where}: training.class_frequencies must be shares in [0, 1] that sum to 1")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def signals_of(metadata: dict[str, Any]) -> dict[str, Any]:
    """Which drift signals an artifact can feed, for /model."""
    training = metadata.get("training", {})
    missing = [key for key in ("feature_ranges", "class_frequencies") if key not in training]
    return {
        "input_ranges": "feature_ranges" in training,
        "class_mix": "class_frequencies" in training,
        "off_because": f"the artifact has no training.{' or training.'.join(missing)}" if missing else None,
    }


def psi(expected: Sequence[float], actual: Sequence[float], floor: float = 1e-4) -> float:
    """Population stability index of ``actual`` shares against ``expected`` ones (each floored)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    return float(((a - e) * np.log(a / e)).sum())


class DriftSignals:
    """The serving signals of one loaded model, on the service's metrics (children resolved once)."""

    def __init__(self, metrics: Any, metadata: dict[str, Any]) -> None:
        name, version = str(metadata["name"]), str(metadata["version"])
        features, labels = metadata["features"], [str(c) for c in metadata["classes"]]
        training = metadata.get("training", {})
        ranges = training.get("feature_ranges")
        self._ranges = None
        if ranges is not None:
            self._low = np.array([ranges[f]["min"] for f in features], dtype=np.float64)
            self._high = np.array([ranges[f]["max"] for f in features], dtype=np.float64)
            below = metrics.out_of_range
            self._below = [below.labels(model=name, version=version, feature=f, side="below") for f in features]
            self._above = [below.labels(model=name, version=version, feature=f, side="above") for f in features]
            self._ranges = True
        # Every class gets its series at load, so a class never predicted reads 0 rather than nothing.
        self._classes = [metrics.predictions.labels(model=name, version=version, **{"class": c}) for c in labels]
        for child in self._classes:
            child.inc(0)
        self._confidence = metrics.confidence.labels(model=name, version=version)
        self._missing = {f: metrics.missing.labels(model=name, version=version, feature=f) for f in features}
        self._frequencies = []
        frequencies = training.get("class_frequencies")
        if frequencies is not None:
            for label in labels:
                key = {"model": name, "version": version, "class": label}
                metrics.training_frequency.labels(**key).set(frequencies[label])
                self._frequencies.append(key)
        self._metrics = metrics
        self.model = (name, version)

    def retire(self) -> None:
        """This model is no longer served: its training frequencies leave /metrics."""
        for key in self._frequencies:
            self._metrics.training_frequency.labels(**key).set(0)
            self._metrics.training_frequency.remove(*key.values())

    def observe(self, rows: np.ndarray, probabilities: np.ndarray) -> None:
        if self._ranges is not None:
            below, above = rows < self._low, rows > self._high
            if below.any() or above.any():  # rare: only then per-feature work
                self._count_outside(below.sum(axis=0), self._below)
                self._count_outside(above.sum(axis=0), self._above)
        if probabilities.shape[0] == 1:
            row = probabilities[0]
            best = int(row.argmax())
            self._classes[best].inc()
            self._confidence.observe(float(row[best]))
            return
        best = probabilities.argmax(axis=1)
        counts = np.bincount(best, minlength=len(self._classes))
        for i in np.flatnonzero(counts):
            self._classes[i].inc(int(counts[i]))
        observe_many(self._confidence, probabilities[np.arange(best.size), best])

    @staticmethod
    def _count_outside(counts: np.ndarray, children: list[Any]) -> None:
        for i in np.flatnonzero(counts):
            children[i].inc(int(counts[i]))

    def refused_missing(self, names: Sequence[str]) -> None:
        for name in names:
            child = self._missing.get(name)
            if child is not None:
                child.inc()


def observe_many(histogram: Any, values: np.ndarray) -> None:
    """Observe every value in a prometheus_client histogram child with one update per bucket.

    prometheus_client has no batch observe; its child keeps one value per bucket (``_buckets``, counted
    per bucket, not cumulatively) and ``_sum``. Pinned in the service's constraints.
    """
    bounds = np.asarray(histogram._upper_bounds, dtype=np.float64)
    index = np.searchsorted(bounds, values, side="left")
    counts = np.bincount(index, minlength=bounds.size)
    for i in np.flatnonzero(counts):
        histogram._buckets[i].inc(int(counts[i]))
    histogram._sum.inc(float(values.sum()))

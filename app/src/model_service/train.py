"""The demo model: a reproducible 7-class XGBoost classifier over 36 numeric features.

The data is generated (seeded): each class has its own centre in feature space, and the features
have very different scales, like the tabular inputs such services usually see.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import FORMAT_VERSION, MODEL_FILE, write_metadata
from .drift import training_profile

FEATURES = tuple(f"feat{i}" for i in range(1, 37))
CLASSES = tuple(range(1, 8))


@dataclass(frozen=True)
class TrainOptions:
    rows: int = 20_000
    rounds: int = 200
    max_depth: int = 6
    learning_rate: float = 0.1
    seed: int = 42
    name: str = "demo-classifier"
    version: str = "1.0.0"


def make_dataset(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (len(CLASSES), len(FEATURES)))
    scales = np.exp(rng.uniform(0.0, 8.0, len(FEATURES)))
    labels = rng.integers(0, len(CLASSES), rows)
    data = (centres[labels] + rng.normal(0.0, 1.5, (rows, len(FEATURES)))) * scales
    return data.astype(np.float32), labels


def _created_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = time.gmtime(int(epoch)) if epoch else time.gmtime()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)


def train(out: Path, options: TrainOptions, force: bool = False) -> dict[str, Any]:
    """Train and write an artifact directory at ``out``; returns its metadata plus ``training_seconds``."""
    import xgboost  # imported here: it takes seconds, and only a real load needs it

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists and is not empty (use --force to replace it)")
    data, labels = make_dataset(options.rows, options.seed)
    split = int(len(data) * 0.8)
    params = {
        "objective": "multi:softprob",
        "num_class": len(CLASSES),
        "max_depth": options.max_depth,
        "eta": options.learning_rate,
        "tree_method": "hist",
        "seed": options.seed,
        "nthread": 2,
    }
    started = time.monotonic()
    booster = xgboost.train(
        params, xgboost.DMatrix(data[:split], label=labels[:split], feature_names=list(FEATURES)), options.rounds
    )
    seconds = time.monotonic() - started
    predicted = booster.inplace_predict(data[split:]).argmax(axis=1)
    accuracy = float((predicted == labels[split:]).mean())
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".train-", dir=out.parent))
    try:
        booster.save_model(str(staging / MODEL_FILE))
        metadata = {
            "format_version": FORMAT_VERSION,
            "name": options.name,
            "version": options.version,
            "features": list(FEATURES),
            "classes": list(CLASSES),
            "objective": params["objective"],
            "xgboost_version": xgboost.__version__,
            "created_at": _created_at(),
            "training": {
                "rows": options.rows,
                "test_rows": len(data) - split,
                "rounds": options.rounds,
                "max_depth": options.max_depth,
                "learning_rate": options.learning_rate,
                "seed": options.seed,
                "test_accuracy": round(accuracy, 4),
                **training_profile(data[:split], labels[:split], FEATURES, CLASSES),
            },
        }
        write_metadata(staging, metadata)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**metadata, "training_seconds": round(seconds, 2)}

"""Tree runtimes side by side on one model, in one process and one run: which one should serve what.

    python bench/runtimes.py [--model DIR] [--seconds 2]

Compares xgboost's own ``inplace_predict`` (the reference), the service's numpy ``TreeRuntime``, and
treelite's GTIL (``pip install -r bench/requirements.txt``) per row, for 1, 8, 32, 64 and 256 rows
per call, single-threaded, on rows from the model's probe set. Each cell is the median of repeated
timed batches of calls lasting ``--seconds`` in all. Prints a Markdown table and checks every
runtime's answers against xgboost (max |dp|) so that a fast wrong runtime cannot win.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1, 8, 32, 64, 256)


def per_row_microseconds(predict: Callable[[np.ndarray], np.ndarray], rows: np.ndarray, seconds: float) -> float:
    predict(rows)  # warm
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        calls = max(1, int(2000 / rows.shape[0]))
        started = time.perf_counter()
        for _ in range(calls):
            predict(rows)
        samples.append((time.perf_counter() - started) / calls / rows.shape[0] * 1e6)
    return statistics.median(samples)


def runtimes(model_dir: Path) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    import xgboost
    from model_service.runtime import TreeRuntime, XGBoostRuntime

    booster = xgboost.Booster(params={"nthread": 1})
    booster.load_model(str(model_dir / "model.ubj"))
    model_json = json.loads(booster.save_raw("json"))
    found: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "xgboost inplace_predict": XGBoostRuntime(booster, model_json["learner"]["objective"]["name"]).predict_proba,
        "numpy TreeRuntime (service)": TreeRuntime(model_json).predict_proba,
    }
    try:
        import treelite
    except ImportError:
        print("treelite is missing (pip install -r bench/requirements.txt): no GTIL column", file=sys.stderr)
    else:
        tl_model = treelite.frontend.from_xgboost(booster)

        def gtil(rows: np.ndarray) -> np.ndarray:
            return treelite.gtil.predict(tl_model, rows, nthread=1).reshape(rows.shape[0], -1)

        found[f"treelite {treelite.__version__} GTIL"] = gtil
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "build" / "models" / "demo-classifier")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per cell (default: 2)")
    args = parser.parse_args()
    from model_service.artifact import probe_rows, read_metadata

    metadata = read_metadata(args.model)
    probe = probe_rows(metadata, count=max(SIZES), seed=5)
    found = runtimes(args.model)
    reference = found["xgboost inplace_predict"](probe)
    names = list(found)
    print(f"model: {metadata['name']} {metadata['version']} ({args.model}), one thread, µs per row\n")
    print("| rows per call | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for size in SIZES:
        cells = [f"{per_row_microseconds(found[name], probe[:size], args.seconds):,.1f}" for name in names]
        print(f"| {size} | " + " | ".join(cells) + " |")
    worst = {name: float(np.abs(found[name](probe) - reference).max()) for name in names}
    print("| max abs(p - xgboost) | " + " | ".join(f"{worst[name]:.1e}" for name in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

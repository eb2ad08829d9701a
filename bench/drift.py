"""Cost of the drift signals per request: DriftSignals.observe on 1, 64 and 256 rows, in one process.

    python bench/drift.py [--model DIR]

The signals are counted in the request path, so they must stay a small share of a request's CPU. Runs with
metrics in multiprocess mode (files under a temporary directory), as the service runs on a host, and prints
the median µs per call and per row; compare with bench/profile.py's CPU per single-row request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "build" / "bench-model")
    args = parser.parse_args()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="modelfleet-drift-")
    import numpy as np
    from model_service.drift import DriftSignals
    from model_service.metrics import Metrics

    metadata = json.loads((args.model / "metadata.json").read_text())
    signals = DriftSignals(Metrics(), metadata)
    ranges = metadata["training"]["feature_ranges"]
    low = np.array([ranges[f]["min"] for f in metadata["features"]])
    high = np.array([ranges[f]["max"] for f in metadata["features"]])
    rng = np.random.default_rng(5)
    print("| rows per call | values outside the range | µs per call | µs per row |")
    print("|---|---|---|---|")
    for count, spread in ((1, 0.0), (1, 0.05), (64, 0.0), (64, 0.05), (256, 0.05)):
        # With a spread, about a tenth of the values fall outside the training range (counters incremented).
        rows = (low + rng.uniform(-spread, 1 + spread, (count, low.size)) * (high - low)).astype(np.float32)
        probabilities = rng.dirichlet(np.ones(len(metadata["classes"])), count)
        timings = []
        for _ in range(7):
            started = time.perf_counter()
            for _ in range(500):
                signals.observe(rows, probabilities)
            timings.append((time.perf_counter() - started) / 500 * 1e6)
        per_call = statistics.median(timings)
        outside = float(((rows < low) | (rows > high)).mean())
        print(f"| {count} | {outside:.0%} | {per_call:,.1f} | {per_call / count:,.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

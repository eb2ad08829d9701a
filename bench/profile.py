"""Where a request's CPU goes: one service process under single-row load, sampled by py-spy.

    python bench/profile.py [--seconds 10] [--src DIR] [--path /predict|/v2]

Starts one `model-service serve` process on 127.0.0.1 (from --src, e.g. an older checkout's
app/src, to compare), loads it with wrk (16 connections) for the given time while py-spy samples
it, and prints the share of the process' busy samples by part of the request (the innermost frame
that belongs to a known part wins). Needs wrk and py-spy (bench/requirements.txt).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, WRK_SCRIPT, wait_ready, wrk

# (part, pattern on "function (file)") from the most to the least specific; the first part found
# walking a stack from its innermost frame is charged with the sample.
PARTS = [
    ("predict (tree runtime / xgboost)", r"model_service/(runtime|artifact)\.py|xgboost/"),
    ("drift signals (counting inputs and classes)", r"model_service/drift\.py"),
    ("metrics", r"prometheus_client/|model_service/metrics\.py"),
    ("access log", r"logging/|model_service/logs\.py"),
    ("parse JSON", r"^parse_json "),
    ("validate + build the float32 rows", r"model_service/(validation|v2|contract)\.py"),
    ("route, build and serialise the answer", r"model_service/(wsgi|app)\.py"),
    ("Flask / werkzeug", r"flask/|werkzeug/"),
    ("waitress (HTTP, threads)", r"waitress/"),
]


def classify(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for part, pattern in PARTS:
            if re.search(pattern, frame.strip()):
                return part
    return "other (interpreter, imports, threading)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--src", type=Path, default=ROOT / "app" / "src", help="model_service source to run")
    parser.add_argument("--model", type=Path, default=ROOT / "build" / "bench-model")
    parser.add_argument("--path", default="/predict", choices=["/predict", "/v2"], help="the route to load")
    parser.add_argument("--port", type=int, default=18131)
    parser.add_argument("--rows", type=int, default=1, help="rows per request (default: 1)")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw stacks in this file")
    args = parser.parse_args()
    for tool in ("wrk", "py-spy"):
        if shutil.which(tool) is None and not (Path(sys.executable).parent / tool).exists():
            raise SystemExit(f"{tool} is not installed (apt-get install -y wrk; pip install -r bench/requirements.txt)")
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    metadata = json.loads((args.model / "metadata.json").read_text())
    ranges = metadata["training"]["feature_ranges"]
    values = [round((r["min"] + r["max"]) / 2, 3) for r in ranges.values()]
    tmp = Path(tempfile.mkdtemp(prefix="modelfleet-profile-"))
    if args.path == "/predict":
        instance = dict(zip(ranges, values, strict=True))
        body, url_path = instance if args.rows == 1 else {"instances": [instance] * args.rows}, "/predict"
    else:
        shape = [args.rows, len(values)]
        body = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": shape, "data": values * args.rows}]}
        url_path = f"/v2/models/{metadata['name']}/infer"
    (tmp / "body.json").write_text(json.dumps(body))
    (tmp / "load.lua").write_text(
        WRK_SCRIPT.format(headers='wrk.headers["Content-Type"] = "application/json"', body=tmp / "body.json")
    )
    env = {**os.environ, "PYTHONPATH": str(args.src), "MODEL_SERVICE_METRICS_DIR": str(tmp / "metrics")}
    cmd = [sys.executable, "-m", "model_service", "serve", "--model", str(args.model), "--port", str(args.port)]
    service = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{args.port}/ready")
        url = f"http://127.0.0.1:{args.port}{url_path}"
        wrk(url, tmp / "load.lua", 16, 2)  # warm-up
        raw = tmp / "profile.txt"
        duration = [str(args.seconds), "--nonblocking"]
        spy = subprocess.Popen(
            [
                pyspy,
                "record",
                "-p",
                str(service.pid),
                "-f",
                "raw",
                "-o",
                str(raw),
                "-r",
                "250",
                "--gil",
                "-d",
                *duration,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        rps, _, p99, errors = wrk(url, tmp / "load.lua", 16, args.seconds)
        spy.wait(args.seconds + 60)
        if args.raw is not None:
            shutil.copyfile(raw, args.raw)
        samples: collections.Counter[str] = collections.Counter()
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            samples[classify(stack)] += int(count)
    finally:
        service.terminate()
        service.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    total = sum(samples.values())
    print(
        f"\n{url_path}, {args.rows} row(s), 1 process, wrk c=16 for {args.seconds}s: {rps:,.0f} req/s, p99 {p99:.1f} ms"
    )
    print(f"busy samples: {total}; CPU per request ≈ {total / 250 / (rps * args.seconds) * 1e6:,.0f} µs (1 core)\n")
    print("| part of the request | share of busy samples | µs per request |")
    print("|---|---|---|")
    for part, count in samples.most_common():
        per_request = count / 250 / (rps * args.seconds) * 1e6
        print(f"| {part} | {count / total:.1%} | {per_request:,.0f} |")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Serving benchmark: the model service, the HTTP ceiling and MLServer side by side, in one run.

    python bench/run.py [--seconds 8] [--model DIR] [--mlserver PATH|none]

Everything listens on 127.0.0.1 only; every load run is wrk with a fixed duration. Targets:
- ceiling: a bare waitress app returning fixed JSON (what HTTP alone costs here);
- the service's /predict, its Open Inference Protocol /v2/.../infer in JSON, and in the binary tensor
  data extension (batches only);
- MLServer 1.7 with its XGBoost runtime serving the same model.ubj (one process, parallel_workers 0;
  install with `make bench`, which puts it in its own venv).
Each is measured direct on one process and, for the ceiling and the service, as two processes behind
Nginx. Loads: single rows at 16 and 64 connections, 64-row batches and 256-row binary batches at 16.
Prints one Markdown table with req/s (rows/s), p50/p99 and the ratios to the same-run ceiling and to
MLServer. Before any load, each target's answer for the probe rows is checked against xgboost.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CEILING_PORTS, SERVICE_PORTS = (18101, 18102), (18111, 18112)
NGINX_PORTS = {"ceiling": 18190, "service": 18191}
MLSERVER_PORTS = (18121, 18122, 18123)  # http, grpc, metrics
MODEL_NAME = "demo-classifier"

NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  client_max_body_size 2m;
  client_body_buffer_size 2m;
{upstreams}
}}
"""
UPSTREAM = """
  upstream {name} {{
{servers}
    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://{name};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
    }}
  }}
"""
WRK_SCRIPT = """
wrk.method = "POST"
{headers}
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
"""


@dataclass(frozen=True)
class Load:
    name: str
    rows: int
    connections: int


LOADS = (
    Load("1 row, c=16", 1, 16),
    Load("1 row, c=64", 1, 64),
    Load("64-row batches, c=16", 64, 16),
    Load("256-row batches, c=16", 256, 16),
)
# Which loads each kind of target gets: the ceiling's fixed answer means nothing for batches, and the
# binary form is what large batches are for.
LOADS_OF = {"ceiling": (1,), "predict": (1, 64), "v2": (1, 64), "mlserver": (1, 64), "binary": (64, 256)}


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # ceiling | predict | v2 | binary | mlserver
    url: str


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout}s")


def parse_wrk(text: str) -> Result:
    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return Result(rps, p50, p99, errors + (int(non2xx.group(1)) if non2xx else 0))


def wrk(url: str, script: Path, connections: int, seconds: int) -> tuple[float, float, float, int]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    result = parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout)
    return result.rps, result.p50_ms, result.p99_ms, result.errors


def bodies(features: list[str], rows: list[list[float]]) -> dict[tuple[str, int], tuple[bytes, dict[str, str]]]:
    """(form, rows) -> (body, headers) for every form of request the loads send."""
    js = {"Content-Type": "application/json"}
    out: dict[tuple[str, int], tuple[bytes, dict[str, str]]] = {}
    for count in (1, 64, 256):
        chosen = [rows[i % len(rows)] for i in range(count)]
        instances = [dict(zip(features, row, strict=True)) for row in chosen]
        out[("predict", count)] = (json.dumps(instances[0] if count == 1 else {"instances": instances}).encode(), js)
        tensor = {"name": "input-0", "datatype": "FP32", "shape": [count, len(features)]}
        flat = [value for row in chosen for value in row]
        out[("v2", count)] = (json.dumps({"inputs": [{**tensor, "data": flat}]}).encode(), js)
        head = json.dumps(
            {
                "inputs": [{**tensor, "parameters": {"binary_data_size": 4 * len(flat)}}],
                "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
            }
        ).encode()
        raw = struct.pack(f"<{len(flat)}f", *flat)
        out[("binary", count)] = (head + raw, {"Inference-Header-Content-Length": str(len(head))})
    return out


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read(), dict(response.headers)


def probabilities_of(kind: str, answer: bytes, headers: dict[str, str], count: int) -> list[list[float]]:
    if kind == "predict":
        body = json.loads(answer)
        predictions = body.get("predictions", [body])
        return [list(p["probabilities"].values()) for p in predictions]
    if kind == "binary":
        length = int(headers["Inference-Header-Content-Length"])
        values = struct.unpack(f"<{(len(answer) - length) // 4}f", answer[length:])
    else:
        values = json.loads(answer)["outputs"][0]["data"]
    width = len(values) // count
    return [list(values[i * width : (i + 1) * width]) for i in range(count)]


def check_answers(target: Target, requests: dict, expected: list[list[float]]) -> float:
    """Largest |p - xgboost| over the probe rows (64-row request), in this target's form."""
    form = "binary" if target.kind == "binary" else ("predict" if target.kind == "predict" else "v2")
    body, headers = requests[(form, 64)]
    answer, answer_headers = post(target.url, body, headers)
    got = probabilities_of(form, answer, answer_headers, 64)
    return max(
        abs(a - b) for row_a, row_b in zip(got, expected, strict=True) for a, b in zip(row_a, row_b, strict=True)
    )


def start_mlserver(mlserver: Path, model: Path, tmp: Path) -> subprocess.Popen:
    models = tmp / "mlserver"
    (models / MODEL_NAME).mkdir(parents=True)
    shutil.copyfile(model / "model.ubj", models / MODEL_NAME / "model.ubj")
    settings = {
        "host": "127.0.0.1",
        "http_port": MLSERVER_PORTS[0],
        "grpc_port": MLSERVER_PORTS[1],
        "metrics_port": MLSERVER_PORTS[2],
        "parallel_workers": 0,  # its worker pool fails to start here; one process, like the others' one
        "debug": False,
    }
    (models / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_xgboost.XGBoostModel",
        "parameters": {"uri": "./model.ubj", "version": "1.0.0"},
    }
    (models / MODEL_NAME / "model-settings.json").write_text(json.dumps(model_settings))
    log = (tmp / "mlserver.log").open("wb")
    return subprocess.Popen([str(mlserver), "start", str(models)], stdout=log, stderr=subprocess.STDOUT, cwd=models)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="duration of each load run (default: 8)")
    parser.add_argument(
        "--model", type=Path, default=ROOT / "build" / "bench-model", help="artifact (trained if missing)"
    )
    parser.add_argument("--threads", type=int, default=4, help="waitress threads per process (default: 4)")
    parser.add_argument(
        "--mlserver",
        default=str(ROOT / "build" / "bench-venv" / "bin" / "mlserver"),
        help="the mlserver command, or 'none' to leave MLServer out",
    )
    parser.add_argument("--png", type=Path, help="also draw the comparison to this PNG")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install -y wrk nginx")
    mlserver = None if args.mlserver == "none" else Path(args.mlserver).absolute()
    if mlserver is not None and not mlserver.exists():
        raise SystemExit(f"{mlserver} is missing: run `make bench`, or pass --mlserver none")
    python = sys.executable
    if not (args.model / "metadata.json").exists():
        subprocess.run([python, "-m", "model_service", "train", "--out", str(args.model)], check=True)
    metadata = json.loads((args.model / "metadata.json").read_text())
    features = metadata["features"]
    import numpy as np
    import xgboost

    ranges = metadata["training"]["feature_ranges"]
    rng = np.random.default_rng(11)
    low = np.array([ranges[f]["min"] for f in features])
    high = np.array([ranges[f]["max"] for f in features])
    probe = np.round(low + rng.random((64, len(features))) * (high - low), 3).astype(np.float32)
    booster = xgboost.Booster()
    booster.load_model(str(args.model / "model.ubj"))
    expected = booster.inplace_predict(probe).tolist()
    requests = bodies(features, probe.tolist())

    tmp = Path(tempfile.mkdtemp(prefix="modelfleet-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        scripts = {}
        for (form, count), (body, headers) in requests.items():
            (tmp / f"{form}-{count}.body").write_bytes(body)
            lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
            scripts[(form, count)] = tmp / f"{form}-{count}.lua"
            scripts[(form, count)].write_text(WRK_SCRIPT.format(headers=lines, body=tmp / f"{form}-{count}.body"))
        (tmp / "ceiling.body").write_bytes(requests[("predict", 1)][0])
        env = {**os.environ, "MODEL_SERVICE_METRICS_DIR": str(tmp / "metrics")}
        for port in CEILING_PORTS:
            procs.append(subprocess.Popen([python, str(ROOT / "bench" / "ceiling.py"), str(port)]))
        for port in SERVICE_PORTS:
            cmd = [python, "-m", "model_service", "serve", "--model", str(args.model), "--port", str(port)]
            procs.append(subprocess.Popen([*cmd, "--threads", str(args.threads)], env=env, stdout=subprocess.DEVNULL))
        if mlserver is not None:
            procs.append(start_mlserver(mlserver, args.model, tmp))
        for port in CEILING_PORTS:
            wait_ready(f"http://127.0.0.1:{port}/")
        for port in SERVICE_PORTS:
            wait_ready(f"http://127.0.0.1:{port}/ready")
        if mlserver is not None:
            wait_ready(f"http://127.0.0.1:{MLSERVER_PORTS[0]}/v2/models/{MODEL_NAME}/ready")
        upstreams = []
        for kind, ports in (("ceiling", CEILING_PORTS), ("service", SERVICE_PORTS)):
            servers = "\n".join(f"    server 127.0.0.1:{p};" for p in ports)
            upstreams.append(UPSTREAM.format(name=kind, servers=servers, port=NGINX_PORTS[kind]))
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, upstreams="".join(upstreams)))
        subprocess.run(["nginx", "-c", str(tmp / "nginx.conf"), "-t", "-q"], check=True)
        subprocess.run(["nginx", "-c", str(tmp / "nginx.conf")], check=True)
        time.sleep(0.5)

        infer = f"/v2/models/{MODEL_NAME}/infer"
        direct, behind = f"127.0.0.1:{SERVICE_PORTS[0]}", f"127.0.0.1:{NGINX_PORTS['service']}"
        targets = [
            Target("ceiling, 1 process", "ceiling", f"http://127.0.0.1:{CEILING_PORTS[0]}/predict"),
            Target("ceiling, nginx + 2 processes", "ceiling", f"http://127.0.0.1:{NGINX_PORTS['ceiling']}/predict"),
            Target("service /predict, 1 process", "predict", f"http://{direct}/predict"),
            Target("service /predict, nginx + 2 processes", "predict", f"http://{behind}/predict"),
            Target("service v2 JSON, 1 process", "v2", f"http://{direct}{infer}"),
            Target("service v2 JSON, nginx + 2 processes", "v2", f"http://{behind}{infer}"),
            Target("service v2 binary, 1 process", "binary", f"http://{direct}{infer}"),
            Target("service v2 binary, nginx + 2 processes", "binary", f"http://{behind}{infer}"),
        ]
        if mlserver is not None:
            targets.append(
                Target("MLServer 1.7 v2 JSON, 1 process", "mlserver", f"http://127.0.0.1:{MLSERVER_PORTS[0]}{infer}")
            )
        accuracy = {t.name: check_answers(t, requests, expected) for t in targets if t.kind != "ceiling"}
        results: dict[tuple[str, str], Result] = {}
        for target in targets:
            form = {"ceiling": "predict", "mlserver": "v2"}.get(target.kind, target.kind)
            for load in LOADS:
                if load.rows not in LOADS_OF[target.kind]:
                    continue
                script = scripts[(form, load.rows)]
                wrk(target.url, script, load.connections, 2)  # warm-up
                results[(target.name, load.name)] = Result(*wrk(target.url, script, load.connections, args.seconds))
        print_table(targets, results, accuracy, args.seconds)
        if args.png is not None:
            draw(targets, results, args.png)
    finally:
        pid = tmp / "nginx.pid"
        if pid.exists():
            os.kill(int(pid.read_text()), signal.SIGQUIT)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def print_table(targets: list[Target], results: dict, accuracy: dict[str, float], seconds: int) -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    print(f"\n{os.cpu_count()} cores ({cpu}); wrk -t2, {seconds} s per cell; every number is from this one run\n")
    print("| target | load | req/s | rows/s | p50 ms | p99 ms | errors | vs ceiling | vs MLServer | max abs Δp |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ceiling_of = {True: "ceiling, nginx + 2 processes", False: "ceiling, 1 process"}
    mlserver = next((t.name for t in targets if t.kind == "mlserver"), None)
    for target in targets:
        for load in LOADS:
            result = results.get((target.name, load.name))
            if result is None:
                continue
            ceiling = results.get((ceiling_of["nginx" in target.name], load.name))
            vs_ceiling = f"{result.rps / ceiling.rps:.2f}" if ceiling and target.kind != "ceiling" else ""
            peer = results.get((mlserver, load.name)) if mlserver else None
            same_shape = "1 process" in target.name and target.kind in ("predict", "v2", "binary")
            vs_peer = f"{result.rps / peer.rps:.2f}x" if peer and same_shape else ""
            error = f"{accuracy[target.name]:.1e}" if target.name in accuracy else ""
            print(
                f"| {target.name} | {load.name} | {result.rps:,.0f} | {result.rps * load.rows:,.0f} | "
                f"{result.p50_ms:.1f} | {result.p99_ms:.1f} | {result.errors} | {vs_ceiling} | {vs_peer} | {error} |"
            )


def draw(targets: list[Target], results: dict, path: Path) -> None:
    """Two panels: single rows (req/s at c=16, p99 on the bar) and batches (rows/s), one bar per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("1 row, c=16", "req/s, single rows, 16 connections", 1),
        ("64-row batches, c=16", "rows/s, 64-row batches", 64),
    )
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, (load, title, rows) in zip(axes, panels, strict=True):
        shown = [(t, results[(t.name, load)]) for t in targets if (t.name, load) in results]
        names = [t.name.replace(", ", "\n", 1) for t, _ in shown]
        values = [r.rps * rows for _, r in shown]
        colours = [
            "#9e9e9e" if t.kind == "ceiling" else "#e07b39" if t.kind == "mlserver" else "#2f6db5" for t, _ in shown
        ]
        bars = ax.barh(names, values, color=colours)
        for bar, (_, result) in zip(bars, shown, strict=True):
            ax.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {bar.get_width():,.0f}  p99 {result.p99_ms:.0f} ms",
                va="center",
                fontsize=8,
            )
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlim(0, max(values) * 1.45)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle("modelfleet model service vs the HTTP ceiling and MLServer 1.7 (same machine, same run)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())

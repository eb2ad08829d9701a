"""Serving benchmark: the model service side by side with the HTTP ceiling, in one run.

    python bench/run.py [--seconds 8] [--model DIR]

Everything listens on 127.0.0.1 only; every load run is wrk with a fixed duration. For each setup
(ceiling = a bare waitress app returning fixed JSON; service = model-service with the demo model;
direct or behind Nginx; one or two waitress processes) it prints req/s and p50/p99 at 16 and 64
connections for single rows, and rows/s for 64-row batches, with the ratio to the same-run ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORTS = {"ceiling": (18101, 18102), "service": (18111, 18112)}
NGINX_PORT = {"ceiling": 18190, "service": 18191}

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
  client_max_body_size 1m;
  client_body_buffer_size 1m;
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
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
"""


@dataclass
class Result:
    label: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    rows_per_request: int = 1


def wait_ready(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout}s")


def parse_wrk(text: str) -> tuple[float, float, float, int]:
    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return rps, p50, p99, errors + (int(non2xx.group(1)) if non2xx else 0)


def wrk(url: str, script: Path, connections: int, seconds: int) -> tuple[float, float, float, int]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    return parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="duration of each load run (default: 8)")
    parser.add_argument(
        "--model", type=Path, default=ROOT / "build" / "bench-model", help="artifact (trained if missing)"
    )
    parser.add_argument("--threads", type=int, default=4, help="waitress threads per process (default: 4)")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install -y wrk nginx")
    python = sys.executable
    if not (args.model / "metadata.json").exists():
        subprocess.run([python, "-m", "model_service", "train", "--out", str(args.model)], check=True)
    metadata = json.loads((args.model / "metadata.json").read_text())
    ranges = metadata["training"]["feature_ranges"]
    instance = {name: round((r["min"] + r["max"]) / 2, 3) for name, r in ranges.items()}

    tmp = Path(tempfile.mkdtemp(prefix="modelfleet-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        scripts = {}
        for name, body in (("single", instance), ("batch", {"instances": [instance] * 64})):
            (tmp / f"{name}.json").write_text(json.dumps(body))
            scripts[name] = tmp / f"{name}.lua"
            scripts[name].write_text(WRK_SCRIPT.format(body=tmp / f"{name}.json"))
        env = {**os.environ, "MODEL_SERVICE_ACCESS_LOG": "false", "MODEL_SERVICE_METRICS_DIR": str(tmp / "metrics")}
        for port in PORTS["ceiling"]:
            procs.append(subprocess.Popen([python, str(ROOT / "bench" / "ceiling.py"), str(port)]))
        for port in PORTS["service"]:
            cmd = [python, "-m", "model_service", "serve", "--model", str(args.model), "--port", str(port)]
            procs.append(subprocess.Popen([*cmd, "--threads", str(args.threads)], env=env, stdout=subprocess.DEVNULL))
        for kind, ports in PORTS.items():
            for port in ports:
                wait_ready(f"http://127.0.0.1:{port}/ready" if kind == "service" else f"http://127.0.0.1:{port}/")
        upstreams = []
        for kind in ("ceiling", "service"):
            for count in (1, 2):
                servers = "\n".join(f"    server 127.0.0.1:{p};" for p in PORTS[kind][:count])
                port = NGINX_PORT[kind] + (count - 1) * 10
                upstreams.append(UPSTREAM.format(name=f"{kind}{count}", servers=servers, port=port))
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, upstreams="".join(upstreams)))
        subprocess.run(["nginx", "-c", str(tmp / "nginx.conf"), "-t", "-q"], check=True)
        subprocess.run(["nginx", "-c", str(tmp / "nginx.conf")], check=True)
        time.sleep(0.5)

        setups = [
            ("direct, 1 process", lambda kind: f"http://127.0.0.1:{PORTS[kind][0]}/predict"),
            ("nginx, 1 process", lambda kind: f"http://127.0.0.1:{NGINX_PORT[kind]}/predict"),
            ("nginx, 2 processes", lambda kind: f"http://127.0.0.1:{NGINX_PORT[kind] + 10}/predict"),
        ]
        results: dict[tuple[str, str, int, str], Result] = {}
        for setup, url_of in setups:
            for kind in ("ceiling", "service"):
                wrk(url_of(kind), scripts["single"], 16, 2)  # warm-up
                for connections in (16, 64):
                    rps, p50, p99, errors = wrk(url_of(kind), scripts["single"], connections, args.seconds)
                    results[(setup, kind, connections, "single")] = Result(setup, connections, rps, p50, p99, errors)
                rps, p50, p99, errors = wrk(url_of(kind), scripts["batch"], 16, args.seconds)
                results[(setup, kind, 16, "batch")] = Result(setup, 16, rps, p50, p99, errors, 64)
        print_table(results, setups)
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


def print_table(results: dict, setups: list) -> None:
    print(f"\n{os.cpu_count()} cores; wrk -t2; every number is from this one run\n")
    print("| setup | load | ceiling req/s | service req/s | ratio | service p50 ms | service p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for setup, _ in setups:
        for connections, shape in ((16, "single"), (64, "single"), (16, "batch")):
            ceiling = results[(setup, "ceiling", connections, shape)]
            service = results[(setup, "service", connections, shape)]
            if shape == "batch":
                load = "64-row batches, c=16 (rows/s)"
                c_val, s_val = ceiling.rps * 64, service.rps * 64
            else:
                load = f"1 row, c={connections}"
                c_val, s_val = ceiling.rps, service.rps
            print(
                f"| {setup} | {load} | {c_val:,.0f} | {s_val:,.0f} | {s_val / c_val:.2f} | "
                f"{service.p50_ms:.1f} | {service.p99_ms:.1f} | {service.errors} |"
            )


if __name__ == "__main__":
    sys.exit(main())

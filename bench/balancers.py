"""Balancer changes under load: nginx reloaded against HAProxy changed through its runtime API, in one run.

    python bench/balancers.py [--changes 20] [--rate 60] [--png bench/results/balancers.png]

One container of the project's base image runs three upstreams (bench/upstream.py) and both balancers
in front of them: nginx on port 8081, whose server list is rewritten and reloaded at each change (what the
local fleet's balancer did before), and HAProxy on port 80, whose servers are set at runtime by the
project's module modelfleet.fleet.haproxy_pool (what it does now). Both take the same load at the same
time (bench/load.py inside the container: half from clients that keep their connections alive, half from
clients that open one per request) and the same ``--changes`` changes of their server set (a host in,
a host drained and out), one every two seconds. Prints the requests and failures per balancer and kind of
client; ``--png`` draws them. Everything stays inside the container; it is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTAINER = "modelfleet-bench-balancers"
IMAGE = os.environ.get("MODELFLEET_BASE_IMAGE", "modelfleet/debian-systemd:bookworm")
PORTS = (8101, 8102, 8103)
# Each change is a server set: (servers in service, servers drained out).
PLANS = [((8101, 8102, 8103), ()), ((8102, 8103), (8101,)), ((8101, 8102, 8103), ()), ((8101, 8103), (8102,))]

NGINX_CONF = """
worker_processes 2;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_timeout 75s;
    upstream app {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 8081;
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503;
            proxy_pass http://app;
        }}
    }}
}}
"""

HAPROXY_CFG = """
global
    stats socket /run/haproxy/admin.sock mode 600 level admin
    server-state-file /var/lib/haproxy/server-state
defaults
    mode http
    option http-keep-alive
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 75s
    load-server-state-from-file global
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response 503
frontend api
    bind :80
    default_backend app
backend app
    balance roundrobin
    option httpchk GET /
    default-server check inter 1s fall 2 rise 2
{servers}
"""

LOAD = """
import json, os, sys, threading, time
sys.path.insert(0, "/usr/local/lib")
from load import run_load
stop = threading.Event()
def watch():
    while not os.path.exists("/tmp/stop"):
        time.sleep(0.2)
    stop.set()
threading.Thread(target=watch, daemon=True).start()
r = run_load(sys.argv[1], {"x": 1.0}, rate=float(sys.argv[2]), seconds=600, stop=stop, clients="both")
print(json.dumps({"clients": r.by_client(), "failures": r.failures, "seconds": r.seconds}))
"""


def sh(*args: str, check: bool = True) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)[:200]} failed: {done.stderr[-2000:]}")
    return done.stdout


def dexec(script: str, check: bool = True) -> str:
    return sh("docker", "exec", CONTAINER, "bash", "-c", script, check=check)


def set_up() -> None:
    sh("docker", "rm", "-f", CONTAINER, check=False)
    sh(
        "docker", "run", "-d", "--name", CONTAINER, "--tmpfs", "/run", "--tmpfs", "/run/lock",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro", IMAGE, "/lib/systemd/systemd",
    )  # fmt: skip
    time.sleep(3)
    dexec(
        "apt-get update -qq >/dev/null 2>&1; "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy >/dev/null"
    )
    sh("docker", "cp", str(ROOT / "bench" / "upstream.py"), f"{CONTAINER}:/usr/local/bin/upstream")
    sh("docker", "cp", str(ROOT / "bench" / "load.py"), f"{CONTAINER}:/usr/local/lib/load.py")
    for port in PORTS:
        dexec(f"systemd-run --unit upstream-{port} python3 /usr/local/bin/upstream {port}")
    dexec("rm -f /etc/nginx/sites-enabled/default; systemctl stop nginx")  # Debian's default site holds port 80
    servers = "\n".join(f"    server s{p} 127.0.0.1:{p} disabled" for p in PORTS)
    dexec(f"cat > /etc/haproxy/haproxy.cfg <<'EOF'\n{HAPROXY_CFG.format(servers=servers)}\nEOF")
    dexec(
        "mkdir -p /etc/systemd/system/haproxy.service.d; printf '[Service]\\nBindReadOnlyPaths=\\n' > "
        "/etc/systemd/system/haproxy.service.d/bench.conf; touch /var/lib/haproxy/server-state; "
        "systemctl daemon-reload; systemctl reset-failed haproxy || true; systemctl restart haproxy "
        "|| { journalctl -u haproxy -n 20 --no-pager >&2; exit 1; }"
    )
    nginx_change(PLANS[0])
    dexec("rm -f /etc/nginx/sites-enabled/default; systemctl restart nginx")
    haproxy_change(PLANS[0])


def nginx_change(plan: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in plan[0])
    dexec(
        f"cat > /etc/nginx/nginx.conf <<'EOF'\n{NGINX_CONF.format(servers=servers)}\nEOF\n"
        "nginx -s reload 2>/dev/null || true"
    )


def haproxy_change(plan: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    args = {
        "servers": json.dumps({f"127.0.0.1:{p}": 100 for p in plan[0]}),
        "drain": ",".join(f"127.0.0.1:{p}" for p in plan[1]),
        "wait_drained": "true",
        "wait_up": "true",
    }
    params = " ".join(f"{k}='{v}'" for k, v in args.items())
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections")}
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "all", "-i", f"{CONTAINER},", "-c", "community.docker.docker",
         "-m", "modelfleet.fleet.haproxy_pool", "-a", params],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-2000:])


def run(changes: int, rate: float) -> dict[str, dict]:
    dexec("rm -f /tmp/stop")
    loads = {
        name: subprocess.Popen(
            ["docker", "exec", "-i", CONTAINER, "python3", "-c", LOAD, url, str(rate)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, url in (("nginx, reloaded", "http://127.0.0.1:8081"), ("HAProxy, runtime API", "http://127.0.0.1:80"))
    }
    time.sleep(3)
    for change in range(1, changes + 1):
        plan = PLANS[change % len(PLANS)]
        nginx_change(plan)
        haproxy_change(plan)
        time.sleep(2)
    time.sleep(3)
    dexec("touch /tmp/stop")
    return {name: json.loads(process.communicate(timeout=120)[0]) for name, process in loads.items()}


def draw(results: dict[str, dict], changes: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ["keep-alive", "new connection"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.38
    for i, kind in enumerate(kinds):
        failed = [results[name]["clients"][kind][1] for name in results]
        xs = [j + (i - 0.5) * width for j in range(len(results))]
        bars = ax.bar(xs, failed, width, label=f"clients: {kind}")
        for x, bar, name in zip(xs, bars, results, strict=True):
            total = results[name]["clients"][kind][0]
            ax.annotate(
                f"{bar.get_height():.0f} / {total}", (x, bar.get_height()), ha="center", va="bottom", fontsize=8
            )
    ax.set_xticks(range(len(results)), list(results))
    ax.set_ylabel("failed requests")
    ax.set_title(f"Failed requests across {changes} balancer changes (same load, same run)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=20, help="server set changes (default 20, at most 200)")
    parser.add_argument("--rate", type=float, default=60, help="requests per second per balancer (at most 400)")
    parser.add_argument("--png", type=Path, help="draw the failures here")
    args = parser.parse_args(argv)
    if not 1 <= args.changes <= 200 or not 0 < args.rate <= 400:
        parser.error("a run is bounded: 1-200 changes, at most 400 requests per second")
    try:
        set_up()
        results = run(args.changes, args.rate)
    finally:
        sh("docker", "rm", "-f", CONTAINER, check=False)
    print(f"| balancer ({args.changes} changes, {args.rate:g} req/s) | kind of client | requests | failed |")
    print("|---|---|---|---|")
    for name, result in results.items():
        for kind, (total, failed) in result["clients"].items():
            print(f"| {name} | {kind} | {total} | {failed} |")
    if args.png:
        draw(results, args.changes, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())

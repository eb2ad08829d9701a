"""Throughput of the local fleet through its balancer against one host on its own, in one run.

    python bench/fleet.py [--seconds 10] [--concurrency 16]

Needs a running local fleet whose per-client limits do not cap the load (the limits are what one
client may take; this measures capacity):

    ansible-playbook -i inventories/local playbooks/release.yml -e model_service_release=bench \\
      -e nginx_rate_limit_rps=100000 -e nginx_rate_limit_burst=100000 -e nginx_limit_conn_per_client=10000

Both loads run the same closed-loop generator (bench/load.py) inside a container against that
container's own loopback: in the balancer's container against the balancer (which spreads over every
host), and in one app host's container against that host's nginx. Nothing leaves the fleet's network.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SNIPPET = """
import json, sys
sys.path.insert(0, "/root")
from load import run_load
instance = json.loads(sys.argv[1])
result = run_load("http://127.0.0.1:80", instance, rate=0, concurrency=int(sys.argv[2]), seconds=float(sys.argv[3]))
print(json.dumps({"total": result.total, "failed": result.failures, "seconds": result.seconds,
                  "p50": result.percentile(0.5), "p99": result.percentile(0.99)}))
"""


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def measure(container: str, instance: dict[str, float], concurrency: int, seconds: float) -> dict[str, object]:
    docker("cp", str(ROOT / "load.py"), f"{container}:/root/load.py")
    out = docker("exec", container, "python3", "-c", SNIPPET, json.dumps(instance), str(concurrency), str(seconds))
    return json.loads(out.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from load import instance_from

    instance = instance_from(ROOT.parent / "build" / "models" / "demo-classifier")
    hosts = docker("ps", "--filter", "label=modelfleet.role=app", "--format", "{{.Names}}").split()
    if not hosts:
        parser.error("no local fleet is running (make site)")
    rows = [
        (f"balancer, {len(hosts)} hosts", measure("modelfleet-lb", instance, args.concurrency, args.seconds)),
        ("one host, direct", measure(sorted(hosts)[0], instance, args.concurrency, args.seconds)),
    ]
    print(f"closed loop, {args.concurrency} connections, {args.seconds:.0f} s each, single-row /predict\n")
    print("| target | req/s | p50 ms | p99 ms | failed |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        rate = r["total"] / r["seconds"]
        print(f"| {name} | {rate:,.0f} | {r['p50'] * 1000:.1f} | {r['p99'] * 1000:.1f} | {r['failed'] or 0} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

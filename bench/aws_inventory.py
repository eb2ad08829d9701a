"""The aws_ec2 inventory over many instances, against an AWS API emulator on loopback.

    python bench/aws_inventory.py [--instances 1000] [--port 5077]

Starts moto server on 127.0.0.1, launches the instances with boto3 (tagged as the project's app and
monitoring hosts of prod, in two AZs, plus as many of another project that the inventory must leave
out), then times `ansible-inventory -i inventories/prod --list`: cold (--flush-cache) and with the cache
warm. Prints one table; nothing here talks to another address.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def launch(ec2: object, count: int, tags: dict[str, str], subnet: str) -> None:
    """Launch `count` instances in batches of 100 (RunInstances' limit here)."""
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    while count > 0:
        batch = min(count, 100)
        ec2.run_instances(  # type: ignore[attr-defined]
            ImageId="ami-03c3da4cfa8e8943a",
            InstanceType="t3.small",
            MinCount=batch,
            MaxCount=batch,
            SubnetId=subnet,
            TagSpecifications=spec,
        )
        count -= batch


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return time.monotonic() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--port", type=int, default=5077)
    opts = parser.parse_args()
    endpoint = f"http://127.0.0.1:{opts.port}"
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", opts.port)) == 0:
            sys.exit(f"something already listens on {endpoint}")
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(opts.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", opts.port)) == 0:
                    break
            time.sleep(0.1)
        creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint, **creds)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i * 16}.0/20", AvailabilityZone=f"us-east-1{az}")["Subnet"][
                "SubnetId"
            ]
            for i, az in enumerate("ab")
        ]
        started = time.monotonic()
        app = {"Project": "modelfleet", "Environment": "prod", "Role": "app", "Release": "1.0.0-0123abcd"}
        half = opts.instances // 2
        launch(ec2, half, app, subnets[0])
        launch(ec2, opts.instances - half - 1, app, subnets[1])
        launch(ec2, 1, {**app, "Role": "monitoring", "Release": ""}, subnets[0])
        launch(ec2, opts.instances, {"Project": "someone-else", "Environment": "prod", "Role": "app"}, subnets[1])
        created = time.monotonic() - started

        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_ENDPOINT_URL=endpoint,
            # The monitoring host's group_vars hold the example vault.
            ANSIBLE_VAULT_PASSWORD_FILE=str(ROOT / "molecule" / "shared" / "example-vault-password"),
            ANSIBLE_INVENTORY_CACHE_CONNECTION=tempfile.mkdtemp(prefix="modelfleet-inventory-"),
        )
        inventory = [str(BIN / "ansible-inventory"), "-i", "inventories/prod", "--list"]
        cold, out = timed([*inventory, "--flush-cache"], env)
        warm = [timed(inventory, env)[0] for _ in range(3)]
        export = min(timed([*inventory, "--export"], env)[0] for _ in range(3))
        graph = min(timed([*inventory[:-1], "--graph", "app"], env)[0] for _ in range(3))
        adhoc = [str(BIN / "ansible"), "-i", "inventories/prod", "monitoring", "--list-hosts"]
        listing = min(timed(adhoc, env)[0] for _ in range(3))
        groups = json.loads(out)
        app_hosts, monitoring = len(groups["app"]["hosts"]), len(groups["monitoring"]["hosts"])
        print(f"{opts.instances} instances of the project, {opts.instances} of another; created in {created:.0f} s")
        print("| inventory run | seconds | app hosts | monitoring hosts |")
        print("| --- | --- | --- | --- |")
        print(f"| cold (--flush-cache) | {cold:.1f} | {app_hosts} | {monitoring} |")
        print(f"| cache warm (best of 3) | {min(warm):.1f} | | |")
        print(f"| cache warm, --list --export | {export:.1f} | | |")
        print(f"| cache warm, --graph app | {graph:.1f} | | |")
        print(f"| cache warm, ansible monitoring --list-hosts | {listing:.1f} | | |")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()

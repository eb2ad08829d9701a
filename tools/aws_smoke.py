#!/usr/bin/env python3
"""A guarded smoke run of the AWS provider in a real account: what a first real deployment does, once.

    make aws-smoke ARGS="-e modelfleet_aws_smoke_confirm=<account id> [-e modelfleet_environment=staging]"
    python tools/aws_smoke.py -e modelfleet_aws_smoke_confirm=<account id> [--inventory inventories/staging]
                              [--plan] [--sweep]

It refuses unless ``modelfleet_aws_smoke_confirm`` names the account the credentials belong to (read with
STS before anything else). It prints the estimated cost first, then runs: the model's upload, site.yml,
site.yml again (which must change nothing), a release under light load (4 requests/s: single rows and
batches above 8 KB, every request counted; one canary step of 25 % and a 1-minute soak, judged on that
load), rollback.yml, the teardown twice (the second must find nothing), and a sweep for anything that still
carries the environment's tags. It tears down also when a step fails. ``--plan`` prints the estimate and the
steps and stops; ``--sweep`` runs only the sweep. Every other ``-e`` is passed to each playbook. The region
is the inventory's (``modelfleet_aws_region``).

The estimate uses on-demand list prices of us-east-1 (``PRICES``); other regions cost a little more.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIRM = "modelfleet_aws_smoke_confirm"
# USD, us-east-1 on-demand list prices (per hour unless named otherwise).
PRICES = {
    "nat_gateway": 0.045,
    "alb": 0.0225,
    "alb_lcu": 0.008,
    "t3.small": 0.0208,
    "t3.medium": 0.0416,
    "t3.large": 0.0832,
    "public_ipv4": 0.005,
    "gp3_gb_month": 0.08,
    "waf_acl_month": 5.0,
    "waf_rule_month": 1.0,
    "alarm_month": 0.10,
}
HOURS_PER_MONTH = 730
# Bake, site twice, release, rollback, teardown twice: about an hour and a half, billed as 2 hours (AWS bills
# NAT gateways, load balancers and public addresses by started hour).
SMOKE_HOURS = 2
WAF_RULES = 3  # the common rule set, known bad inputs, the rate rule
RATE = 4.0  # requests per second on the load balancer during the release
# The smoke run's own traffic is all the canary sees: one step of 25 % judged over 2 minutes (about 120
# canary requests at RATE), then a 1-minute soak; the gate still rolls back on too few requests.
SMOKE_GATE = json.dumps(
    {
        "modelfleet_canary_steps": [25],
        "modelfleet_canary_window": 120,
        "modelfleet_canary_max_wait": 300,
        "modelfleet_canary_min_requests": 50,
        "modelfleet_canary_soak": 60,
    }
)
ALARMS_PER_RELEASE = 4


def parse_extra(args: list[str]) -> dict[str, str]:
    """The ``-e key=value`` pairs (``-e`` given separately); JSON or YAML values are kept as text."""
    extra: dict[str, str] = {}
    for item in args:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"aws-smoke: -e takes key=value (got {item!r})")
        extra[key.strip()] = value.strip()
    return extra


def refusal(confirm: str, account: str) -> str | None:
    """Why the smoke run may not start (None: it may)."""
    if not confirm:
        return (
            f"Nothing was done. The smoke run builds and deletes a whole stack in account {account} and costs "
            f"money: run it again with -e {CONFIRM}={account} to confirm that account."
        )
    if confirm != account:
        return (
            f"Nothing was done. {CONFIRM} is {confirm} but the credentials are account {account}: "
            "check AWS_PROFILE (or the credentials) and the account you meant."
        )
    return None


def estimate(settings: dict[str, Any]) -> dict[str, float]:
    """The smoke run's cost and a month's cost of the stack left running (USD), from the inventory's settings."""
    instance = str(settings.get("modelfleet_aws_instance_type", "t3.small"))
    monitoring = str(settings.get("modelfleet_aws_monitoring_instance_type", instance))
    app_hosts = int(settings.get("modelfleet_aws_desired_capacity", 2))
    nats = 1 if settings.get("modelfleet_aws_nat", "per_az") == "single" else 2
    price = PRICES.get(instance, PRICES["t3.large"])
    hourly = (
        nats * (PRICES["nat_gateway"] + PRICES["public_ipv4"])
        + PRICES["alb"]
        + PRICES["alb_lcu"]
        + 2 * PRICES["public_ipv4"]  # the load balancer's addresses in two AZs
        + app_hosts * price
        + PRICES.get(monitoring, PRICES["t3.large"])
        + (app_hosts * 8 + 30) * PRICES["gp3_gb_month"] / HOURS_PER_MONTH
        + (PRICES["waf_acl_month"] + WAF_RULES * PRICES["waf_rule_month"]) / HOURS_PER_MONTH
        + ALARMS_PER_RELEASE * PRICES["alarm_month"] / HOURS_PER_MONTH
    )
    # During the run a builder and a second release's hosts run for part of the time.
    extra = (1 + app_hosts) * price * 0.5
    return {"run": round(hourly * SMOKE_HOURS + extra, 2), "month": round(hourly * HOURS_PER_MONTH, 0)}


def steps(inventory: str, extra: list[str]) -> list[tuple[str, list[str]]]:
    """The playbook runs of a smoke run, in order: (name, ansible-playbook arguments)."""
    environment = Path(inventory).name

    def play(path: str, *more: str) -> list[str]:
        return ["-i", inventory, path, *extra, *more]

    teardown = play("playbooks/teardown.yml", "-e", f"modelfleet_teardown_confirm={environment}")
    return [
        ("upload the model", play("playbooks/upload_model.yml")),
        ("site", play("site.yml")),
        ("site again (changes nothing)", play("site.yml")),
        ("release under load", play("playbooks/release.yml", "-e", "model_service_release=smoke", "-e", SMOKE_GATE)),
        ("rollback", play("playbooks/rollback.yml")),
        ("teardown", [*teardown, "-e", "modelfleet_teardown_artifacts=true"]),
        ("teardown again (finds nothing)", [*teardown, "-e", "modelfleet_teardown_artifacts=true"]),
    ]


def recap_changed(output: str) -> int:
    """The ``changed`` count of localhost in a playbook's recap (0 when there is no recap)."""
    found = re.search(r"^localhost\s+:.*?changed=(\d+)", output, re.MULTILINE)
    return int(found.group(1)) if found else 0


def leftovers(clients: dict[str, Any], tags: dict[str, str], name: str) -> list[str]:
    """Everything that still carries the environment's tags (or its name), one line each."""
    tagged = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    alive = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    ec2, elb, iam = clients["ec2"], clients["elbv2"], clients["iam"]
    instances = [i for r in ec2.describe_instances(Filters=[*tagged, *alive])["Reservations"] for i in r["Instances"]]
    nats = ec2.describe_nat_gateways(Filter=tagged)["NatGateways"]
    groups = clients["autoscaling"].describe_auto_scaling_groups()["AutoScalingGroups"]
    logs = clients["logs"].describe_log_groups(logGroupNamePrefix=f"/{name}")["logGroups"]
    logs += clients["logs"].describe_log_groups(logGroupNamePrefix=f"aws-waf-logs-{name}")["logGroups"]
    found: list[tuple[str, list[str]]] = [
        ("instance", [i["InstanceId"] for i in instances]),
        ("vpc", [v["VpcId"] for v in ec2.describe_vpcs(Filters=tagged)["Vpcs"]]),
        ("subnet", [x["SubnetId"] for x in ec2.describe_subnets(Filters=tagged)["Subnets"]]),
        ("security group", [g["GroupId"] for g in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]]),
        (
            "address",
            [a.get("AllocationId", a.get("PublicIp", "")) for a in ec2.describe_addresses(Filters=tagged)["Addresses"]],
        ),
        ("volume", [v["VolumeId"] for v in ec2.describe_volumes(Filters=tagged)["Volumes"]]),
        ("image", [i["ImageId"] for i in ec2.describe_images(Owners=["self"], Filters=tagged)["Images"]]),
        ("snapshot", [x["SnapshotId"] for x in ec2.describe_snapshots(OwnerIds=["self"], Filters=tagged)["Snapshots"]]),
        ("NAT gateway", [n["NatGatewayId"] for n in nats if n["State"] not in ("deleted", "deleting")]),
        ("load balancer", [b["LoadBalancerName"] for b in elb.describe_load_balancers()["LoadBalancers"]]),
        ("target group", [g["TargetGroupName"] for g in elb.describe_target_groups()["TargetGroups"]]),
        ("auto scaling group", [g["AutoScalingGroupName"] for g in groups]),
        ("role", [r["RoleName"] for r in iam.list_roles()["Roles"]]),
        ("log group", [g["logGroupName"] for g in logs]),
        ("web ACL", [a["Name"] for a in clients["wafv2"].list_web_acls(Scope="REGIONAL")["WebACLs"]]),
    ]
    # What AWS does not filter by tag is kept by the project's names: NAME itself, NAME-* or /NAME...
    ours = re.compile(rf"^(/|aws-waf-logs-)?{re.escape(name)}($|[-/])")
    by_name = {"load balancer", "target group", "auto scaling group", "role", "log group", "web ACL"}
    return [f"{kind} {i}" for kind, ids in found for i in ids if kind not in by_name or ours.match(i)]


@dataclass
class Traffic:
    """Light load on the load balancer during the release: every answer counted by kind."""

    url: str
    outcomes: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, row: dict[str, float], seconds: float = 3600, rate: float = RATE) -> None:
        scheme, _, rest = self.url.partition("://")
        host = rest.split("/", 1)[0]
        single = json.dumps(row).encode()
        batch = json.dumps({"instances": [row] * 150}).encode()  # above the 8 KB WAF body inspection
        kept = self._connect(scheme, host)
        deadline = time.monotonic() + seconds
        sent = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            body = batch if sent % 10 == 9 else single
            conn = kept if sent % 2 == 0 else self._connect(scheme, host)
            try:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                self.outcomes["ok" if response.status == 200 else f"http {response.status}"] += 1
            except (OSError, http.client.HTTPException) as error:
                self.outcomes[type(error).__name__] += 1
                kept = self._connect(scheme, host)
            if conn is not kept:
                conn.close()
            sent += 1
            time.sleep(1 / rate)

    @staticmethod
    def _connect(scheme: str, host: str) -> http.client.HTTPConnection:
        if scheme == "https":
            # The load balancer's own DNS name is not on the certificate: a smoke run checks serving, not TLS.
            return http.client.HTTPSConnection(host, timeout=30, context=ssl._create_unverified_context())
        return http.client.HTTPConnection(host, timeout=30)


def settings_of(inventory: str, extra: dict[str, str]) -> dict[str, Any]:
    """The inventory's plain settings (environment.yml over aws.yml), then the -e ones."""
    settings: dict[str, Any] = {}
    for name in ("aws.yml", "environment.yml"):
        path = Path(inventory) / "group_vars" / "all" / name
        if path.exists():
            loaded = yaml.safe_load(path.read_text()) or {}
            settings.update({k: v for k, v in loaded.items() if not (isinstance(v, str) and "{{" in v)})
    return {**settings, **extra}


def clients_for(region: str) -> dict[str, Any]:
    import boto3

    endpoint = os.environ.get("MODELFLEET_AWS_ENDPOINT") or None
    session = boto3.session.Session(region_name=region)
    services = ("sts", "ec2", "elbv2", "autoscaling", "iam", "logs", "wafv2")
    return {s: session.client(s, endpoint_url=endpoint) for s in services}


def playbook(args: list[str]) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "ansible-playbook"), *args]
    result = subprocess.run(command, cwd=ROOT, text=True, capture_output=True, check=False)
    sys.stdout.write(result.stdout[-4000:])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-e", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--inventory", default="inventories/prod")
    parser.add_argument("--plan", action="store_true", help="print the estimate and the steps, change nothing")
    parser.add_argument("--sweep", action="store_true", help="only look for what carries the environment's tags")
    args = parser.parse_args(argv)
    extra = parse_extra(args.extra)
    settings = settings_of(args.inventory, extra)
    environment = str(settings.get("modelfleet_environment", Path(args.inventory).name))
    region = str(settings.get("modelfleet_aws_region", "us-east-1"))
    name = f"modelfleet-{environment}"
    tags = {"Project": "modelfleet", "Environment": environment}
    clients = clients_for(region)
    account = clients["sts"].get_caller_identity()["Account"]
    if not args.sweep:
        refused = refusal(extra.get(CONFIRM, ""), account)
        if refused:
            print(f"aws-smoke: {refused}")
            return 2
    if args.sweep:
        left = leftovers(clients, tags, name)
        print(f"aws-smoke: sweep of {name} in account {account}, {region}: " + ("; ".join(left) or "nothing left"))
        return 1 if left else 0
    cost = estimate(settings)
    print(
        f"aws-smoke: {name} in account {account}, {region}. Estimated cost: about ${cost['run']:.2f} for this run "
        f"({SMOKE_HOURS} billed hours), about ${cost['month']:.0f} a month if the stack were left running."
    )
    passthrough = [item for pair in (("-e", e) for e in args.extra if not e.startswith(f"{CONFIRM}=")) for item in pair]
    plan = steps(args.inventory, passthrough)
    for number, (step, step_args) in enumerate(plan, 1):
        print(f"  {number}. {step}: ansible-playbook {' '.join(step_args)}")
    if args.plan:
        return 0
    scheme = "https" if str(settings.get("modelfleet_aws_https", "false")).lower() == "true" else "http"
    return run(plan, clients, tags, name, scheme)


def run(
    plan: list[tuple[str, list[str]]], clients: dict[str, Any], tags: dict[str, str], name: str, scheme: str
) -> int:
    findings: list[str] = []
    failed = False
    torn_down = False
    try:
        for step, step_args in plan:
            started = time.monotonic()
            traffic: Traffic | None = None
            thread: threading.Thread | None = None
            if step == "release under load":
                [balancer] = clients["elbv2"].describe_load_balancers(Names=[name])["LoadBalancers"]
                traffic = Traffic(f"{scheme}://{balancer['DNSName']}")
                row = json.loads((ROOT / "build" / "models" / "demo-classifier" / "metadata.json").read_text())
                instance = dict.fromkeys(row.get("features", []), 0.0)
                thread = threading.Thread(target=traffic.run, args=(instance,), daemon=True)
                thread.start()
            result = playbook(step_args)
            if traffic is not None and thread is not None:
                traffic.stop.set()
                thread.join(60)
                findings.append(f"{step}: requests {dict(traffic.outcomes)}")
                failed |= set(traffic.outcomes) != {"ok"}
            findings.append(f"{step}: exit {result.returncode} in {time.monotonic() - started:.0f} s")
            failed |= result.returncode != 0
            torn_down |= step.startswith("teardown")
            if step == "site again (changes nothing)" and recap_changed(result.stdout):
                findings.append(f"{step}: changed={recap_changed(result.stdout)}, expected 0")
                failed = True
            if result.returncode != 0 and not step.startswith("teardown"):
                break
    finally:
        if not torn_down:
            teardown = next(step_args for step, step_args in plan if step == "teardown")
            findings.append(f"teardown after a failed step: exit {playbook(teardown).returncode}")
        left = leftovers(clients, tags, name)
        findings.append("left behind: " + ("; ".join(left) or "nothing"))
    print("aws-smoke: " + "\n  ".join(["what it found:", *findings]))
    return 1 if failed or left else 0


if __name__ == "__main__":
    sys.exit(main())

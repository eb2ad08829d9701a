"""The AWS provider end to end against an AWS API emulator (moto server, made stricter by
tools/strict_moto.py) on this machine's loopback.

site.yml -i inventories/prod bakes the release's AMI (the builder's host side is a local container, as
moto runs no instance) and builds the stack; every resource is checked with boto3 describe calls (not
with what the modules returned); a second run changes nothing; a bake whose smoke test fails leaves
nothing; releases go blue/green with a canary judged by a real Prometheus (promoted, rolled back,
interrupted and re-run), rollback.yml goes back to the release before; the aws_ec2 inventory groups the
instances by their tags, HTTPS with a certificate redirects HTTP, and the teardown leaves nothing of the
project. Fake credentials; nothing can reach AWS itself.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "plugins" / "filter"))
from aws import is_loopback_url  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_metrics import Behaviour, live_metrics  # noqa: E402

ENDPOINT = os.environ.get("MODELFLEET_AWS_TEST_ENDPOINT", "http://127.0.0.1:5055")
REGION = "us-east-1"
NAME = "modelfleet-prod"
BUCKET = "modelfleet-prod-artifacts"
TAGS = {"Project": "modelfleet", "Environment": "prod"}
WORK = ROOT / "build" / "aws-test"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SEQUENCE = True  # each test starts from the state the one before left (molecule/conftest.py)


def aws_env(endpoint: str = ENDPOINT) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {
        **env,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": ENDPOINT,
        "MODELFLEET_AWS_ENDPOINT": endpoint,
        # The emulator's inventory cache, apart from a real account's (as tools/aws-emulator.sh env sets it).
        "ANSIBLE_INVENTORY_CACHE_CONNECTION": str(INVENTORY_CACHE),
        "ANSIBLE_NOCOLOR": "1",
    }


def run(tool: str, *args: str, check: bool = True, endpoint: str = ENDPOINT) -> subprocess.CompletedProcess[str]:
    if tool == "ansible-playbook":
        # Its own build cache (other tests may build other apps under 1.0.0 meanwhile), and a deregistration
        # delay of 1 s for every target group (prod's 30 s only made a release wait that long for the old
        # group's targets to drain: the emulator drains them for the group's delay, as AWS does).
        args = (
            *args,
            *("-e", f"model_service_wheelhouse_cache={WORK / 'wheelhouse'}"),
            *("-e", json.dumps({"modelfleet_aws_deregistration_delay": 1})),
        )
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / tool), *args],
        cwd=ROOT,
        env=aws_env(endpoint),
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    WORK.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9]+", "-", " ".join(args))[:80]
    log = f"{result.stdout}{result.stderr}\n# {time.monotonic() - started:.1f} s\n"
    (WORK / f"{time.strftime('%H%M%S')}-{name}.log").write_text(log)
    if check:
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    return result


def playbook(*args: str, check: bool = True, endpoint: str = ENDPOINT) -> subprocess.CompletedProcess[str]:
    return run("ansible-playbook", "-i", "inventories/prod", *args, check=check, endpoint=endpoint)


def recap(result: subprocess.CompletedProcess[str], host: str = "localhost") -> dict[str, int]:
    line = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", result.stdout, re.MULTILINE)
    assert line, result.stdout[-2000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.group(1))}


def client(service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=ENDPOINT,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def project_filters() -> list[dict[str, Any]]:
    return [{"Name": f"tag:{k}", "Values": [v]} for k, v in TAGS.items()]


PROMETHEUS = ROOT / ".cache" / "prometheus-tools" / "bin" / "prometheus"
INVENTORY_CACHE = ROOT / ".cache" / "inventory-emulated"
OTHER_MODEL = WORK / "other-model"


def forwards() -> dict[str, int]:
    """Target group name -> weight, where the load balancer's listener forwards."""
    elb = client("elbv2")
    [lb] = elb.describe_load_balancers(Names=[NAME])["LoadBalancers"]
    for listener in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]:
        action = listener["DefaultActions"][0]
        if action["Type"] == "forward":
            groups = action["ForwardConfig"]["TargetGroups"]
            arns = [g["TargetGroupArn"] for g in groups]
            names = {
                t["TargetGroupArn"]: t["TargetGroupName"]
                for t in elb.describe_target_groups(TargetGroupArns=arns)["TargetGroups"]
            }
            return {names[g["TargetGroupArn"]]: g.get("Weight", 1) for g in groups}
    return {}


def releases() -> dict[str, dict[str, str]]:
    """The release fleets that exist: ASG name -> its tags (Release, Image)."""
    groups = client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return {g["AutoScalingGroupName"]: tags_of(g) for g in groups if tags_of(g).get("Role") == "app"}


def release_resources() -> set[str]:
    """Names of every release's launch template and target group, with the Auto Scaling Groups'."""
    templates = client("ec2").describe_launch_templates()["LaunchTemplates"]
    groups = client("elbv2").describe_target_groups()["TargetGroups"]
    return {t["LaunchTemplateName"] for t in templates} | {g["TargetGroupName"] for g in groups} | set(releases())


def app_amis() -> list[dict[str, Any]]:
    return client("ec2").describe_images(
        Owners=["self"], Filters=[*project_filters(), {"Name": "tag:Role", "Values": ["app"]}]
    )["Images"]


def builder_leftovers() -> list[str]:
    """Anything of a builder that exists: instance, key pair, security group, the container for it."""
    ec2 = client("ec2")
    alive = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    builder = [{"Name": "tag:Role", "Values": ["builder"]}, *project_filters()]
    found = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=[*alive, *builder])["Reservations"]
        for i in r["Instances"]
    ]
    found += [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"] == f"{NAME}-builder"]
    found += [g["GroupName"] for g in ec2.describe_security_groups(Filters=builder)["SecurityGroups"]]
    containers = subprocess.run(
        ["docker", "ps", "-a", "--filter", "label=modelfleet.emulated-role=builder", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return found + containers


def release_records() -> list[dict[str, Any]]:
    s3 = client("s3")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="releases/").get("Contents", []))
    return [json.loads(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()) for k in keys]


class ForwardWatch:
    """Samples where the listener forwards, twice a second, while a playbook runs: the release's timeline."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a listener being modified reads again next time
                self.samples.append((time.monotonic() - started, forwards()))
            self._stop.wait(0.5)

    def __enter__(self) -> ForwardWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def states(self) -> list[dict[str, int]]:
        """The distinct states in the order they came."""
        seen: list[dict[str, int]] = []
        for _, state in self.samples:
            if not seen or state != seen[-1]:
                seen.append(state)
        return seen

    def draw(self, path: Path, title: str, names: dict[str, str]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 2.6))
        times = [t for t, _ in self.samples]
        for name, label in names.items():
            ax.step(times, [state.get(name, 0) for _, state in self.samples], where="post", label=label, lw=2)
        ax.set_ylim(-5, 105)
        ax.set_ylabel("% of requests")
        ax.set_xlabel("seconds since the playbook started")
        ax.set_title(title, fontsize=10)
        ax.legend(loc="center left", fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def release_shares() -> dict[str, float]:
    """Release label -> its share of the listener's requests, as the load balancer splits them now."""
    weights = forwards()
    total = sum(weights.values()) or 1
    return {tags["Release"]: weights.get(name, 0) / total for name, tags in releases().items()}


@pytest.fixture(scope="module")
def metrics() -> Iterator[tuple[str, Behaviour]]:
    with live_metrics(PROMETHEUS, ENDPOINT, REGION, WORK / "prometheus", release_shares) as found:
        yield found


def canary_args(url: str, steps: tuple[int, ...] = (10,), soak: int = 0) -> list[str]:
    settings = {
        "modelfleet_canary_soak": soak,  # production holds the last step 600 s
        "modelfleet_canary_host": "localhost",
        "modelfleet_canary_prometheus_url": url,
        "modelfleet_canary_window": 8,
        "modelfleet_canary_min_requests": 20,
        "modelfleet_canary_max_wait": 30,
        "modelfleet_canary_steps": list(steps),
        "modelfleet_aws_deregistration_delay": 1,
    }
    return ["-e", json.dumps(settings)]


@pytest.fixture(scope="module", autouse=True)
def emulator() -> Iterator[None]:
    assert is_loopback_url(ENDPOINT), f"{ENDPOINT} is not on loopback: the test only talks to a local emulator"
    port = int(ENDPOINT.rsplit(":", 1)[1])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"something already listens on {ENDPOINT}"
    WORK.mkdir(parents=True, exist_ok=True)
    log = (WORK / "moto.log").open("w")
    # moto's server through the project's launcher (tools/strict_moto.py): a target group on no listener has
    # unused targets and a new load balancer provisions a few seconds, as on AWS.
    strict = [str(BIN / "python"), str(ROOT / "tools" / "strict_moto.py")]
    # A deleted load balancer's interfaces outlive it by longer than the rest of the teardown takes, so the
    # teardown has to wait for them before it deletes the network (AWS: minutes).
    # New targets pass their first health checks in 3 s (a release's wait reads them until they do).
    env = {
        **os.environ,
        "MODELFLEET_EMULATOR_ENI_LINGER_SECONDS": "75",
        "MODELFLEET_EMULATOR_INITIAL_HEALTH_SECONDS": "3",
        # A requested certificate stays PENDING_VALIDATION for the whole test (moto's own setting).
        "MOTO_ACM_VALIDATION_WAIT": "3600",
    }
    server = subprocess.Popen([*strict, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, env=env)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("moto server did not start")
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def test_preflight_refuses_unsafe_settings_before_any_call() -> None:
    result = playbook(
        "site.yml",
        "-e",
        json.dumps({"modelfleet_aws_https": True, "modelfleet_aws_admin_cidrs": ["0.0.0.0/0"]}),
        check=False,
    )
    assert result.returncode != 0
    assert "HTTPS is asked for (modelfleet_aws_https) but no certificate ARN is given" in result.stdout
    assert "open to the world" in result.stdout
    assert client("ec2").describe_vpcs(Filters=project_filters())["Vpcs"] == []

    # A canary whose steps do not rise below 100 % is refused before any call.
    result = playbook("site.yml", "-e", json.dumps({"modelfleet_canary_steps": [50, 10]}), check=False)
    assert result.returncode != 0
    assert "modelfleet_canary_steps must rise, each step above 0 and below 100 %" in result.stdout
    assert client("ec2").describe_vpcs(Filters=project_filters())["Vpcs"] == []
    for first in (0.5, 50):  # below a whole weight, or half the traffic at once
        result = playbook("site.yml", "-e", json.dumps({"modelfleet_canary_steps": [first, 75]}), check=False)
        assert result.returncode != 0
        assert f"The canary's first step (modelfleet_canary_steps) is {first} % of the" in result.stdout, result.stdout[
            -2000:
        ]
        assert client("ec2").describe_vpcs(Filters=project_filters())["Vpcs"] == []

    # An endpoint that is not this machine's loopback is refused (and never called).
    result = playbook("site.yml", check=False, endpoint="http://192.0.2.10:5000")
    assert result.returncode != 0
    assert "is not on this machine's loopback" in result.stdout
    assert client("ec2").describe_vpcs(Filters=project_filters())["Vpcs"] == []


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    return run("python", "tools/aws_smoke.py", "--inventory", "inventories/prod", *args, check=False)


def test_smoke_run_needs_the_account_named_and_shows_its_cost_first() -> None:
    # Without the confirmation, or naming another account: refused before anything is built.
    for confirm in ((), ("-e", "modelfleet_aws_smoke_confirm=210987654321")):
        refused = smoke(*confirm)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stdout.startswith("aws-smoke: Nothing was done."), refused.stdout
        assert "123456789012" in refused.stdout
    # Named: the estimate comes before any step; --plan stops there.
    plan = smoke("-e", "modelfleet_aws_smoke_confirm=123456789012", "--plan")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert re.search(r"Estimated cost: about \$\d+\.\d\d for this run .* about \$1[3-8]\d a month", plan.stdout), (
        plan.stdout
    )
    assert (
        "7. teardown again (finds nothing): ansible-playbook -i inventories/prod playbooks/teardown.yml" in plan.stdout
    )
    assert client("ec2").describe_vpcs(Filters=project_filters())["Vpcs"] == []


def test_a_bucket_name_another_account_holds_is_refused_before_anything() -> None:
    # Bucket names are global: another account (an assumed role's, in the emulator) holds this one.
    creds = client("sts").assume_role(RoleArn="arn:aws:iam::111111111111:role/other", RoleSessionName="other")
    keys = creds["Credentials"]
    other = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=ENDPOINT,
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys["SessionToken"],
    )
    other.create_bucket(Bucket="someone-elses-models")
    refused = playbook(
        "playbooks/upload_model.yml", "-e", "modelfleet_artifact_bucket=someone-elses-models", check=False
    )
    assert refused.returncode != 0
    assert "the bucket name someone-elses-models belongs to another AWS account" in refused.stdout, refused.stdout[
        -2000:
    ]
    assert "Nothing was created" in refused.stdout
    assert [b["Name"] for b in client("s3").list_buckets()["Buckets"]] == [], "this account made no bucket"


def test_upload_model_puts_the_artifact_with_its_checksum() -> None:
    playbook("playbooks/upload_model.yml")
    s3 = client("s3")
    head = s3.head_object(Bucket=BUCKET, Key="models/demo-classifier-1.0.0.tar.gz")
    archive = ROOT / "build" / "artifacts" / "demo-classifier-1.0.0.tar.gz"
    assert head["Metadata"]["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    assert len(block) == 4
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert lifecycle[0]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    assert tags_of({"Tags": s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}).items() >= TAGS.items()

    # The same version again is a no-op; other content under the same version is refused.
    assert recap(playbook("playbooks/upload_model.yml"))["changed"] == 0
    other = WORK / "other-model"
    if not other.exists():
        subprocess.run([str(BIN / "model-service"), "train", "--out", str(other), "--rows", "400"], check=True)
    result = playbook("playbooks/upload_model.yml", "-e", f"model={other}", check=False)
    assert result.returncode != 0
    assert "already holds other content" in result.stdout


def test_site_builds_the_stack() -> None:
    playbook("site.yml")
    ec2 = client("ec2")
    [vpc] = ec2.describe_vpcs(Filters=project_filters())["Vpcs"]
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    subnets = ec2.describe_subnets(Filters=vpc_filter)["Subnets"]
    tiers = {t: [s for s in subnets if tags_of(s).get("Tier") == t] for t in ("public", "private")}
    assert len(tiers["public"]) == len(tiers["private"]) == 2
    assert len({s["AvailabilityZone"] for s in tiers["private"]}) == 2
    assert not any(s["MapPublicIpOnLaunch"] for s in subnets)
    assert all(tags_of(s).items() >= TAGS.items() for s in subnets)

    [igw] = ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc["VpcId"]]}])[
        "InternetGateways"
    ]
    nats = ec2.describe_nat_gateways(Filters=[*vpc_filter, {"Name": "state", "Values": ["available"]}])["NatGateways"]
    assert len(nats) == 2, "a NAT gateway per AZ"
    nat_az = {
        n["NatGatewayId"]: next(s["AvailabilityZone"] for s in subnets if s["SubnetId"] == n["SubnetId"]) for n in nats
    }
    for table in ec2.describe_route_tables(Filters=vpc_filter)["RouteTables"]:
        default = [r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
        for assoc in (a for a in table["Associations"] if a.get("SubnetId")):
            subnet = next(s for s in subnets if s["SubnetId"] == assoc["SubnetId"])
            if tags_of(subnet)["Tier"] == "public":
                assert default[0]["GatewayId"] == igw["InternetGatewayId"]
            else:  # a private subnet leaves through the NAT gateway of its own AZ
                assert nat_az[default[0]["NatGatewayId"]] == subnet["AvailabilityZone"]
    [flow_log] = ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vpc["VpcId"]]}])["FlowLogs"]
    assert flow_log["LogGroupName"] == f"/{NAME}/vpc-flow-logs"
    assert flow_log["TrafficType"] == "ALL"

    groups = {g["GroupName"]: g for g in ec2.describe_security_groups(Filters=vpc_filter)["SecurityGroups"]}
    assert groups["default"]["IpPermissions"] == []
    assert groups["default"]["IpPermissionsEgress"] == []
    alb_sg, app_sg, mon_sg = (groups[f"{NAME}-{n}"] for n in ("alb", "app", "monitoring"))
    app_rules = {
        (p["FromPort"], tuple(sorted(g["GroupId"] for g in p["UserIdGroupPairs"])), bool(p["IpRanges"]))
        for p in app_sg["IpPermissions"]
    }
    assert app_rules == {
        (80, (alb_sg["GroupId"],), False),
        (9100, (mon_sg["GroupId"],), False),
        (9113, (mon_sg["GroupId"],), False),
        (9180, (mon_sg["GroupId"],), False),
    }, "the service only from the load balancer, metrics only from the monitoring hosts"
    assert mon_sg["IpPermissions"] == [], "nothing reaches the monitoring hosts by default"
    assert {p["FromPort"] for p in alb_sg["IpPermissions"]} == {80, 443}

    elb = client("elbv2")
    [lb] = elb.describe_load_balancers(Names=[NAME])["LoadBalancers"]
    assert lb["Scheme"] == "internet-facing"
    assert {z["SubnetId"] for z in lb["AvailabilityZones"]} == {s["SubnetId"] for s in tiers["public"]}
    attributes = {
        a["Key"]: a["Value"]
        for a in elb.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])["Attributes"]
    }
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["deletion_protection.enabled"] == "true"
    # Access logs on, to a private bucket of their own that only the region's load balancers may write.
    assert attributes["access_logs.s3.enabled"] == "true"
    assert (attributes["access_logs.s3.bucket"], attributes["access_logs.s3.prefix"]) == (f"{BUCKET}-logs", "alb")
    s3 = client("s3")
    [statement] = json.loads(s3.get_bucket_policy(Bucket=f"{BUCKET}-logs")["Policy"])["Statement"]
    assert statement["Principal"] == {"AWS": "arn:aws:iam::127311923021:root"}, "us-east-1's load balancers"
    assert statement["Action"] == "s3:PutObject"
    assert statement["Resource"] == f"arn:aws:s3:::{BUCKET}-logs/alb/AWSLogs/123456789012/*"
    assert all(s3.get_public_access_block(Bucket=f"{BUCKET}-logs")["PublicAccessBlockConfiguration"].values())
    encryption = s3.get_bucket_encryption(Bucket=f"{BUCKET}-logs")["ServerSideEncryptionConfiguration"]["Rules"]
    assert encryption[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    [listener] = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert listener["Port"] == 80
    assert listener["Protocol"] == "HTTP"
    [forward] = listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    [tg] = elb.describe_target_groups(TargetGroupArns=[forward["TargetGroupArn"]])["TargetGroups"]
    assert tg["HealthCheckPath"] == "/ready"
    assert tg["VpcId"] == vpc["VpcId"]
    release_name = tg["TargetGroupName"]
    assert re.fullmatch(rf"{NAME}-[0-9a-f]{{8}}", release_name)

    waf = client("wafv2")
    acl = waf.get_web_acl_for_resource(ResourceArn=lb["LoadBalancerArn"])["WebACL"]
    rules = {r["Name"]: r for r in acl["Rules"]}
    assert rules["rate-limit-per-ip"]["Statement"]["RateBasedStatement"]["Limit"] == 2000
    assert rules["rate-limit-per-ip"]["Statement"]["RateBasedStatement"]["EvaluationWindowSec"] == 300
    assert rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]["VendorName"] == "AWS"
    # Its 8 KB body limit only counts: batches up to the service's limit pass on the prediction routes, a
    # larger body anywhere else is still blocked, and a Content-Length over the service's limit is answered
    # with the hosts' JSON 413 by the WAF itself.
    overrides = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]["RuleActionOverrides"]
    assert overrides == [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
    elsewhere = rules["large-body-outside-prediction-routes"]
    assert elsewhere["Priority"] > rules["AWSManagedRulesCommonRuleSet"]["Priority"]
    label, outside = elsewhere["Statement"]["AndStatement"]["Statements"]
    assert label["LabelMatchStatement"]["Key"] == "awswaf:managed:aws:core-rule-set:SizeRestrictions_Body"
    routes = re.compile(outside["NotStatement"]["Statement"]["RegexMatchStatement"]["RegexString"])
    assert routes.match("/predict")
    assert routes.match("/v2/models/demo-classifier/infer")
    assert not routes.match("/ready")
    limit = rules["body-over-service-limit"]
    assert limit["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 413
    assert re.match(limit["Statement"]["RegexMatchStatement"]["RegexString"], "1048577")
    assert not re.match(limit["Statement"]["RegexMatchStatement"]["RegexString"], "1048576")
    bodies = acl["CustomResponseBodies"]
    assert json.loads(bodies["payload_too_large"]["Content"]) == {
        "error": "payload_too_large",
        "detail": "the body is larger than the limit of 1048576 bytes",
    }
    assert json.loads(bodies["rate_limited"]["Content"])["error"] == "rate_limited"
    assert rules["rate-limit-per-ip"]["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 429
    # The web ACL logs its requests to CloudWatch Logs, credentials redacted.
    logging = waf.get_logging_configuration(ResourceArn=acl["ARN"])["LoggingConfiguration"]
    assert logging["LogDestinationConfigs"] == [f"arn:aws:logs:{REGION}:123456789012:log-group:aws-waf-logs-{NAME}"], (
        logging
    )
    assert {f["SingleHeader"]["Name"] for f in logging["RedactedFields"]} == {"authorization", "cookie"}

    [template] = ec2.describe_launch_templates(LaunchTemplateNames=[release_name])["LaunchTemplates"]
    assert template["LatestVersionNumber"] == 1
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"])[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    [disk] = data["BlockDeviceMappings"]
    assert disk["Ebs"]["VolumeType"] == "gp3"
    assert disk["Ebs"]["Encrypted"] is True
    [nic] = data["NetworkInterfaces"]
    assert nic["AssociatePublicIpAddress"] is False
    assert nic["Groups"] == [app_sg["GroupId"]]
    profile = data["IamInstanceProfile"]
    assert profile.get("Name") == f"{NAME}-app" or profile["Arn"].endswith(f":instance-profile/{NAME}-app")
    instance_tags = {
        t["Key"]: t["Value"]
        for spec in data["TagSpecifications"]
        if spec["ResourceType"] == "instance"
        for t in spec["Tags"]
    }
    assert instance_tags["Role"] == "app"
    assert instance_tags.items() >= TAGS.items()

    autoscaling = client("autoscaling")
    [asg] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[release_name])["AutoScalingGroups"]
    assert asg["LaunchTemplate"]["Version"] == "1", "pinned to the template's version, never $Latest"
    assert set(asg["VPCZoneIdentifier"].split(",")) == {s["SubnetId"] for s in tiers["private"]}
    assert asg["HealthCheckType"] == "ELB"
    assert asg["TargetGroupARNs"] == [tg["TargetGroupArn"]]
    assert (asg["MinSize"], asg["MaxSize"], asg["DesiredCapacity"]) == (2, 6, 2)
    policies = autoscaling.describe_policies(AutoScalingGroupName=release_name)["ScalingPolicies"]
    kinds = {
        p["TargetTrackingConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"] for p in policies
    }
    assert kinds == {"ASGAverageCPUUtilization", "ALBRequestCountPerTarget"}

    alarms = client("cloudwatch").describe_alarms(AlarmNamePrefix=release_name)["MetricAlarms"]
    assert {a["AlarmName"].removeprefix(release_name + "-") for a in alarms} == {
        "5xx-ratio",
        "unhealthy-hosts",
        "p99-latency",
        "capacity-short",
    }
    topic = next(
        t["TopicArn"] for t in client("sns").list_topics()["Topics"] if t["TopicArn"].endswith(f"{NAME}-alarms")
    )
    assert all(a["AlarmActions"] == [topic] for a in alarms)

    iam = client("iam")
    policy = iam.get_role_policy(RoleName=f"{NAME}-app", PolicyName="read-models")["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    [read] = [s for s in policy["Statement"] if s["Sid"] == "ReadModels"]
    assert read["Resource"] == f"arn:aws:s3:::{BUCKET}/models/*"
    discover = iam.get_role_policy(RoleName=f"{NAME}-monitoring", PolicyName="discover-instances")["PolicyDocument"]
    discover = json.loads(discover) if isinstance(discover, str) else discover
    assert "ec2:DescribeInstances" in discover["Statement"][0]["Action"]

    running = [{"Name": "instance-state-name", "Values": ["running"]}, *project_filters()]
    instances = [i for r in ec2.describe_instances(Filters=running)["Reservations"] for i in r["Instances"]]
    [monitoring] = [i for i in instances if tags_of(i).get("Role") == "monitoring"]
    assert monitoring["SubnetId"] in {s["SubnetId"] for s in tiers["private"]}
    assert [g["GroupId"] for g in monitoring["SecurityGroups"]] == [mon_sg["GroupId"]]
    assert "PublicIpAddress" not in monitoring
    assert len([i for i in instances if tags_of(i).get("Role") == "app"]) == 2
    # Reachable by design with no open port (modelfleet_aws_access: ssm, the default): the SSM agent is
    # installed at first boot (Debian's images carry none), and the instance roles allow Session Manager.
    user_data = ec2.describe_instance_attribute(InstanceId=monitoring["InstanceId"], Attribute="userData")
    script = base64.b64decode(user_data["UserData"]["Value"]).decode()
    assert script.startswith("#!/bin/sh")
    assert f'region="{REGION}"' in script
    package = "https://s3.${region}.amazonaws.com/amazon-ssm-${region}/latest/debian_${arch}/amazon-ssm-agent.deb"
    assert package in script
    assert "systemctl enable --now amazon-ssm-agent" in script
    for role in ("app", "monitoring"):
        attached = iam.list_attached_role_policies(RoleName=f"{NAME}-{role}")["AttachedPolicies"]
        assert "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore" in [p["PolicyArn"] for p in attached], role


def test_site_baked_the_ami_and_left_no_builder() -> None:
    [ami] = app_amis()
    tags = tags_of(ami)
    assert re.fullmatch(rf"{NAME}-app/1\.0\.0-[0-9a-f]{{12,}}", ami["Name"]), ami["Name"]
    assert tags["Release"] == ami["Name"].split("/", 1)[1]
    assert tags["Model"] == "demo-classifier"
    assert tags["ModelVersion"] == "1.0.0"
    archive = ROOT / "build" / "artifacts" / "demo-classifier-1.0.0.tar.gz"
    assert len(tags["ModelSha256"]) == 64
    assert archive.exists()
    assert tags.items() >= TAGS.items()
    # The fleet runs it: every release's template names the AMI, the group carries it in its tags.
    [(name, asg_tags)] = releases().items()
    assert asg_tags["Image"] == ami["ImageId"]
    assert asg_tags["Release"] == tags["Release"]
    data = client("ec2").describe_launch_template_versions(LaunchTemplateName=name)["LaunchTemplateVersions"]
    assert [v["LaunchTemplateData"]["ImageId"] for v in data] == [ami["ImageId"]]
    assert builder_leftovers() == []


def test_second_run_changes_nothing() -> None:
    result = playbook("site.yml")
    assert recap(result)["changed"] == 0, [line for line in result.stdout.splitlines() if line.startswith("changed:")]
    assert "baked before" in result.stdout, "the bake of an AMI that exists is a no-op"
    assert len(app_amis()) == 1


def test_inventory_groups_instances_by_tags() -> None:
    # From the cache the playbooks left: site.yml refreshed it once the fleet existed.
    result = run("ansible-inventory", "-i", "inventories/prod", "--list")
    inventory = json.loads(result.stdout)
    app = inventory["app"]["hosts"]
    assert len(app) == 2
    assert len(inventory["monitoring"]["hosts"]) == 1
    [release_group] = [g for g in inventory if g.startswith("release_1_0_0_")]
    assert sorted(inventory[release_group]["hosts"]) == sorted(app)
    # Each host is reached at its private address.
    addresses = run("ansible", "-i", "inventories/prod", "app", "-m", "ansible.builtin.debug", "-a", "var=ansible_host")
    for host in app:
        private = inventory["_meta"]["hostvars"][host]["private_ip_address"]
        private = private.get("__ansible_unsafe") if isinstance(private, dict) else private  # as the cache keeps it
        assert re.search(rf'{host} \| SUCCESS => {{\s+"ansible_host": "{re.escape(private)}"', addresses.stdout)
    assert run("ansible-inventory", "-i", "inventories/prod", "--graph").stdout.count("@az_") >= 1
    # The cache is the emulator's own, never the one a real account's runs read.
    assert list(INVENTORY_CACHE.glob("*aws_ec2*")), "no emulated inventory cache"
    # A bake's builder (tagged Role=builder) is no inventory host: the bake adds it to its own play.
    ec2 = client("ec2")
    tags = [{"Key": k, "Value": v} for k, v in {**TAGS, "Role": "builder"}.items()]
    [builder] = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=[{"ResourceType": "instance", "Tags": tags}]
    )["Instances"]
    try:
        fresh = json.loads(run("ansible-inventory", "-i", "inventories/prod", "--list", "--flush-cache").stdout)
        assert builder["InstanceId"] not in fresh["_meta"]["hostvars"]
        assert "builder" not in fresh
        assert len(fresh["app"]["hosts"]) == 2
    finally:
        ec2.terminate_instances(InstanceIds=[builder["InstanceId"]])


def test_bake_whose_smoke_test_fails_leaves_nothing() -> None:
    before = {i["ImageId"] for i in app_amis()}
    # nginx refuses the smoke test's request body (413): the roles apply, the prediction fails.
    result = run(
        "ansible-playbook",
        "-i",
        "inventories/prod",
        "playbooks/bake.yml",
        "-e",
        f"model_service_model_src={OTHER_MODEL}",
        "-e",
        "model_service_max_body_bytes=16",
        check=False,
    )
    assert result.returncode != 0
    assert "Release stopped: the bake of" in result.stdout
    assert "Predict one row on the builder" in result.stdout
    assert {i["ImageId"] for i in app_amis()} == before
    assert builder_leftovers() == []


def test_release_promotes_a_healthy_canary(metrics: tuple[str, Behaviour]) -> None:
    url, _ = metrics
    [blue] = releases()
    # Blue scaled out under load before the release: green must start as large.
    client("autoscaling").set_desired_capacity(AutoScalingGroupName=blue, DesiredCapacity=4)
    # The plan first: what the release below does, step by step, with nothing made.
    model = ["-e", f"model_service_model_src={OTHER_MODEL}", *canary_args(url, (10, 50), soak=8)]
    plan = playbook("playbooks/plan.yml", *model).stdout
    assert "Release plan (aws; nothing was changed)" in plan, plan[-3000:]
    assert f"{blue} (weight 100); {blue} runs ami-" in plan
    assert "with 4 instance(s)" in plan
    assert f"canary step 1: 10 % of the requests (listener weights: {blue} 90, " in plan
    assert "soak: the last step held 8 s more and judged again" in plan
    assert "(deregistration delay 1 s)" in plan
    assert list(releases()) == [blue], "the plan made something"
    with ForwardWatch() as watch:
        playbook("playbooks/release.yml", *model)
    [(green, tags)] = releases().items()
    assert green != blue
    # The plan named the group the release made, as large as blue ran.
    assert f"create {green}: launch template, Auto Scaling Group of 4 instance(s)" in plan
    # Green joins the listener at weight 0 (health-checked, no request) before anything waits for its health,
    # then takes each step's share, judged at each, and everything once the last step passed.
    assert watch.states() == [
        {blue: 100},
        {blue: 100, green: 0},
        {blue: 90, green: 10},
        {blue: 50, green: 50},
        {green: 100, blue: 0},  # blue stays on the listener while its deregistered targets drain
        {green: 100},
    ]
    watch.draw(WORK / "release-promoted.png", "A release promoted by the canary gate", {blue: "blue", green: "green"})
    assert forwards() == {green: 100}
    assert release_resources() == {green}, "blue's group, template and target group are gone"
    [asg] = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[green])["AutoScalingGroups"]
    assert asg["LaunchTemplate"]["Version"] == "1"
    assert asg["DesiredCapacity"] == 4, "green started smaller than blue ran"
    # The operator's view: green at 100 % with its 4 targets healthy, no lease held, the steps' verdicts.
    status = playbook("playbooks/status.yml").stdout
    assert f"{green}: {tags['Image']} (release " in status, status[-3000:]
    assert "weight 100, targets healthy healthy healthy healthy" in status
    assert "no run holds the lease" in status
    assert "canary promote (steps: 10.0 % promote, 50.0 % promote, 50.0 % soak promote)" in status
    assert {i["ImageId"] for i in app_amis()} >= {tags["Image"]}
    assert builder_leftovers() == []
    record = release_records()[-1]
    assert (record["image"], record["result"]) == (tags["Image"], "succeeded")
    assert record["canary"]["verdict"] == "promote"
    # At each step the canary took its share of the requests, and the gate saw enough of them.
    steps = record["canary"]["steps"]
    judged = [(step["step"], step["soak"], step["verdict"]) for step in steps]
    assert judged == [(10.0, False, "promote"), (50.0, False, "promote"), (50.0, True, "promote")]
    for step, (low, high) in zip(steps, [(0.05, 0.2), (0.4, 0.6), (0.4, 0.6)], strict=True):
        canary, baseline = step["requests"]["canary"], step["requests"]["baseline"]
        assert canary >= 20
        assert low < canary / (canary + baseline) < high, step


def _first_ami() -> str:
    return min(app_amis(), key=lambda i: i["CreationDate"])["ImageId"]


def test_release_rolled_back_by_the_gate(metrics: tuple[str, Behaviour]) -> None:
    url, behaviour = metrics
    [blue] = releases()
    ami = _first_ami()
    [image] = client("ec2").describe_images(ImageIds=[ami])["Images"]
    behaviour.failing = {tags_of(image)["Release"]}
    with ForwardWatch() as watch:
        result = playbook(
            "playbooks/release.yml", "-e", f"modelfleet_release_image={ami}", *canary_args(url), check=False
        )
    behaviour.failing = set()
    assert result.returncode != 0
    [blue_share, attached, canary_share, back] = watch.states()
    assert blue_share == back == {blue: 100}
    [green] = set(canary_share) - {blue}
    assert attached == {blue: 100, green: 0}
    assert canary_share == {blue: 90, green: 10}
    watch.draw(
        WORK / "release-rolled-back.png",
        "A failing release rolled back by the canary gate",
        {blue: "blue", green: "green (canary)"},
    )
    assert "rolled back by the canary gate at 10 % of the requests: rollback: canary" in result.stdout
    # Half of the canary's answers fail; Prometheus' increase() over a few scrapes extrapolates around that.
    ratio = float(re.search(r"rollback: canary \d+ requests, errors ([\d.]+)%", result.stdout).group(1))
    assert 40 <= ratio <= 60, ratio
    assert forwards() == {blue: 100}
    assert release_resources() == {blue}, "green is gone"
    record = release_records()[-1]
    assert (record["image"], record["result"], record["canary"]["verdict"]) == (ami, "rolled back", "rollback")


def test_release_whose_soak_fails_is_rolled_back(metrics: tuple[str, Behaviour]) -> None:
    """A canary that passes its step and goes bad during the soak is rolled back by the soak's verdict."""
    url, behaviour = metrics
    [blue] = releases()
    ami = _first_ami()
    [image] = client("ec2").describe_images(ImageIds=[ami])["Images"]
    release = tags_of(image)["Release"]
    args = [
        str(BIN / "ansible-playbook"),
        *("-i", "inventories/prod", "playbooks/release.yml", "-e", f"modelfleet_release_image={ami}"),
        *canary_args(url, (10,), soak=16),
        *("-e", f"model_service_wheelhouse_cache={WORK / 'wheelhouse'}"),
    ]
    lines: list[str] = []
    with ForwardWatch() as watch:
        env = {**aws_env(), "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                # The step's verdict is printed: from now on the canary fails half its requests (the soak follows).
                if re.search(rf'"msg": "Canary {re.escape(release)}: promote:', line):
                    behaviour.failing = {release}
            process.wait(timeout=900)
        finally:
            behaviour.failing = set()
            if process.poll() is None:
                process.kill()
    output = "".join(lines)
    (WORK / "release-soak-fails.log").write_text(output)
    assert process.returncode != 0, output[-3000:]
    assert "rolled back by the canary gate at 10 % of the requests (soak): rollback: canary" in output, output[-3000:]
    [green] = {name for state in watch.states() for name in state} - {blue}
    assert watch.states() == [{blue: 100}, {blue: 100, green: 0}, {blue: 90, green: 10}, {blue: 100}]
    assert forwards() == {blue: 100}
    assert release_resources() == {blue}, "green is gone"
    record = release_records()[-1]
    assert (record["image"], record["result"]) == (ami, "rolled back")
    judged = [(step["step"], step["soak"], step["verdict"]) for step in record["canary"]["steps"]]
    assert judged == [(10.0, False, "promote"), (10.0, True, "rollback")]


def test_release_over_the_vcpu_quota_is_refused_before_anything_is_made() -> None:
    # 20 t3.small need 40 vCPUs; the emulated account's On-Demand quota is 32 and some run already.
    [blue] = releases()
    before = release_resources()
    refused = playbook(
        "playbooks/release.yml",
        "-e",
        f"modelfleet_release_image={_first_ami()}",
        "-e",
        json.dumps({"modelfleet_aws_desired_capacity": 20, "modelfleet_aws_max_size": 20}),
        check=False,
    )
    assert refused.returncode != 0
    message = re.search(
        r"Release stopped before anything of it was made: its 20 t3.small instances need 40 vCPUs, and "
        r"(\d+) of the account's 32 On-Demand",
        refused.stdout,
    )
    assert message, refused.stdout[-3000:]
    assert int(message.group(1)) >= 2
    assert release_resources() == before
    assert forwards() == {blue: 100}


def test_release_that_never_gets_healthy_leaves_nothing(metrics: tuple[str, Behaviour]) -> None:
    # Its targets are still in their first health checks (3 s) when its wait (1 s) ends.
    url, _ = metrics
    [blue] = releases()
    alarms_before = sorted(a["AlarmName"] for a in client("cloudwatch").describe_alarms()["MetricAlarms"])
    ami = _first_ami()
    with ForwardWatch() as watch:
        result = playbook(
            "playbooks/release.yml",
            "-e",
            f"modelfleet_release_image={ami}",
            "-e",
            "modelfleet_aws_healthy_timeout=1",
            *canary_args(url),
            check=False,
        )
    assert result.returncode != 0
    [blue_share, attached, back] = watch.states()
    [green] = set(attached) - {blue}
    assert blue_share == back == {blue: 100}
    assert attached == {blue: 100, green: 0}, "it never took a request"
    stopped = rf"Release stopped: {green}: 0 of \d targets healthy after 1 s"
    assert re.search(stopped, result.stdout), result.stdout[-3000:]
    assert "Elb.InitialHealthChecking" in result.stdout
    assert f"It took no request and was deleted with its alarms; {blue} serves every request." in result.stdout
    assert forwards() == {blue: 100}
    assert release_resources() == {blue}, "its group, template and target group are gone"
    assert sorted(a["AlarmName"] for a in client("cloudwatch").describe_alarms()["MetricAlarms"]) == alarms_before
    record = release_records()[-1]
    assert (record["image"], record["result"]) == (ami, "failed")
    assert record["detail"].startswith(f"never healthy: {green}: 0 of "), record


def test_interrupted_release_is_finished_by_a_rerun(metrics: tuple[str, Behaviour]) -> None:
    url, _ = metrics
    [blue] = releases()
    args = ["-i", "inventories/prod", "playbooks/release.yml", "-e", f"modelfleet_release_image={_first_ami()}"]
    args += [*canary_args(url), "-e", f"model_service_wheelhouse_cache={WORK / 'wheelhouse'}"]
    process = subprocess.Popen(
        [str(BIN / "ansible-playbook"), *args],
        cwd=ROOT,
        env=aws_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        # Past the weight-0 step: the canary takes a share.
        while len([w for w in forwards().values() if w > 0]) < 2 and process.poll() is None:
            assert time.monotonic() < deadline, "the release never shifted a share to the canary"
            time.sleep(0.5)
        assert len([w for w in forwards().values() if w > 0]) == 2, "the release never shifted a share to the canary"
    finally:
        os.killpg(process.pid, 9)
        process.wait()
    shares = forwards()
    assert shares[blue] == 90, shares
    # Killed with both fleets up and the canary taking 10 %: the re-run finishes the release.
    playbook(*args[2:])
    [(green, _)] = releases().items()
    assert green != blue
    assert forwards() == {green: 100}
    assert release_resources() == {green}


def test_rollback_returns_to_the_release_before() -> None:
    [current] = releases()
    served_before = [r["image"] for r in release_records() if r["result"] == "succeeded"]
    previous = next(image for image in reversed(served_before) if image != served_before[-1])
    playbook("playbooks/rollback.yml")
    [(back, tags)] = releases().items()
    assert back != current
    assert tags["Image"] == previous
    assert forwards() == {back: 100}
    assert release_resources() == {back}


def test_https_with_a_certificate_redirects_http() -> None:
    acm = client("acm")
    requested = acm.request_certificate(DomainName="predict.example.com")["CertificateArn"]
    # Not issued yet: refused before any change (AWS would refuse the listener after the rest was built).
    [serving] = releases()
    pending = {"modelfleet_aws_https": True, "modelfleet_aws_certificate_arn": requested}
    pending = playbook("playbooks/fleet.yml", "-e", json.dumps(pending), check=False)
    assert pending.returncode != 0
    assert "is PENDING_VALIDATION, not ISSUED" in pending.stdout, pending.stdout[-2000:]
    assert "Nothing was changed on AWS" in pending.stdout
    elb = client("elbv2")
    [lb] = elb.describe_load_balancers(Names=[NAME])["LoadBalancers"]
    ports = [x["Port"] for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]]
    assert ports == [80], "the listeners were not touched"
    # An imported certificate is issued at once.
    key, cert = WORK / "tls.key", WORK / "tls.crt"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=predict.example.com", "-days", "30"]
    subprocess.run(["openssl", *request, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    arn = acm.import_certificate(Certificate=cert.read_bytes(), PrivateKey=key.read_bytes())["CertificateArn"]
    assert acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"] == "ISSUED"
    extra = {"modelfleet_aws_https": True, "modelfleet_aws_certificate_arn": arn}
    # The fleet tier sets the listeners (site.yml runs it last; the other tiers are tested above).
    playbook("playbooks/fleet.yml", "-e", json.dumps(extra))
    assert forwards() == {serving: 100}, "the fleet tier keeps the release it serves"
    elb = client("elbv2")
    [lb] = elb.describe_load_balancers(Names=[NAME])["LoadBalancers"]
    listeners = {x["Port"]: x for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]}
    assert set(listeners) == {80, 443}
    redirect = listeners[80]["DefaultActions"][0]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert listeners[443]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert listeners[443]["Certificates"][0]["CertificateArn"] == arn
    assert listeners[443]["DefaultActions"][0]["Type"] == "forward"


def foreign_resources() -> dict[str, str]:
    """A VPC of someone else in the same account, with a subnet, a security group, a target group and an
    instance: what the teardown must leave as it is."""
    ec2 = client("ec2")
    other = [{"Key": "Project", "Value": "someone-else"}]
    vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": other}])
    vpc_id = vpc["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.99.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]
    group = ec2.create_security_group(GroupName="someone-else", Description="not ours", VpcId=vpc_id)["GroupId"]
    target_group = client("elbv2").create_target_group(Name="someone-else", Protocol="HTTP", Port=80, VpcId=vpc_id)
    [instance] = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet["SubnetId"], SecurityGroupIds=[group]
    )["Instances"]
    return {
        "vpc": vpc_id,
        "subnet": subnet["SubnetId"],
        "group": group,
        "target_group": target_group["TargetGroups"][0]["TargetGroupArn"],
        "instance": instance["InstanceId"],
    }


def still_there(foreign: dict[str, str]) -> dict[str, bool]:
    ec2 = client("ec2")
    [instance] = ec2.describe_instances(InstanceIds=[foreign["instance"]])["Reservations"][0]["Instances"]
    target_groups = client("elbv2").describe_target_groups()["TargetGroups"]
    return {
        "vpc": bool(ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [foreign["vpc"]]}])["Vpcs"]),
        "subnet": bool(ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [foreign["subnet"]]}])["Subnets"]),
        "group": bool(
            ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [foreign["group"]]}])["SecurityGroups"]
        ),
        "target_group": foreign["target_group"] in [t["TargetGroupArn"] for t in target_groups],
        "instance": instance["State"]["Name"] == "running",
    }


@pytest.mark.standalone
def test_teardown_leaves_nothing_of_the_project() -> None:
    foreign = foreign_resources()
    # Not without naming the environment: refused before any call.
    refused = playbook("playbooks/teardown.yml", "-e", "modelfleet_teardown_artifacts=true", check=False)
    assert refused.returncode != 0
    assert "Nothing was deleted. Tearing down prod deletes" in refused.stdout
    assert "-e modelfleet_teardown_confirm=prod" in refused.stdout
    assert client("elbv2").describe_load_balancers()["LoadBalancers"] != []
    torn = playbook(
        "playbooks/teardown.yml", "-e", "modelfleet_teardown_artifacts=true", "-e", "modelfleet_teardown_confirm=prod"
    )
    # The load balancer's interfaces outlived it (75 s in the emulator, longer than the deletions between):
    # the teardown waited for them, so the network's deletions met no DependencyViolation to retry.
    assert "RETRYING: [localhost]: Wait until the load balancer's network interfaces are gone" in torn.stdout
    assert "RETRYING: [localhost]: Delete the internet gateway" not in torn.stdout
    assert "RETRYING: [localhost]: Delete the subnets" not in torn.stdout
    ec2 = client("ec2")
    # Someone else's network in the same account is left as it was.
    assert still_there(foreign) == dict.fromkeys(foreign, True)
    # The load balancer's interfaces (which outlived it) were waited for, not raced: the network is gone.
    interfaces = ec2.describe_network_interfaces(Filters=[{"Name": "description", "Values": [f"ELB app/{NAME}/*"]}])
    assert interfaces["NetworkInterfaces"] == []
    assert ec2.describe_vpcs(Filters=project_filters())["Vpcs"] == []
    assert ec2.describe_subnets(Filters=project_filters())["Subnets"] == []
    assert ec2.describe_security_groups(Filters=project_filters())["SecurityGroups"] == []
    alive = [
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        *project_filters(),
    ]
    assert ec2.describe_instances(Filters=alive)["Reservations"] == []
    assert [n for n in ec2.describe_nat_gateways()["NatGateways"] if n["State"] not in ("deleted", "deleting")] == []
    assert ec2.describe_addresses()["Addresses"] == []
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []
    assert client("elbv2").describe_load_balancers()["LoadBalancers"] == []
    assert [t["TargetGroupName"] for t in client("elbv2").describe_target_groups()["TargetGroups"]] == ["someone-else"]
    assert client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    assert client("wafv2").list_web_acls(Scope="REGIONAL")["WebACLs"] == []
    assert client("sns").list_topics()["Topics"] == []
    assert [r for r in client("iam").list_roles()["Roles"] if r["RoleName"].startswith(NAME)] == []
    assert client("logs").describe_log_groups(logGroupNamePrefix=f"/{NAME}")["logGroups"] == []
    assert client("logs").describe_log_groups(logGroupNamePrefix=f"aws-waf-logs-{NAME}")["logGroups"] == []
    assert [b for b in client("s3").list_buckets()["Buckets"] if b["Name"] in (BUCKET, f"{BUCKET}-logs")] == []
    assert app_amis() == []
    assert builder_leftovers() == []
    # The smoke run's sweep finds nothing of the project, and names what is left when something is.
    swept = smoke("--sweep")
    assert (swept.returncode, swept.stdout.strip()[-12:]) == (0, "nothing left"), swept.stdout + swept.stderr
    tagged = [{"ResourceType": "elastic-ip", "Tags": [{"Key": k, "Value": v} for k, v in TAGS.items()]}]
    address = ec2.allocate_address(Domain="vpc", TagSpecifications=tagged)["AllocationId"]
    try:
        swept = smoke("--sweep")
        assert swept.returncode == 1
        assert f"address {address}" in swept.stdout
    finally:
        ec2.release_address(AllocationId=address)
    # Again: nothing to do, nothing fails.
    playbook(
        "playbooks/teardown.yml", "-e", "modelfleet_teardown_artifacts=true", "-e", "modelfleet_teardown_confirm=prod"
    )

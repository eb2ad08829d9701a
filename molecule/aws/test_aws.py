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
        "ANSIBLE_VAULT_PASSWORD_FILE": str(ROOT / "molecule" / "shared" / "example-vault-password"),
        "ANSIBLE_NOCOLOR": "1",
    }


def run(tool: str, *args: str, check: bool = True, endpoint: str = ENDPOINT) -> subprocess.CompletedProcess[str]:
    if tool == "ansible-playbook":  # its own build cache: other tests may build other apps under 1.0.0 meanwhile
        args = (*args, "-e", f"model_service_wheelhouse_cache={WORK / 'wheelhouse'}")
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


def canary_args(url: str, steps: tuple[int, ...] = (10,)) -> list[str]:
    settings = {
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
    server = subprocess.Popen([*strict, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
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

    # An endpoint that is not this machine's loopback is refused (and never called).
    result = playbook("site.yml", check=False, endpoint="http://192.0.2.10:5000")
    assert result.returncode != 0
    assert "is not on this machine's loopback" in result.stdout
    assert client("ec2").describe_vpcs(Filters=project_filters())["Vpcs"] == []


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
    assert rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]["VendorName"] == "AWS"
    # Its 8 KB body limit only counts: batches up to the service's limit pass (nginx answers larger with 413).
    overrides = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]["RuleActionOverrides"]
    assert overrides == [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]

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
    with ForwardWatch() as watch:
        playbook("playbooks/release.yml", "-e", f"model_service_model_src={OTHER_MODEL}", *canary_args(url, (10, 50)))
    [(green, tags)] = releases().items()
    assert green != blue
    # Green joins the listener at weight 0 (health-checked, no request) before anything waits for its health,
    # then takes each step's share, judged at each, and everything once the last step passed.
    assert watch.states() == [
        {blue: 100},
        {blue: 100, green: 0},
        {blue: 90, green: 10},
        {blue: 50, green: 50},
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
    assert "canary promote (steps: 10.0 % promote, 50.0 % promote)" in status
    assert {i["ImageId"] for i in app_amis()} >= {tags["Image"]}
    assert builder_leftovers() == []
    record = release_records()[-1]
    assert (record["image"], record["result"]) == (tags["Image"], "succeeded")
    assert record["canary"]["verdict"] == "promote"
    # At each step the canary took its share of the requests, and the gate saw enough of them.
    steps = record["canary"]["steps"]
    assert [(step["step"], step["verdict"]) for step in steps] == [(10.0, "promote"), (50.0, "promote")]
    for step, (low, high) in zip(steps, [(0.05, 0.2), (0.4, 0.6)], strict=True):
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
    arn = acm.request_certificate(DomainName="predict.example.com")["CertificateArn"]
    extra = {"modelfleet_aws_https": True, "modelfleet_aws_certificate_arn": arn}
    # The fleet tier sets the listeners (site.yml runs it last; the other tiers are tested above).
    [serving] = releases()
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


@pytest.mark.standalone
def test_teardown_leaves_nothing_of_the_project() -> None:
    # Not without naming the environment: refused before any call.
    refused = playbook("playbooks/teardown.yml", "-e", "modelfleet_teardown_artifacts=true", check=False)
    assert refused.returncode != 0
    assert "Nothing was deleted. Tearing down prod deletes" in refused.stdout
    assert "-e modelfleet_teardown_confirm=prod" in refused.stdout
    assert client("elbv2").describe_load_balancers()["LoadBalancers"] != []
    playbook(
        "playbooks/teardown.yml", "-e", "modelfleet_teardown_artifacts=true", "-e", "modelfleet_teardown_confirm=prod"
    )
    ec2 = client("ec2")
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
    assert client("elbv2").describe_target_groups()["TargetGroups"] == []
    assert client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    assert client("wafv2").list_web_acls(Scope="REGIONAL")["WebACLs"] == []
    assert client("sns").list_topics()["Topics"] == []
    assert [r for r in client("iam").list_roles()["Roles"] if r["RoleName"].startswith(NAME)] == []
    assert client("logs").describe_log_groups(logGroupNamePrefix=f"/{NAME}")["logGroups"] == []
    assert [b for b in client("s3").list_buckets()["Buckets"] if b["Name"] == BUCKET] == []
    assert app_amis() == []
    assert builder_leftovers() == []
    # Again: nothing to do, nothing fails.
    playbook(
        "playbooks/teardown.yml", "-e", "modelfleet_teardown_artifacts=true", "-e", "modelfleet_teardown_confirm=prod"
    )

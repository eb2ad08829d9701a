"""The project's AWS emulator (tools/strict_moto.py) refuses what AWS refuses, where moto alone does not.

Each scenario runs against the strict launcher and against plain moto_server, both on a free loopback
port: plain moto shows the leniency (so the check means something), the launcher shows AWS's behaviour.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WINDOW = 6  # seconds of each strict behaviour (provisioning, propagation, linger, initial health checks)


def eventually(check: Callable[[], Any], what: str, seconds: float = 4 * WINDOW) -> Any:
    """Call ``check`` until it returns without raising (its result), for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return check()
        except (AssertionError, ClientError):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still not so after {seconds} s") from None
            time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module", params=["strict", "plain"])
def endpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    port = free_port()
    command = (
        [sys.executable, str(ROOT / "tools" / "strict_moto.py")]
        if request.param == "strict"
        else [str(BIN / "moto_server")]
    )
    log = (tmp_path_factory.mktemp("moto") / "server.log").open("w")
    # Each window is long enough for the calls a test makes inside it on a machine whose cores are busy with
    # other work (a test asserts what is refused in the window, then waits for its end by polling).
    env = {
        "MODELFLEET_EMULATOR_ALB_PROVISIONING_SECONDS": str(WINDOW),
        "MODELFLEET_EMULATOR_IAM_PROPAGATION_SECONDS": str(WINDOW),
        "MODELFLEET_EMULATOR_ENI_LINGER_SECONDS": str(WINDOW),
        "MODELFLEET_EMULATOR_INITIAL_HEALTH_SECONDS": str(WINDOW),
        "PATH": "/usr/bin:/bin",
    }
    server = subprocess.Popen([*command, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, env=env)
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, f"the {request.param} emulator stopped; see {log.name}"
            time.sleep(0.05)
        yield request.param, f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def client(url: str, service: str) -> Any:
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def network(url: str) -> tuple[str, list[str]]:
    ec2 = client(url, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"][
            "SubnetId"
        ]
        for i, az in enumerate("ab")
    ]
    return vpc, subnets


def states(elb: Any, arn: str) -> list[tuple[str, str | None]]:
    health = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    return [(h["TargetHealth"]["State"], h["TargetHealth"].get("Reason")) for h in health]


def settled(elb: Any, arn: str) -> list[tuple[str, str | None]]:
    """The targets' states once their initial health checks are over (the strict emulator: WINDOW s)."""
    deadline = time.monotonic() + 4 * WINDOW
    while any(state == "initial" for state, _ in states(elb, arn)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return states(elb, arn)


def test_targets_of_a_group_on_no_listener_are_unused(endpoint: tuple[str, str]) -> None:
    kind, url = endpoint
    vpc, subnets = network(url)
    [instance] = client(url, "ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"]
    elb = client(url, "elbv2")
    lb = elb.create_load_balancer(Name="lb-tg", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    blue, green = (
        elb.create_target_group(Name=f"tg-{n}", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0][
            "TargetGroupArn"
        ]
        for n in ("blue", "green")
    )
    for arn in (blue, green):
        elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance["InstanceId"]}])
    if kind == "plain":  # what the strict launcher corrects: moto checks nothing, every target is healthy
        assert settled(elb, green) == [("healthy", None)]
        return
    unused = [("unused", "Target.NotInUse")]
    assert states(elb, blue) == states(elb, green) == unused, "no listener: no health check on AWS"

    forward = {"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": blue, "Weight": 100}]}}
    listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=[forward])["Listeners"][
        0
    ]["ListenerArn"]
    assert settled(elb, blue) == [("healthy", None)]
    assert states(elb, green) == unused

    # Weight 0 beside the live group: green takes no request but is in use, so AWS checks its health.
    weights = [{"TargetGroupArn": blue, "Weight": 100}, {"TargetGroupArn": green, "Weight": 0}]
    elb.modify_listener(
        ListenerArn=listener, DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": weights}}]
    )
    assert settled(elb, green) == [("healthy", None)]

    # A rule forwarding to a group counts as well; a listener that no longer forwards to it does not.
    elb.modify_listener(ListenerArn=listener, DefaultActions=[forward])
    assert states(elb, green) == unused
    elb.create_rule(
        ListenerArn=listener,
        Priority=1,
        Conditions=[{"Field": "path-pattern", "Values": ["/green/*"]}],
        Actions=[{"Type": "forward", "TargetGroupArn": green}],
    )
    assert settled(elb, green) == [("healthy", None)]
    elb.delete_listener(ListenerArn=listener)
    assert states(elb, blue) == states(elb, green) == unused


def test_waf_refuses_a_load_balancer_still_provisioning(endpoint: tuple[str, str]) -> None:
    kind, url = endpoint
    _, subnets = network(url)
    elb, waf = client(url, "elbv2"), client(url, "wafv2")
    acl = waf.create_web_acl(  # first: only the calls the test is about fall inside the provisioning window
        Name="acl",
        Scope="REGIONAL",
        DefaultAction={"Allow": {}},
        VisibilityConfig={"SampledRequestsEnabled": False, "CloudWatchMetricsEnabled": False, "MetricName": "acl"},
    )["Summary"]["ARN"]
    lb = elb.create_load_balancer(Name="lb-waf", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    described = elb.describe_load_balancers(LoadBalancerArns=[lb])["LoadBalancers"][0]["State"]["Code"]
    if kind == "plain":  # moto: active on the first look, associated at once
        assert described == "active"
        waf.associate_web_acl(WebACLArn=acl, ResourceArn=lb)
        return
    assert described == "provisioning"
    with pytest.raises(ClientError) as refused:
        waf.associate_web_acl(WebACLArn=acl, ResourceArn=lb)
    assert refused.value.response["Error"]["Code"] == "WAFUnavailableEntityException"

    def active() -> None:
        assert elb.describe_load_balancers(LoadBalancerArns=[lb])["LoadBalancers"][0]["State"]["Code"] == "active"

    eventually(active, "the load balancer is active")
    waf.associate_web_acl(WebACLArn=acl, ResourceArn=lb)
    assert waf.get_web_acl_for_resource(ResourceArn=lb)["WebACL"]["ARN"] == acl


def test_a_new_instance_profile_is_refused_until_it_has_propagated(endpoint: tuple[str, str]) -> None:
    kind, url = endpoint
    _, subnets = network(url)
    iam, ec2, asg = client(url, "iam"), client(url, "ec2"), client(url, "autoscaling")
    iam.create_role(RoleName="app", AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName="app")
    iam.add_role_to_instance_profile(InstanceProfileName="app", RoleName="app")
    ec2.create_launch_template(
        LaunchTemplateName="app", LaunchTemplateData={"ImageId": "ami-12c6146b", "IamInstanceProfile": {"Name": "app"}}
    )

    def launch() -> None:
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, IamInstanceProfile={"Name": "app"})

    def group(name: str) -> None:
        asg.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateName": "app", "Version": "1"},
            MinSize=1,
            MaxSize=1,
            VPCZoneIdentifier=subnets[0],
        )

    if kind == "plain":  # moto: usable at once
        launch()
        group("at-once")
        return
    with pytest.raises(ClientError) as refused:
        launch()
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "Invalid IAM Instance Profile name" in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as refused:
        group("too-soon")
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert "Invalid IAM Instance Profile name" in refused.value.response["Error"]["Message"]
    assert asg.describe_auto_scaling_groups(AutoScalingGroupNames=["too-soon"])["AutoScalingGroups"] == []
    eventually(launch, "the instance profile is usable once propagated")
    group("later")


def test_a_deleted_load_balancers_interfaces_block_its_network_for_a_while(endpoint: tuple[str, str]) -> None:
    kind, url = endpoint
    vpc, subnets = network(url)
    ec2, elb = client(url, "ec2"), client(url, "elbv2")
    group = ec2.create_security_group(GroupName="lb-eni", Description="alb", VpcId=vpc)["GroupId"]
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    lb = elb.create_load_balancer(Name="lb-eni", Subnets=subnets, SecurityGroups=[group])["LoadBalancers"][0]
    described = "ELB " + lb["LoadBalancerArn"].split(":loadbalancer/")[1]
    by_description = [{"Name": "description", "Values": ["ELB app/lb-eni/*"]}]

    def interfaces() -> list[str]:
        return [i["Description"] for i in ec2.describe_network_interfaces(Filters=by_description)["NetworkInterfaces"]]

    elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    if kind == "plain":  # moto: no interface at all, the network goes at once
        assert interfaces() == []
        ec2.detach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
        ec2.delete_subnet(SubnetId=subnets[0])
        ec2.delete_security_group(GroupId=group)
        return
    assert interfaces() == [described, described], "one interface per subnet, still there after the deletion"
    refusals = [
        lambda: ec2.detach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc),
        lambda: ec2.delete_subnet(SubnetId=subnets[0]),
        lambda: ec2.delete_security_group(GroupId=group),
    ]
    for refused in refusals:
        with pytest.raises(ClientError) as error:
            refused()
        assert error.value.response["Error"]["Code"] == "DependencyViolation"
    eventually(lambda: refusals[0](), "the gateway detaches once the interfaces are gone")
    assert interfaces() == []
    for allowed in refusals[1:]:
        allowed()
    assert [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]] == [
        subnets[1]
    ]


def test_targets_are_checked_before_healthy_and_drain_when_deregistered(endpoint: tuple[str, str]) -> None:
    kind, url = endpoint
    vpc, subnets = network(url)
    ec2, elb = client(url, "ec2"), client(url, "elbv2")
    instances = ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2)["Instances"]
    first, second = ({"Id": i["InstanceId"]} for i in instances)
    lb = elb.create_load_balancer(Name="lb-hc", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    group = elb.create_target_group(Name="tg-hc", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]
    arn = group["TargetGroupArn"]
    elb.modify_target_group_attributes(
        TargetGroupArn=arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(WINDOW)}]
    )
    elb.register_targets(TargetGroupArn=arn, Targets=[first, second])
    elb.create_listener(
        LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}]
    )
    if kind == "plain":  # moto: healthy at once, and a deregistered target is simply gone
        assert states(elb, arn) == [("healthy", None)] * 2
        elb.deregister_targets(TargetGroupArn=arn, Targets=[first])
        assert states(elb, arn) == [("healthy", None)]
        return
    assert states(elb, arn) == [("initial", "Elb.InitialHealthChecking")] * 2
    assert settled(elb, arn) == [("healthy", None)] * 2
    elb.deregister_targets(TargetGroupArn=arn, Targets=[first])
    assert sorted(states(elb, arn)) == [("draining", "Target.DeregistrationInProgress"), ("healthy", None)]

    def drained() -> None:  # after the group's deregistration delay
        assert states(elb, arn) == [("healthy", None)]

    eventually(drained, "the deregistered target is gone after its delay")


def test_an_instance_type_starts_only_where_it_is_offered(endpoint: tuple[str, str]) -> None:
    kind, url = endpoint
    ec2 = client(url, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    offered, lacking = (
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for i, zone in enumerate(("us-east-1a", "us-east-1e"))
    )

    def launch(subnet: str) -> None:
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.small", SubnetId=subnet)

    launch(offered)
    if kind == "plain":  # moto: any type in any zone
        launch(lacking)
        return
    with pytest.raises(ClientError) as refused:
        launch(lacking)
    assert refused.value.response["Error"]["Code"] == "Unsupported"
    assert "(t3.small) is not supported in your requested Availability Zone (us-east-1e)" in str(refused.value)


def test_aws_managed_policies_can_be_attached(endpoint: tuple[str, str]) -> None:
    kind, url = endpoint
    iam = client(url, "iam")
    iam.create_role(RoleName="ssm", AssumeRolePolicyDocument="{}")
    ssm = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    if kind == "plain":  # moto without its managed policies loaded: no such policy
        with pytest.raises(ClientError) as refused:
            iam.attach_role_policy(RoleName="ssm", PolicyArn=ssm)
        assert refused.value.response["Error"]["Code"] == "NoSuchEntity"
        return
    iam.attach_role_policy(RoleName="ssm", PolicyArn=ssm)
    assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="ssm")["AttachedPolicies"]] == [ssm]


def test_the_account_has_an_on_demand_vcpu_quota(endpoint: tuple[str, str]) -> None:
    kind, url = endpoint
    quotas = client(url, "service-quotas")
    if kind == "plain":  # moto: no EC2 quota at all
        with pytest.raises(ClientError):
            quotas.get_service_quota(ServiceCode="ec2", QuotaCode="L-1216C47A")
        return
    quota = quotas.get_service_quota(ServiceCode="ec2", QuotaCode="L-1216C47A")["Quota"]
    assert (quota["Value"], quota["QuotaName"]) == (
        32.0,
        "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
    )
    vpc = quotas.get_service_quota(ServiceCode="vpc", QuotaCode="L-7E9ECCDB")["Quota"]
    assert vpc["QuotaName"] == "Active VPC peering connections per VPC", "moto's own quotas as before"

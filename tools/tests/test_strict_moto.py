"""The project's AWS emulator (tools/strict_moto.py) refuses what AWS refuses, where moto alone does not.

Each scenario runs against the strict launcher and against plain moto_server, both on a free loopback
port: plain moto shows the leniency (so the check means something), the launcher shows AWS's behaviour.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


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
    env = {
        "MODELFLEET_EMULATOR_ALB_PROVISIONING_SECONDS": "2",
        "MODELFLEET_EMULATOR_IAM_PROPAGATION_SECONDS": "2",
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
        assert states(elb, green) == [("healthy", None)]
        return
    unused = [("unused", "Target.NotInUse")]
    assert states(elb, blue) == states(elb, green) == unused, "no listener: no health check on AWS"

    forward = {"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": blue, "Weight": 100}]}}
    listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=[forward])["Listeners"][
        0
    ]["ListenerArn"]
    assert states(elb, blue) == [("healthy", None)]
    assert states(elb, green) == unused

    # Weight 0 beside the live group: green takes no request but is in use, so AWS checks its health.
    weights = [{"TargetGroupArn": blue, "Weight": 100}, {"TargetGroupArn": green, "Weight": 0}]
    elb.modify_listener(
        ListenerArn=listener, DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": weights}}]
    )
    assert states(elb, green) == [("healthy", None)]

    # A rule forwarding to a group counts as well; a listener that no longer forwards to it does not.
    elb.modify_listener(ListenerArn=listener, DefaultActions=[forward])
    assert states(elb, green) == unused
    elb.create_rule(
        ListenerArn=listener,
        Priority=1,
        Conditions=[{"Field": "path-pattern", "Values": ["/green/*"]}],
        Actions=[{"Type": "forward", "TargetGroupArn": green}],
    )
    assert states(elb, green) == [("healthy", None)]
    elb.delete_listener(ListenerArn=listener)
    assert states(elb, blue) == states(elb, green) == unused


def test_waf_refuses_a_load_balancer_still_provisioning(endpoint: tuple[str, str]) -> None:
    kind, url = endpoint
    _, subnets = network(url)
    elb, waf = client(url, "elbv2"), client(url, "wafv2")
    lb = elb.create_load_balancer(Name="lb-waf", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    acl = waf.create_web_acl(
        Name="acl",
        Scope="REGIONAL",
        DefaultAction={"Allow": {}},
        VisibilityConfig={"SampledRequestsEnabled": False, "CloudWatchMetricsEnabled": False, "MetricName": "acl"},
    )["Summary"]["ARN"]
    described = elb.describe_load_balancers(LoadBalancerArns=[lb])["LoadBalancers"][0]["State"]["Code"]
    if kind == "plain":  # moto: active on the first look, associated at once
        assert described == "active"
        waf.associate_web_acl(WebACLArn=acl, ResourceArn=lb)
        return
    assert described == "provisioning"
    with pytest.raises(ClientError) as refused:
        waf.associate_web_acl(WebACLArn=acl, ResourceArn=lb)
    assert refused.value.response["Error"]["Code"] == "WAFUnavailableEntityException"
    deadline = time.monotonic() + 10
    while elb.describe_load_balancers(LoadBalancerArns=[lb])["LoadBalancers"][0]["State"]["Code"] != "active":
        assert time.monotonic() < deadline, "the load balancer never became active"
        time.sleep(0.2)
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
    time.sleep(2.1)
    launch()
    group("later")

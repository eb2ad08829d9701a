"""tools/aws_smoke.py: the guard, the estimate, the plan and the sweep (the run itself needs a real account)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import aws_smoke


def test_extra_variables_are_key_value_pairs() -> None:
    assert aws_smoke.parse_extra(["modelfleet_aws_smoke_confirm=123456789012", "a = b=c"]) == {
        "modelfleet_aws_smoke_confirm": "123456789012",
        "a": "b=c",
    }
    with pytest.raises(SystemExit, match="takes key=value"):
        aws_smoke.parse_extra(["confirm"])


def test_the_run_needs_the_account_named() -> None:
    assert "run it again with -e modelfleet_aws_smoke_confirm=123456789012" in str(
        aws_smoke.refusal("", "123456789012")
    )
    wrong = aws_smoke.refusal("210987654321", "123456789012")
    assert wrong is not None
    assert "is 210987654321 but the credentials are account 123456789012" in wrong
    assert aws_smoke.refusal("123456789012", "123456789012") is None


def test_estimate_follows_the_settings() -> None:
    single = aws_smoke.estimate({"modelfleet_aws_nat": "single"})
    per_az = aws_smoke.estimate({"modelfleet_aws_nat": "per_az"})
    assert 0.2 < single["run"] < per_az["run"] < 2
    # Left running: about $150 a month with two NAT gateways, most of it NAT, load balancer and hosts.
    assert 130 <= per_az["month"] <= 180
    assert single["month"] < per_az["month"]
    bigger = aws_smoke.estimate({"modelfleet_aws_nat": "per_az", "modelfleet_aws_desired_capacity": 6})
    assert bigger["month"] > per_az["month"] + 4 * 0.0208 * 700


def test_the_plan_runs_a_first_deployment_and_tears_down_twice() -> None:
    plan = aws_smoke.steps("inventories/staging", ["-e", "x=1"])
    assert [name for name, _ in plan] == [
        "upload the model",
        "site",
        "site again (changes nothing)",
        "release under load",
        "rollback",
        "teardown",
        "teardown again (finds nothing)",
    ]
    assert all(args[:2] == ["-i", "inventories/staging"] and "x=1" in args for _, args in plan)
    assert "modelfleet_teardown_confirm=staging" in plan[-1][1]
    assert aws_smoke.recap_changed("localhost : ok=40 changed=0 unreachable=0") == 0
    assert aws_smoke.recap_changed("x\nlocalhost                  : ok=40   changed=3    unreachable=0\n") == 3


@mock_aws
def test_the_sweep_finds_what_carries_the_tags_or_the_names() -> None:
    clients: dict[str, Any] = {
        s: boto3.client(s, region_name="us-east-1") for s in ("ec2", "elbv2", "autoscaling", "iam", "logs", "wafv2")
    }
    tags = {"Project": "modelfleet", "Environment": "staging"}
    assert aws_smoke.leftovers(clients, tags, "modelfleet-staging") == []
    ec2 = clients["ec2"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ours = ec2.create_security_group(
        GroupName="left",
        Description="left",
        VpcId=vpc,
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )["GroupId"]
    ec2.create_security_group(GroupName="other", Description="other", VpcId=vpc)  # untagged: not ours
    clients["iam"].create_role(RoleName="modelfleet-staging-app", AssumeRolePolicyDocument="{}")
    clients["iam"].create_role(RoleName="modelfleet-staging2-app", AssumeRolePolicyDocument="{}")  # another name
    clients["logs"].create_log_group(logGroupName="/modelfleet-staging/vpc-flow-logs")
    assert aws_smoke.leftovers(clients, tags, "modelfleet-staging") == [
        f"security group {ours}",
        "role modelfleet-staging-app",
        "log group /modelfleet-staging/vpc-flow-logs",
    ]

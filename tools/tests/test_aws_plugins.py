"""The AWS provider's plugins: the preflight and naming filters, and the decisions of its modules."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "filter"))
import aws  # noqa: E402


def module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "plugins" / "modules" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


SAFE: dict[str, Any] = {
    "endpoint": "",
    "env_endpoint": "",
    "environment": "prod",
    "https": True,
    "certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
    "vpc_cidr": "10.0.0.0/16",
    "public_cidrs": ["10.0.0.0/24", "10.0.1.0/24"],
    "private_cidrs": ["10.0.10.0/24", "10.0.11.0/24"],
    "alb_ingress_cidrs": ["0.0.0.0/0"],
    "admin_cidrs": ["192.0.2.0/24"],
    "ssh_cidrs": ["192.0.2.10/32"],
    "service_port": 80,
    "metrics_ports": [9100, 9113, 9180],
    "deletion_protection": True,
    "access": "bastion",
    "bastion": "admin@bastion.example.com",
    "key_name": "ops",
    "session_manager_plugin": "/usr/local/bin/session-manager-plugin",
}


def test_preflight_accepts_a_safe_production_setting() -> None:
    assert aws.aws_preflight(SAFE) == []
    assert aws.aws_preflight({**SAFE, "certificate_status": "ISSUED"}) == []
    assert aws.aws_preflight({**SAFE, "region": "us-east-1", "inventory_regions": ["eu-west-1", "us-east-1"]}) == []
    assert aws.aws_preflight({**SAFE, "region": "us-east-1", "inventory_regions": []}) == [], "no regions: every one"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"endpoint": "http://10.1.2.3:5000", "env_endpoint": "http://10.1.2.3:5000"},
            "not on this machine's loopback",
        ),
        ({"endpoint": "https://s3.amazonaws.com", "env_endpoint": "https://s3.amazonaws.com"}, "loopback"),
        ({"env_endpoint": "http://127.0.0.1:5000"}, "would talk to different places"),
        ({"certificate_arn": ""}, "HTTPS is asked for"),
        ({"https": False}, "HTTPS is off"),
        ({"admin_cidrs": ["0.0.0.0/0"]}, "Grafana would be open to the world"),
        ({"ssh_cidrs": ["::/0"]}, "SSH would be open to the world"),
        # The world without a /0: judged by the public addresses of the union, not by prefix length.
        ({"admin_cidrs": ["0.0.0.0/1", "128.0.0.0/1"]}, "open them to 3,702,258,688 public IPv4 addresses"),
        ({"admin_cidrs": [f"{i}.0.0.0/2" for i in (0, 64, 128, 192)]}, "Grafana would be open to the world"),
        ({"admin_cidrs": ["44.0.0.0/7"]}, "33,554,432 public IPv4 addresses (more than a /8"),
        ({"ssh_cidrs": ["::/1"]}, "SSH would be open to the world"),
        ({"ssh_cidrs": ["2a00::/31"]}, "public IPv6 addresses (more than a /32"),
        (
            {"builder_connection": "ssh", "builder_cidrs": ["0.0.0.0/1", "128.0.0.0/1"]},
            "builder's SSH would be open to the world",
        ),
        # Prod serves HTTPS only, with an ACM certificate of the load balancer's region.
        ({"https": False, "certificate_arn": ""}, "prod serves HTTPS only: set modelfleet_aws_https: true"),
        ({"region": "eu-west-1"}, "the certificate is in us-east-1 but the load balancer in eu-west-1"),
        ({"certificate_arn": "arn:aws:acm:us-east-1:12345:certificate/abc"}, "not an ACM certificate ARN"),
        ({"certificate_arn": "arn:aws:iam::123456789012:server-certificate/abc"}, "not an ACM certificate ARN"),
        ({"certificate_arn": "arn:aws:acm:us-east-1:123456789012:abc"}, "not an ACM certificate ARN"),
        ({"certificate_arn": "acm:us-east-1:123456789012:certificate/abc"}, "not an ACM certificate ARN"),
        ({"inventory_regions": ["eu-west-1"]}, "but the inventory's aws_ec2.yml lists eu-west-1"),
        ({"certificate_status": "PENDING_VALIDATION"}, "is PENDING_VALIDATION, not ISSUED"),
        ({"certificate_status": "EXPIRED"}, "is EXPIRED, not ISSUED"),
        ({"certificate_status": ""}, "is not in ACM in this region"),
        ({"certificate_status": "unreadable: AccessDenied"}, "ACM could not be asked about the certificate"),
        ({"admin_cidrs": ["10.0.0.1/16"]}, "not a network address"),
        ({"public_cidrs": ["10.0.0.0/24"], "private_cidrs": ["10.0.10.0/24"]}, "two AZs or more"),
        ({"private_cidrs": ["10.0.10.0/24", "10.0.0.0/23"]}, "overlap"),
        ({"private_cidrs": ["10.0.10.0/24", "10.9.0.0/24"]}, "is not inside the VPC"),
        ({"metrics_ports": [80, 9100]}, "also a metrics port"),
        ({"deletion_protection": False}, "deletion protection"),
        ({"bastion": ""}, "no bastion is given"),
        ({"key_name": ""}, "the instances get no key pair"),
        ({"access": "ssm", "session_manager_plugin": ""}, "session-manager-plugin is not installed"),
        ({"access": "telnet"}, "must be ssm or bastion"),
        ({"builder_connection": "ssh", "builder_cidrs": []}, "give the controller's address"),
        ({"builder_connection": "ssh", "builder_cidrs": ["0.0.0.0/0"]}, "builder's SSH would be open to the world"),
        ({"builder_connection": "docker"}, "against an emulator only"),
        ({"builder_connection": "winrm"}, "must be ssh or docker"),
    ],
)
def test_preflight_names_each_unsafe_setting(change: dict[str, Any], problem: str) -> None:
    problems = aws.aws_preflight({**SAFE, **change})
    assert any(problem in p for p in problems), problems


def test_preflight_allows_the_emulator_on_loopback_only() -> None:
    local = {"endpoint": "http://127.0.0.1:5000", "env_endpoint": "http://127.0.0.1:5000", "bastion": ""}
    assert aws.aws_preflight({**SAFE, **local, "emulated": True}) == []
    # No instance boots on an emulator: no key pair, no Session Manager plugin needed.
    unreachable = {"key_name": "", "session_manager_plugin": ""}
    assert aws.aws_preflight({**SAFE, **local, **unreachable, "emulated": True}) == []
    assert aws.aws_preflight({**SAFE, **local, **unreachable, "emulated": True, "access": "ssm"}) == []
    assert aws.aws_preflight({**SAFE, "access": "ssm", "key_name": ""}) == [], "ssm needs no key pair"
    assert aws.aws_preflight({**SAFE, **local, "emulated": True, "builder_connection": "docker"}) == []
    assert aws.aws_preflight({**SAFE, "builder_connection": "ssh", "builder_cidrs": ["203.0.113.7/32"]}) == []
    assert aws.is_loopback_url("http://localhost:5000")
    assert aws.is_loopback_url("http://[::1]:5000")
    assert not aws.is_loopback_url("http://127.0.0.1.example.com:5000")
    assert not aws.is_loopback_url("ftp://127.0.0.1/")


def test_preflight_allows_small_or_private_address_space() -> None:
    """Up to a /8's worth of public IPv4 (a /32's of IPv6), and any amount of private space."""
    for admin in (
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"],
        ["44.0.0.0/8"],  # exactly the bound
        ["44.0.0.0/9", "44.128.0.0/9", "44.0.0.0/10"],  # overlaps count once: still one /8
        ["44.0.0.0/9"],
        ["2a00::/32", "2a00:0:1::/48", "fe80::/10"],
    ):
        assert aws.aws_preflight({**SAFE, "admin_cidrs": admin, "ssh_cidrs": admin}) == [], admin
    assert aws.aws_preflight({**SAFE, "builder_connection": "ssh", "builder_cidrs": ["44.0.0.0/8"]}) == []
    assert aws.public_addresses([aws.ipaddress.ip_network("0.0.0.0/1"), aws.ipaddress.ip_network("128.0.0.0/1")]) == (
        aws.public_addresses([aws.ipaddress.ip_network("0.0.0.0/0")])
    )
    assert aws.public_addresses([aws.ipaddress.ip_network("44.0.0.0/7")]) == {4: 2**25, 6: 0}


def test_preflight_asks_prod_on_aws_only_for_https() -> None:
    plain = {"https": False, "certificate_arn": ""}
    assert aws.aws_preflight({**SAFE, **plain, "environment": "staging"}) == []
    emulated = {"endpoint": "http://127.0.0.1:5000", "env_endpoint": "http://127.0.0.1:5000", "emulated": True}
    assert aws.aws_preflight({**SAFE, **plain, **emulated}) == [], "the emulated suite builds prod over HTTP"
    assert aws.aws_preflight({**SAFE, "region": "us-east-1"}) == []
    gov = "arn:aws-us-gov:acm:us-gov-west-1:123456789012:certificate/0f2a6c1e-8d3b-4c2a-9e1f-3b5d7a9c1e2f"
    assert aws.aws_preflight({**SAFE, "certificate_arn": gov, "region": "us-gov-west-1"}) == []


def example_vault() -> dict[str, str]:
    """The example vault's secrets (the tests' fixture), decrypted with its documented password."""
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    password = (ROOT / "molecule" / "shared" / "example-vault-password").read_bytes().strip()
    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password))])
    path = ROOT / "molecule" / "shared" / "example-vault.yml"
    return yaml.safe_load(vault.decrypt(path.read_bytes()))


SECRETS = {
    "grafana_admin_password": "the Grafana admin password",
    "alertmanager_slack_api_url": "Alertmanager's Slack webhook URL",
    "alertmanager_smtp_password": "Alertmanager's SMTP password",
    "alertmanager_pager_webhook_url": "Alertmanager's pager webhook URL",
    "alertmanager_pager_token": "Alertmanager's pager token",
}


def test_preflight_refuses_the_example_vaults_secrets_outside_the_emulator() -> None:
    example = example_vault()
    emulated = {"endpoint": "http://127.0.0.1:5000", "env_endpoint": "http://127.0.0.1:5000", "emulated": True}
    for key, name in SECRETS.items():
        secrets = {k: f"own-{k}" for k in SECRETS} | {key: example[f"vault_{key}"]}
        assert aws.aws_preflight({**SAFE, "secrets": secrets}) == [
            f"{name} is the example vault's: create your own vault "
            "(ansible-vault create inventories/prod/group_vars/monitoring/vault.yml) before prod"
        ]
        assert aws.aws_preflight({**SAFE, **emulated, "secrets": secrets}) == []
    everything = {k: example[f"vault_{k}"] for k in SECRETS}
    [problem] = aws.aws_preflight({**SAFE, "secrets": everything})
    assert problem.startswith(f"{', '.join(list(SECRETS.values())[:-1])} and {list(SECRETS.values())[-1]} are the")
    # Other secrets, and the example's non-secret settings (its SMTP user) pass.
    assert aws.aws_preflight({**SAFE, "secrets": {k: f"own-{k}" for k in SECRETS}}) == []
    assert aws.aws_preflight({**SAFE, "secrets": {"smtp_username": example["vault_alertmanager_smtp_username"]}}) == []
    source = (ROOT / "plugins" / "filter" / "aws.py").read_text()
    assert not [k for k in SECRETS if example[f"vault_{k}"] in source], "digests only, never the secrets"


def test_preflight_refuses_an_inventory_without_its_own_secrets() -> None:
    # The example vault is a test fixture: an inventory without a vault of its own has no secrets at all.
    unset = dict.fromkeys(SECRETS, "") | {"grafana_admin_password": "own-password"}
    unset["alertmanager_pager_token"] = "CHANGE-ME"  # copied from the template, not filled in
    where = "inventories/staging/group_vars/monitoring/vault.yml"
    assert aws.aws_preflight({**SAFE, "environment": "staging", "secrets": unset}) == [
        f"the monitoring tier's secrets are not set ({', '.join(list(SECRETS.values())[1:])}): copy {where}.example "
        f"to {where}, fill it in and encrypt it (ansible-vault encrypt {where})"
    ]
    emulated = {"endpoint": "http://127.0.0.1:5000", "env_endpoint": "http://127.0.0.1:5000", "emulated": True}
    assert aws.aws_preflight({**SAFE, **emulated, "secrets": unset}) == [], "the emulated runs need no vault"
    assert aws.aws_preflight({**SAFE, "secrets": None}) == [], "not read (no vault password): not judged here"
    assert aws.aws_preflight({**SAFE, "secrets": {k: f"own-{k}" for k in SECRETS}}) == []
    # The mail settings are checked for being set as well: Alertmanager cannot send without them.
    mail = {k: f"own-{k}" for k in SECRETS} | {"alertmanager_smtp_smarthost": "CHANGE-ME smtp.example.com:587"}
    [problem] = aws.aws_preflight({**SAFE, "secrets": mail})
    assert problem.startswith("the monitoring tier's secrets are not set (Alertmanager's SMTP server): "), problem


def test_the_example_vault_is_a_test_fixture_not_an_inventorys() -> None:
    for environment in ("prod", "staging"):
        monitoring = ROOT / "inventories" / environment / "group_vars" / "monitoring"
        assert not (monitoring / "vault.yml").exists(), f"{environment} must bring its own vault"
        example = yaml.safe_load((monitoring / "vault.yml.example").read_text())
        assert sorted(example) == sorted(example_vault()), "the template lists every secret the fixture has"
        assert all(str(value).startswith("CHANGE-ME") for value in example.values())


def test_release_names_are_stable_short_and_distinct() -> None:
    one = aws.aws_release_name("modelfleet-prod", "1.0.0-0123abcd")
    assert one == aws.aws_release_name("modelfleet-prod", "1.0.0-0123abcd")
    assert one != aws.aws_release_name("modelfleet-prod", "1.0.1-0123abcd")
    assert len(aws.aws_release_name("modelfleet-staging", "x" * 200)) <= 32
    with pytest.raises(ValueError, match="longer than 32"):
        aws.aws_release_name("modelfleet-a-very-long-environment", "1.0.0")
    with pytest.raises(ValueError, match="release label"):
        aws.aws_release_name("modelfleet-prod", "")


def forward(*weights: tuple[str, int]) -> dict[str, Any]:
    groups = [{"TargetGroupArn": arn, "Weight": weight} for arn, weight in weights]
    return {"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}


def _load_balancer_with_blue_and_green() -> tuple[Any, str, str, str]:
    """An ALB in two subnets and two target groups (inside mock_aws): the ELBv2 client and their ARNs."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"][
            "SubnetId"
        ]
        for i, az in enumerate("ab")
    ]
    elb = boto3.client("elbv2", region_name="us-east-1")
    lb = elb.create_load_balancer(Name="lb", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    blue, green = (
        elb.create_target_group(Name=n, Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]["TargetGroupArn"]
        for n in ("blue", "green")
    )
    return elb, lb, blue, green


@mock_aws
def test_listener_weights_are_compared_with_what_the_api_reports() -> None:
    listeners = module("alb_listeners")
    elb, lb, blue, green = _load_balancer_with_blue_and_green()
    wanted = [{"Protocol": "HTTP", "Port": 80, "DefaultActions": [forward((blue, 90), (green, 10))]}]
    assert listeners.plan([], wanted, purge=True) == [("create", 80, wanted[0])]
    elb.create_listener(LoadBalancerArn=lb, **listeners.api_form(wanted[0]))
    current = elb.describe_listeners(LoadBalancerArn=lb)["Listeners"]
    assert listeners.plan(current, wanted, purge=True) == [], "the same split is left alone"
    shifted = [{**wanted[0], "DefaultActions": [forward((blue, 0), (green, 100))]}]
    assert listeners.plan(current, shifted, purge=True) == [("modify", 80, shifted[0])]
    # One target group takes everything whatever its weight is called.
    alone = [{**wanted[0], "DefaultActions": [{"Type": "forward", "TargetGroupArn": blue}]}]
    elb.modify_listener(ListenerArn=current[0]["ListenerArn"], DefaultActions=[forward((blue, 100))])
    current = elb.describe_listeners(LoadBalancerArn=lb)["Listeners"]
    assert listeners.plan(current, alone, purge=True) == []
    # Ports not asked for are deleted only with purge.
    https = {"Protocol": "HTTPS", "Port": 443, "Certificates": [{"CertificateArn": "arn:c"}], "SslPolicy": "p"}
    assert listeners.plan(current, [{**https, "DefaultActions": alone[0]["DefaultActions"]}], purge=False) == [
        ("create", 443, {**https, "DefaultActions": alone[0]["DefaultActions"]})
    ]
    assert [s[:2] for s in listeners.plan(current, [], purge=True)] == [("delete", 80)]


def test_alarm_comparison_ignores_what_the_api_adds_and_sees_metric_changes() -> None:
    alarm = module("cloudwatch_alarm")
    wanted = {
        "AlarmName": "a",
        "Threshold": 0.05,
        "Metrics": [{"Id": "ratio", "Expression": "errors / requests", "ReturnData": True}],
    }
    reported = {
        "AlarmName": "a",
        "AlarmArn": "arn:x",
        "Threshold": 0.05,
        "StateValue": "OK",
        "Metrics": [{"Id": "ratio", "Expression": "errors / requests", "ReturnData": True, "Period": 60}],
    }
    assert alarm.differences(reported, wanted) == []
    assert alarm.differences(None, wanted) == ["AlarmName", "Metrics", "Threshold"]
    changed = {**wanted, "Metrics": [{"Id": "ratio", "Expression": "errors / (requests + 1)", "ReturnData": True}]}
    assert alarm.differences(reported, changed) == ["Metrics"]
    assert alarm.differences({**reported, "Threshold": 5}, {**wanted, "Threshold": 5.0}) == []
    assert not alarm.covers(1, True), "a boolean is not a number"


def test_attribute_values_are_compared_in_the_apis_string_form() -> None:
    attributes = module("elb_attributes")
    current = {"idle_timeout.timeout_seconds": "60", "deletion_protection.enabled": "false"}
    wanted = {"idle_timeout.timeout_seconds": 60, "deletion_protection.enabled": True, "routing.http2.enabled": True}
    assert attributes.differing(current, wanted) == {
        "deletion_protection.enabled": "true",
        "routing.http2.enabled": "true",
    }


def test_flow_log_plan_replaces_a_flow_log_with_other_settings() -> None:
    flow = module("vpc_flow_log")
    params = {"log_group": "/g", "role_arn": "arn:role", "traffic_type": "ALL", "state": "present"}
    good = {"FlowLogId": "fl-1", "LogGroupName": "/g", "DeliverLogsPermissionArn": "arn:role", "TrafficType": "ALL"}
    stale = {**good, "FlowLogId": "fl-2", "TrafficType": "REJECT"}
    other = {**good, "FlowLogId": "fl-3", "LogGroupName": "/elsewhere"}
    assert flow.plan([good, other], params) == ([], False)
    assert flow.plan([stale], params) == (["fl-2"], True)
    assert flow.plan([good, good | {"FlowLogId": "fl-4"}], params) == (["fl-4"], False)
    assert flow.plan([good, other], {**params, "state": "absent"}) == (["fl-1"], False)


def test_flow_log_refusals_are_read_from_a_successful_answer() -> None:
    # CreateFlowLogs answers 200 and lists what it refused (for example a role it may not pass).
    flow = module("vpc_flow_log")
    refused = {
        "FlowLogIds": [],
        "Unsuccessful": [
            {"ResourceId": "vpc-1", "Error": {"Code": "AccessDenied", "Message": "cannot assume the role"}}
        ],
    }
    assert flow.refusals(refused) == ["vpc-1: AccessDenied cannot assume the role"]
    assert flow.refusals({"FlowLogIds": ["fl-1"], "Unsuccessful": []}) == []
    assert flow.refusals({"FlowLogIds": ["fl-1"]}) == []


def test_waf_association_decisions() -> None:
    waf = module("wafv2_association")
    assert waf.decide(None, "arn:acl", "present") == (False, True)
    assert waf.decide("arn:acl", "arn:acl", "present") == (False, False)
    assert waf.decide("arn:old", "arn:acl", "present") == (True, True)
    assert waf.decide("arn:acl", None, "absent") == (True, False)
    assert waf.decide(None, None, "absent") == (False, False)


def test_alb_forwards_reads_the_weighted_forward_and_skips_the_redirect() -> None:
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{}/0123456789abcdef"
    groups = [
        {"target_group_arn": arn.format("modelfleet-prod-aaaaaaaa"), "target_group_name": "modelfleet-prod-aaaaaaaa"},
        {"target_group_arn": arn.format("modelfleet-prod-bbbbbbbb"), "target_group_name": "modelfleet-prod-bbbbbbbb"},
    ]
    redirect = {"port": 80, "default_actions": [{"type": "redirect", "redirect_config": {"protocol": "HTTPS"}}]}
    weighted = {
        "port": 443,
        "default_actions": [
            {
                "type": "forward",
                "forward_config": {
                    "target_groups": [
                        {"target_group_arn": groups[0]["target_group_arn"], "weight": 9},
                        {"target_group_arn": groups[1]["target_group_arn"], "weight": 1},
                    ]
                },
            }
        ],
    }
    assert aws.alb_forwards([redirect, weighted], groups) == [
        {"name": "modelfleet-prod-aaaaaaaa", "arn": groups[0]["target_group_arn"], "weight": 90},
        {"name": "modelfleet-prod-bbbbbbbb", "arn": groups[1]["target_group_arn"], "weight": 10},
    ]
    # A plain forward (no forward_config) is the whole share; no forwarding listener is nothing served.
    plain = {"port": 80, "default_actions": [{"type": "forward", "target_group_arn": groups[1]["target_group_arn"]}]}
    assert aws.alb_forwards([plain], groups) == [
        {"name": "modelfleet-prod-bbbbbbbb", "arn": groups[1]["target_group_arn"], "weight": 100}
    ]
    assert aws.alb_forwards([redirect], groups) == []
    assert aws.alb_forwards([], []) == []


def test_alb_attach_puts_a_release_on_the_listener_without_a_request() -> None:
    blue, green, old = (f"arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/{n}/0" for n in ("b", "g", "o"))
    live = [{"name": "b", "arn": blue, "weight": 100}]
    # Beside the live release at weight 0: on the listener (health-checked on AWS), no request yet.
    assert aws.alb_attach(live, green) == [
        {"target_group_arn": blue, "weight": 100},
        {"target_group_arn": green, "weight": 0},
    ]
    # Nothing served: the first release takes everything.
    assert aws.alb_attach([], green) == [{"target_group_arn": green, "weight": 100}]
    # Already on it (a re-run, an interrupted canary): the split is left as it is.
    canary = [{"name": "b", "arn": blue, "weight": 90}, {"name": "g", "arn": green, "weight": 10}]
    assert aws.alb_attach(canary, green) == [
        {"target_group_arn": blue, "weight": 90},
        {"target_group_arn": green, "weight": 10},
    ]
    assert aws.alb_attach([{"name": "g", "arn": green, "weight": 100}], green) == [
        {"target_group_arn": green, "weight": 100}
    ]
    # Another release left at weight 0 stays until the retirement; the new one joins it.
    assert aws.alb_attach([*live, {"name": "o", "arn": old, "weight": 0}], green)[-1] == {
        "target_group_arn": green,
        "weight": 0,
    }


@mock_aws
def test_a_weight_of_zero_is_a_forward_the_api_and_the_module_keep() -> None:
    listeners = module("alb_listeners")
    elb, lb, blue, green = _load_balancer_with_blue_and_green()
    attached = [{"Protocol": "HTTP", "Port": 80, "DefaultActions": [forward((blue, 100), (green, 0))]}]
    elb.create_listener(
        LoadBalancerArn=lb, **listeners.api_form({**attached[0], "DefaultActions": [forward((blue, 100))]})
    )
    current = elb.describe_listeners(LoadBalancerArn=lb)["Listeners"]
    assert listeners.plan(current, attached, purge=True) == [("modify", 80, attached[0])], "joining at 0 is a change"
    elb.modify_listener(ListenerArn=current[0]["ListenerArn"], **listeners.api_form(attached[0]))
    current = elb.describe_listeners(LoadBalancerArn=lb)["Listeners"]
    groups = current[0]["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    assert sorted((g["TargetGroupArn"], g["Weight"]) for g in groups) == sorted([(blue, 100), (green, 0)])
    assert listeners.plan(current, attached, purge=True) == [], "and a re-run leaves it alone"
    described = [
        {
            "port": 80,
            "default_actions": [
                {
                    "type": "forward",
                    "forward_config": {
                        "target_groups": [
                            {"target_group_arn": g["TargetGroupArn"], "weight": g["Weight"]} for g in groups
                        ]
                    },
                }
            ],
        }
    ]
    names = [
        {"target_group_arn": blue, "target_group_name": "blue"},
        {"target_group_arn": green, "target_group_name": "green"},
    ]
    assert aws.alb_forwards(described, names) == [
        {"name": "blue", "arn": blue, "weight": 100},
        {"name": "green", "arn": green, "weight": 0},
    ]


class _Waf:
    """A WAF client answering AssociateWebACL with the given error codes, then success."""

    def __init__(self, *codes: str) -> None:
        self.codes = list(codes)
        self.calls = 0

    def associate_web_acl(self, **_: str) -> None:
        from botocore.exceptions import ClientError

        self.calls += 1
        if self.codes:
            code = self.codes.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": code}}, "AssociateWebACL")


def test_waf_association_retries_only_while_the_resource_is_unavailable() -> None:
    waf = module("wafv2_association")
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    unavailable = "WAFUnavailableEntityException"
    client = _Waf(unavailable, unavailable)
    assert waf.associate_retrying(client, "arn:acl", "arn:lb", 60, sleep, lambda: now[0]) == 2
    assert (client.calls, now[0]) == (3, 10.0)
    # Bounded: still unavailable after the timeout is a failure that says why.
    now[0] = 0.0
    client = _Waf(*[unavailable] * 100)
    with pytest.raises(waf.StillUnavailable, match="still answers WAFUnavailableEntityException for arn:lb"):
        waf.associate_retrying(client, "arn:acl", "arn:lb", 30, sleep, lambda: now[0])
    assert (client.calls, now[0]) == (7, 30.0), "a try every 5 s, none after the timeout"
    # Any other error at once.
    from botocore.exceptions import ClientError

    client = _Waf("WAFNonexistentItemException")
    with pytest.raises(ClientError):
        waf.associate_retrying(client, "arn:acl", "arn:lb", 60, sleep, lambda: now[0])
    assert client.calls == 1


def test_operating_an_existing_stack_checks_only_where_the_calls_go() -> None:
    # A prod stack built over HTTP before the HTTPS rule can still be rolled back and torn down.
    old = {**SAFE, "https": False, "certificate_arn": "", "admin_cidrs": ["0.0.0.0/0"]}
    assert aws.aws_preflight(old)
    assert aws.aws_preflight({**old, "purpose": "operate"}) == []
    wrong_place = {**old, "purpose": "operate", "endpoint": "http://203.0.113.5:5000"}
    assert any("not on this machine's loopback" in p for p in aws.aws_preflight(wrong_place))


def test_alb_promote_gives_the_release_everything_and_keeps_the_others_on_to_drain() -> None:
    blue, green, old = (f"arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/{n}/0" for n in ("b", "g", "o"))
    canary = [{"name": "b", "arn": blue, "weight": 50}, {"name": "g", "arn": green, "weight": 50}]
    assert aws.alb_promote(canary, green) == [
        {"target_group_arn": green, "weight": 100},
        {"target_group_arn": blue, "weight": 0},
    ]
    # Every other group, also one already at weight 0; the release's own group only once.
    assert aws.alb_promote([*canary, {"name": "o", "arn": old, "weight": 0}], green) == [
        {"target_group_arn": green, "weight": 100},
        {"target_group_arn": blue, "weight": 0},
        {"target_group_arn": old, "weight": 0},
    ]
    # Nothing else served (the first release, a re-run after the promotion): the release alone.
    assert aws.alb_promote([], green) == [{"target_group_arn": green, "weight": 100}]
    assert aws.alb_promote([{"name": "g", "arn": green, "weight": 100}], green) == [
        {"target_group_arn": green, "weight": 100}
    ]


def test_zones_are_chosen_by_what_they_offer() -> None:
    zones = module("ec2_type_zones")
    offerings = [("t3.small", "us-east-1a"), ("t3.small", "us-east-1c"), ("m5.large", "us-east-1a")]
    offerings += [("m5.large", "us-east-1c"), ("m5.large", "us-east-1e")]
    available = ["us-east-1e", "us-east-1c", "us-east-1a", "us-east-1b"]
    assert zones.zones_offering(available, offerings, ["t3.small"]) == (
        ["us-east-1a", "us-east-1c"],
        {"us-east-1b": ["t3.small"], "us-east-1e": ["t3.small"]},
    )
    # Every type in each zone: us-east-1e offers m5.large only, us-east-1b neither.
    assert zones.zones_offering(available, offerings, ["m5.large", "t3.small", "t3.small"])[0] == [
        "us-east-1a",
        "us-east-1c",
    ]
    assert zones.zones_offering(available, [], ["t3.small"])[0] == []


@mock_aws
def test_zones_offering_read_from_the_api_leave_out_a_zone_without_the_type() -> None:
    # moto carries AWS' offerings: in us-east-1, us-east-1e offers no t3.small.
    zones = module("ec2_type_zones")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    available = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["t3.small"]}]
    )
    offerings = [(o["InstanceType"], o["Location"]) for p in pages for o in p["InstanceTypeOfferings"]]
    chosen, lacking = zones.zones_offering(available, offerings, ["t3.small"])
    assert "us-east-1e" in available
    assert "us-east-1e" not in chosen
    assert lacking["us-east-1e"] == ["t3.small"]
    assert chosen[:2] == ["us-east-1a", "us-east-1b"]


def test_a_bucket_name_is_ours_free_or_another_accounts() -> None:
    owner = module("s3_bucket_owner")
    assert owner.owner_of("mine", ["mine", "other"], 200) == "ours"
    assert owner.owner_of("free", ["mine"], 404) == "nobody"
    assert owner.owner_of("taken", ["mine"], 403) == "another account"
    assert owner.owner_of("taken", ["mine"], 200) == "another account", "answered, but not listed as ours"
    assert owner.owner_of("elsewhere", [], 301) == "another account"
    # With the setting named, another account's name is refused, naming it; otherwise the module only answers.
    message = owner.refusal("taken", "another account", "aws_alb_access_logs_bucket")
    assert "the bucket name taken belongs to another AWS account" in message
    assert "(aws_alb_access_logs_bucket;" in message
    assert "Nothing was created" not in message  # said only where it is true (note=)
    assert owner.refusal("taken", "another account", "modelfleet_artifact_bucket", "Nothing was created.").endswith(
        "in it). Nothing was created."
    )
    assert owner.refusal("taken", "another account", None) == ""
    assert owner.refusal("mine", "ours", "aws_alb_access_logs_bucket") == ""
    assert owner.refusal("free", "nobody", "aws_alb_access_logs_bucket") == ""


def test_vcpu_headroom_counts_the_standard_families_only() -> None:
    headroom = module("ec2_vcpu_headroom")
    vcpus = {"t3.small": 2, "m5.xlarge": 4, "g4dn.xlarge": 4, "p3.2xlarge": 8}
    running = [("t3.small", 3), ("m5.xlarge", 1), ("g4dn.xlarge", 2), ("p3.2xlarge", 1)]
    assert headroom.vcpus_of(running, vcpus) == 3 * 2 + 4, "G and P instances have quotas of their own"
    assert headroom.headroom(32, 10, 22)
    assert not headroom.headroom(32, 10, 24)
    assert headroom.headroom(None, 10, 1000), "an unknown quota is not a refusal (a warning says so)"


def test_waf_logging_is_compared_by_destination_and_redacted_headers() -> None:
    logging = module("wafv2_logging")
    asked = logging.wanted("arn:acl", "arn:logs:aws-waf-logs-x", ["Cookie", "authorization", "cookie"])
    assert asked == {
        "ResourceArn": "arn:acl",
        "LogDestinationConfigs": ["arn:logs:aws-waf-logs-x"],
        "RedactedFields": [{"SingleHeader": {"Name": "authorization"}}, {"SingleHeader": {"Name": "cookie"}}],
    }
    current = {**asked, "ManagedByFirewallManager": False, "RedactedFields": asked["RedactedFields"][::-1]}
    assert logging.same(current, asked), "what AWS adds, and the order of the headers, do not matter"
    assert not logging.same(None, asked)
    assert not logging.same({**current, "LogDestinationConfigs": ["arn:logs:aws-waf-logs-y"]}, asked)
    assert not logging.same({**current, "RedactedFields": []}, asked)


# The release record read from the model bucket in one call (release_records).
@pytest.fixture
def records_bucket():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="models")
        yield client


def put_record(client, key: str, body: dict | str) -> None:
    client.put_object(Bucket="models", Key=key, Body=body if isinstance(body, str) else json.dumps(body))


def test_the_newest_entries_are_read_oldest_first_and_nothing_else(records_bucket) -> None:
    for n in (3, 1, 2, 4):  # written out of order: the keys' time orders them
        put_record(records_bucket, f"releases/2026120{n}T000000-img.json", {"n": n})
    put_record(records_bucket, "releases/notes.txt", "not an entry")
    put_record(records_bucket, "releases/.json", "{}")
    put_record(records_bucket, "lease.json", {"holder": "x"})
    keys, read = module("release_records").read_records(records_bucket, "models", "releases/", 3)
    assert [entry["n"] for entry in read] == [2, 3, 4]
    assert keys == [f"releases/2026120{n}T000000-img.json" for n in (2, 3, 4)]
    _, every = module("release_records").read_records(records_bucket, "models", "releases/", 0)
    assert [entry["n"] for entry in every] == [1, 2, 3, 4]


def test_a_record_longer_than_a_listing_page_is_read_to_its_end(records_bucket) -> None:
    for n in range(7):
        put_record(records_bucket, f"releases/{n:04d}.json", {"n": n})
    keys, read = module("release_records").read_records(records_bucket, "models", "releases/", 5, page_size=2)
    assert [entry["n"] for entry in read] == [2, 3, 4, 5, 6]
    assert len(keys) == 5


def test_a_bucket_that_does_not_exist_yet_holds_no_record(records_bucket) -> None:
    assert module("release_records").read_records(records_bucket, "not-made-yet", "releases/", 50) == ([], [])


def test_an_entry_that_is_not_json_is_an_error_not_a_silent_gap(records_bucket) -> None:
    put_record(records_bucket, "releases/0001.json", "{not json")
    with pytest.raises(json.JSONDecodeError, match="Expecting property name"):
        module("release_records").read_records(records_bucket, "models", "releases/", 50)

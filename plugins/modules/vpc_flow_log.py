#!/usr/bin/python
"""Ansible module: one VPC flow log to a CloudWatch Logs group, present or absent."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vpc_flow_log
short_description: Ensure a VPC's flow log to a CloudWatch Logs group
description:
  - >-
    Keeps exactly one flow log of O(vpc_id) that delivers to the CloudWatch Logs group O(log_group),
    with the IAM role O(role_arn) and the traffic type O(traffic_type); a flow log of the VPC to the same
    group with other settings is replaced (flow logs cannot be modified in place).
  - Neither amazon.aws nor community.aws has a module for VPC flow logs.
version_added: "0.4.0"
author: modelfleet
options:
  vpc_id:
    description: The VPC.
    type: str
    required: true
  log_group:
    description: Name of the CloudWatch Logs group (create it first, with its retention).
    type: str
    required: true
  role_arn:
    description: IAM role that VPC Flow Logs assumes to write to the group. Required with O(state=present).
    type: str
  traffic_type:
    description: Which traffic to log.
    type: str
    choices: [ACCEPT, REJECT, ALL]
    default: ALL
  tags:
    description: Tags of the flow log.
    type: dict
    default: {}
  state:
    description: Whether the flow log exists.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Log every packet decision of the VPC
  modelfleet.fleet.vpc_flow_log:
    vpc_id: "{{ vpc.id }}"
    log_group: /modelfleet/prod/vpc-flow-logs
    role_arn: "{{ flow_logs_role.arn }}"
"""

RETURN = r"""
flow_log_id:
  description: Id of the flow log (absent when O(state=absent)).
  returned: when present
  type: str
"""

import contextlib
from typing import Any

with contextlib.suppress(ImportError):  # AnsibleAWSModule says what is missing
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def matches(flow_log: dict[str, Any], log_group: str, role_arn: str | None, traffic_type: str) -> bool:
    """Whether an existing flow log already is the one asked for."""
    return (
        flow_log.get("LogDestinationType", "cloud-watch-logs") == "cloud-watch-logs"
        and flow_log.get("LogGroupName") == log_group
        and (role_arn is None or flow_log.get("DeliverLogsPermissionArn") == role_arn)
        and flow_log.get("TrafficType") == traffic_type
    )


def plan(existing: list[dict[str, Any]], params: dict[str, Any]) -> tuple[list[str], bool]:
    """Flow log ids to delete, and whether one must be created."""
    to_group = [f for f in existing if f.get("LogGroupName") == params["log_group"]]
    if params["state"] == "absent":
        return [f["FlowLogId"] for f in to_group], False
    keep = [f for f in to_group if matches(f, params["log_group"], params["role_arn"], params["traffic_type"])]
    stale = [f["FlowLogId"] for f in to_group if f not in keep[:1]]
    return stale, not keep


def refusals(answer: dict[str, Any]) -> list[str]:
    """What CreateFlowLogs or DeleteFlowLogs refused: they answer 200 and list refusals in ``Unsuccessful``."""
    refused = []
    for item in answer.get("Unsuccessful") or []:
        error = item.get("Error") or {}
        refused.append(f"{item.get('ResourceId', '?')}: {error.get('Code', '?')} {error.get('Message', '')}".strip())
    return refused


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "vpc_id": {"type": "str", "required": True},
            "log_group": {"type": "str", "required": True},
            "role_arn": {"type": "str"},
            "traffic_type": {"type": "str", "choices": ["ACCEPT", "REJECT", "ALL"], "default": "ALL"},
            "tags": {"type": "dict", "default": {}},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        required_if=[("state", "present", ["role_arn"])],
        supports_check_mode=True,
    )
    params = module.params
    ec2 = module.client("ec2")
    try:
        existing = ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [params["vpc_id"]]}])["FlowLogs"]
        delete, create = plan(existing, params)
        changed = bool(delete) or create
        flow_log_id = next((f["FlowLogId"] for f in existing if f["FlowLogId"] not in delete), None)
        if changed and not module.check_mode:
            if delete and (refused := refusals(ec2.delete_flow_logs(FlowLogIds=delete))):
                module.fail_json(msg=f"AWS refused to delete the flow log of {params['vpc_id']}: {'; '.join(refused)}")
            if create:
                spec: dict[str, Any] = {
                    "ResourceIds": [params["vpc_id"]],
                    "ResourceType": "VPC",
                    "TrafficType": params["traffic_type"],
                    "LogDestinationType": "cloud-watch-logs",
                    "LogGroupName": params["log_group"],
                    "DeliverLogsPermissionArn": params["role_arn"],
                }
                if params["tags"]:
                    tags = [{"Key": k, "Value": str(v)} for k, v in sorted(params["tags"].items())]
                    spec["TagSpecifications"] = [{"ResourceType": "vpc-flow-log", "Tags": tags}]
                answer = ec2.create_flow_logs(**spec)
                if refusals(answer) or not answer.get("FlowLogIds"):
                    module.fail_json(
                        msg=f"AWS refused the flow log of {params['vpc_id']}: "
                        + ("; ".join(refusals(answer)) or "no flow log was created")
                    )
                flow_log_id = answer["FlowLogIds"][0]
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"Could not manage the flow log of {params['vpc_id']}")
    result: dict[str, Any] = {"changed": changed}
    if params["state"] == "present":
        result["flow_log_id"] = flow_log_id
    module.exit_json(**result)


if __name__ == "__main__":
    main()

#!/usr/bin/python
"""Ansible module: set attributes of an Elastic Load Balancing v2 load balancer or target group."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: elb_attributes
short_description: Ensure attributes of an application load balancer or a target group
description:
  - >-
    Sets the given attributes (for example C(idle_timeout.timeout_seconds),
    C(routing.http.drop_invalid_header_fields.enabled)) of a load balancer or target group, and changes
    nothing else. Attributes the API does not report yet count as different.
  - >-
    amazon.aws.elb_application_lb compares these attributes with what DescribeLoadBalancerAttributes
    reports and fails when one is not reported (as with moto for a new load balancer); this module
    treats a missing attribute as one to set.
version_added: "0.4.0"
author: modelfleet
options:
  arn:
    description: ARN of the load balancer or the target group.
    type: str
    required: true
  attributes:
    description: Attribute keys and values (values are compared and sent as strings; booleans as true/false).
    type: dict
    required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Drop invalid header fields, one minute idle timeout
  modelfleet.fleet.elb_attributes:
    arn: "{{ alb.load_balancer_arn }}"
    attributes:
      routing.http.drop_invalid_header_fields.enabled: true
      idle_timeout.timeout_seconds: 60
"""

RETURN = r"""
attributes:
  description: The attributes as the API reports them after the change.
  returned: always
  type: dict
changed_attributes:
  description: Keys that were (or in check mode would be) changed.
  returned: always
  type: list
  elements: str
"""

import contextlib
from typing import Any

with contextlib.suppress(ImportError):  # AnsibleAWSModule says what is missing
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def as_api_value(value: Any) -> str:
    """The API's string form of a value: booleans are lower-case words."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def differing(current: dict[str, str], wanted: dict[str, Any]) -> dict[str, str]:
    """The wanted attributes whose value differs from (or is missing in) the current ones."""
    return {k: as_api_value(v) for k, v in sorted(wanted.items()) if current.get(k) != as_api_value(v)}


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={"arn": {"type": "str", "required": True}, "attributes": {"type": "dict", "required": True}},
        supports_check_mode=True,
    )
    arn: str = module.params["arn"]
    is_target_group = ":targetgroup/" in arn
    elb = module.client("elbv2")
    describe = elb.describe_target_group_attributes if is_target_group else elb.describe_load_balancer_attributes
    modify = elb.modify_target_group_attributes if is_target_group else elb.modify_load_balancer_attributes
    key = "TargetGroupArn" if is_target_group else "LoadBalancerArn"
    try:
        current = {a["Key"]: a["Value"] for a in describe(**{key: arn})["Attributes"]}
        change = differing(current, module.params["attributes"])
        if change and not module.check_mode:
            reported = modify(**{key: arn, "Attributes": [{"Key": k, "Value": v} for k, v in change.items()]})
            current = {**current, **{a["Key"]: a["Value"] for a in reported["Attributes"]}}
        elif change:
            current = {**current, **change}
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"Could not set the attributes of {arn}")
    module.exit_json(changed=bool(change), attributes=current, changed_attributes=sorted(change))


if __name__ == "__main__":
    main()

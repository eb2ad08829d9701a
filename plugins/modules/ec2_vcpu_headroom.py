#!/usr/bin/python
"""Ansible module: whether the account's On-Demand vCPU quota leaves room for instances about to start."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ec2_vcpu_headroom
short_description: Check that the On-Demand Standard vCPU quota leaves room for the instances to start
description:
  - >-
    EC2 limits the vCPUs of the running On-Demand instances of the standard families (A, C, D, H, I, M, R,
    T, Z) per account and region: the Service Quotas code C(L-1216C47A). New accounts often have little.
    A release starts a second fleet beside the live one, so its peak is what runs now plus the new fleet;
    an Auto Scaling Group over the quota does not fail, it just never gets its instances.
  - Reads the quota (Service Quotas), the running and pending instances of the region and the vCPUs of
    the instance types (DescribeInstanceTypes), and reports whether the new instances fit. Read-only.
  - When the quota cannot be read (no permission), RV(quota) is null and RV(fits) true, with a warning.
version_added: "0.6.0"
author: modelfleet
options:
  instances:
    description: The instances about to start, as C(instance_type) and C(count).
    type: list
    elements: dict
    required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Room for a green fleet of 4 t3.small
  modelfleet.fleet.ec2_vcpu_headroom:
    instances:
      - instance_type: t3.small
        count: 4
  register: headroom
"""

RETURN = r"""
quota:
  description: The quota in vCPUs (null when it could not be read).
  returned: always
  type: float
used:
  description: vCPUs of the region's running and pending standard On-Demand instances.
  returned: always
  type: int
needed:
  description: vCPUs of the instances about to start.
  returned: always
  type: int
fits:
  description: Whether used + needed stays within the quota.
  returned: always
  type: bool
"""

import contextlib
from collections.abc import Iterable
from typing import Any

with contextlib.suppress(ImportError):  # AnsibleAWSModule says what is missing
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

QUOTA_CODE = "L-1216C47A"  # Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances
STANDARD_FAMILIES = ("a", "c", "d", "h", "i", "m", "r", "t", "z")


def is_standard(instance_type: str) -> bool:
    """Whether an instance type counts against the standard On-Demand quota (its family's first letter)."""
    return instance_type[:1].lower() in STANDARD_FAMILIES


def vcpus_of(instances: Iterable[tuple[str, int]], vcpus: dict[str, int]) -> int:
    """The vCPUs of (instance type, count) pairs of the standard families."""
    return sum(vcpus[t] * n for t, n in instances if is_standard(t))


def headroom(quota: float | None, used: int, needed: int) -> bool:
    return quota is None or used + needed <= quota


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={"instances": {"type": "list", "elements": "dict", "required": True}},
        supports_check_mode=True,
    )
    wanted = [(str(i["instance_type"]), int(i["count"])) for i in module.params["instances"]]
    ec2 = module.client("ec2")
    try:
        running: list[tuple[str, int]] = []
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        )
        for page in pages:
            for reservation in page["Reservations"]:
                running.extend(
                    (i["InstanceType"], 1) for i in reservation["Instances"] if i.get("InstanceLifecycle") != "spot"
                )
        types = sorted({t for t, _ in running + wanted})
        described = ec2.describe_instance_types(InstanceTypes=types)["InstanceTypes"] if types else []
        vcpus = {d["InstanceType"]: int(d["VCpuInfo"]["DefaultVCpus"]) for d in described}
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg="Could not read the region's instances and instance types")
    quota: float | None = None
    try:
        answer = module.client("service-quotas").get_service_quota(ServiceCode="ec2", QuotaCode=QUOTA_CODE)
        quota = float(answer["Quota"]["Value"])
    except (BotoCoreError, ClientError) as e:
        module.warn(f"The On-Demand vCPU quota ({QUOTA_CODE}) could not be read, so it was not checked: {e}")
    used, needed = vcpus_of(running, vcpus), vcpus_of(wanted, vcpus)
    result: dict[str, Any] = {"changed": False, "quota": quota, "used": used, "needed": needed}
    module.exit_json(fits=headroom(quota, used, needed), **result)


if __name__ == "__main__":
    main()

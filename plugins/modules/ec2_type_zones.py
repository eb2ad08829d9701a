#!/usr/bin/python
"""Ansible module: the availability zones of a region that offer every given instance type."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ec2_type_zones
short_description: Find the availability zones that offer every given EC2 instance type
description:
  - >-
    Reads the region's available availability zones (DescribeAvailabilityZones) and where each instance
    type is offered (DescribeInstanceTypeOfferings by availability zone), and returns the zones, sorted by
    name, that offer all of them. Not every zone offers every type (in us-east-1, us-east-1e offers few
    current types): a subnet in such a zone cannot start the fleet's instances.
  - Read-only; the same in check mode.
version_added: "0.6.0"
author: modelfleet
options:
  instance_types:
    description: The instance types every chosen zone must offer.
    type: list
    elements: str
    required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Zones for t3.small hosts
  modelfleet.fleet.ec2_type_zones:
    instance_types: [t3.small]
  register: zones
"""

RETURN = r"""
zones:
  description: The region's available zones that offer every type, sorted by name.
  returned: always
  type: list
  elements: str
lacking:
  description: For each available zone that is left out, the types it does not offer.
  returned: always
  type: dict
"""

import contextlib
from collections.abc import Iterable
from typing import Any

with contextlib.suppress(ImportError):  # AnsibleAWSModule says what is missing
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def zones_offering(
    zones: Iterable[str], offerings: Iterable[tuple[str, str]], types: Iterable[str]
) -> tuple[list[str], dict[str, list[str]]]:
    """The zones (sorted) where every type is offered, and for the others the types they lack.

    ``offerings`` are (instance type, zone) pairs as DescribeInstanceTypeOfferings lists them.
    """
    wanted = sorted(set(types))
    offered: dict[str, set[str]] = {}
    for instance_type, zone in offerings:
        offered.setdefault(zone, set()).add(instance_type)
    chosen: list[str] = []
    lacking: dict[str, list[str]] = {}
    for zone in sorted(set(zones)):
        missing = [t for t in wanted if t not in offered.get(zone, set())]
        if missing:
            lacking[zone] = missing
        else:
            chosen.append(zone)
    return chosen, lacking


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={"instance_types": {"type": "list", "elements": "str", "required": True}},
        supports_check_mode=True,
    )
    types: list[str] = module.params["instance_types"]
    ec2 = module.client("ec2")
    try:
        described = ec2.describe_availability_zones(
            Filters=[{"Name": "state", "Values": ["available"]}, {"Name": "zone-type", "Values": ["availability-zone"]}]
        )["AvailabilityZones"]
        offerings: list[tuple[str, str]] = []
        pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": types}]
        )
        for page in pages:
            offerings.extend((o["InstanceType"], o["Location"]) for o in page["InstanceTypeOfferings"])
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"Could not read where {', '.join(types)} is offered")
    chosen, lacking = zones_offering((z["ZoneName"] for z in described), offerings, types)
    result: dict[str, Any] = {"changed": False, "zones": chosen, "lacking": lacking}
    module.exit_json(**result)


if __name__ == "__main__":
    main()

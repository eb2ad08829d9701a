#!/usr/bin/python
"""Ansible module: a CloudWatch metric alarm in PutMetricAlarm's own form, metric math included."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cloudwatch_alarm
short_description: Ensure a CloudWatch metric alarm, including metric math alarms
description:
  - >-
    Creates or updates the alarm O(alarm.AlarmName) from O(alarm), the keyword arguments of
    PutMetricAlarm, and deletes it with O(state=absent). The alarm is only written when a given field
    differs from what DescribeAlarms reports (fields the API adds are ignored), so a re-run is a no-op.
  - >-
    amazon.aws.cloudwatch_metric_alarm leaves C(Metrics) out of its comparison and so reports a metric
    math alarm (a ratio of two metrics) as changed on every run.
version_added: "0.4.0"
author: modelfleet
options:
  alarm:
    description: PutMetricAlarm's arguments (AlarmName, ComparisonOperator, Threshold, Metrics or MetricName...).
    type: dict
    required: true
  state:
    description: Whether the alarm exists.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Alarm when more than 5 % of the answers are 5xx
  modelfleet.fleet.cloudwatch_alarm:
    alarm:
      AlarmName: app-5xx-ratio
      ComparisonOperator: GreaterThanThreshold
      Threshold: 0.05
      EvaluationPeriods: 5
      Metrics:
        - Id: ratio
          Expression: "IF(requests > 0, errors / requests, 0)"
          ReturnData: true
"""

RETURN = r"""
alarm_arn:
  description: ARN of the alarm.
  returned: when present and not in check mode
  type: str
differences:
  description: Top-level fields that were (or would be) written because they differ.
  returned: always
  type: list
  elements: str
"""

import contextlib
from typing import Any

with contextlib.suppress(ImportError):  # AnsibleAWSModule says what is missing
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def covers(current: Any, wanted: Any) -> bool:
    """Whether `current` holds everything `wanted` says (extra fields in `current` are the API's)."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(covers(current.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(current, list)
            and len(current) == len(wanted)
            and all(covers(c, w) for c, w in zip(current, wanted, strict=True))
        )
    if isinstance(wanted, bool) or isinstance(current, bool):
        return current is wanted
    if isinstance(wanted, int | float) and isinstance(current, int | float):
        return float(current) == float(wanted)
    return current == wanted


def differences(current: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """Top-level fields of `wanted` that the current alarm does not have as asked."""
    if current is None:
        return sorted(wanted)
    return sorted(k for k, v in wanted.items() if not covers(current.get(k), v))


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "alarm": {"type": "dict", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        supports_check_mode=True,
    )
    wanted: dict[str, Any] = {k: v for k, v in module.params["alarm"].items() if v is not None}
    name = wanted.get("AlarmName")
    if not name:
        module.fail_json(msg="alarm.AlarmName is required")
    cloudwatch = module.client("cloudwatch")
    try:
        found = cloudwatch.describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm"])["MetricAlarms"]
        current = found[0] if found else None
        if module.params["state"] == "absent":
            if current is not None and not module.check_mode:
                cloudwatch.delete_alarms(AlarmNames=[name])
            module.exit_json(changed=current is not None, differences=[])
        diff = differences(current, wanted)
        arn = current.get("AlarmArn") if current else None
        if diff and not module.check_mode:
            cloudwatch.put_metric_alarm(**wanted)
            arn = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["AlarmArn"]
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"Could not manage the alarm {name}")
    module.exit_json(changed=bool(diff), differences=diff, alarm_arn=arn)


if __name__ == "__main__":
    main()

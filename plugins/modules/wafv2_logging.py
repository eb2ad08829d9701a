#!/usr/bin/python
"""Ansible module: the logging configuration of a WAFv2 web ACL."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wafv2_logging
short_description: Ensure a WAFv2 web ACL logs its requests to one destination
description:
  - >-
    Sets the web ACL's logging configuration (PutLoggingConfiguration) to one destination (a CloudWatch
    Logs log group whose name starts with C(aws-waf-logs-), given by its ARN without the C(:*) suffix),
    with the named headers redacted; or removes it. Changes nothing when it is already so.
  - community.aws has no module for it.
version_added: "0.6.0"
author: modelfleet
options:
  web_acl_arn:
    description: The web ACL's ARN.
    type: str
    required: true
  destination_arn:
    description: The log destination's ARN (required with O(state=present)).
    type: str
  redacted_headers:
    description: Request headers whose values are replaced in the log (lower case).
    type: list
    elements: str
    default: [authorization, cookie]
  state:
    description: Whether the web ACL logs.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Log the web ACL's requests
  modelfleet.fleet.wafv2_logging:
    web_acl_arn: "{{ acl.arn }}"
    destination_arn: arn:aws:logs:us-east-1:123456789012:log-group:aws-waf-logs-modelfleet-prod
"""

RETURN = r"""
logging_configuration:
  description: The configuration as it is (or, in check mode, would be) after the run; empty when absent.
  returned: always
  type: dict
"""

import contextlib
from typing import Any

with contextlib.suppress(ImportError):  # AnsibleAWSModule says what is missing
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def wanted(web_acl_arn: str, destination_arn: str, redacted: list[str]) -> dict[str, Any]:
    """The logging configuration asked for."""
    return {
        "ResourceArn": web_acl_arn,
        "LogDestinationConfigs": [destination_arn],
        "RedactedFields": [{"SingleHeader": {"Name": name}} for name in sorted({n.lower() for n in redacted})],
    }


def same(current: dict[str, Any] | None, asked: dict[str, Any]) -> bool:
    """Whether the current configuration already logs to the destination with the headers redacted."""
    if not current:
        return False

    def headers(config: dict[str, Any]) -> set[str]:
        return {str(f.get("SingleHeader", {}).get("Name", "")).lower() for f in config.get("RedactedFields") or []}

    return current.get("LogDestinationConfigs") == asked["LogDestinationConfigs"] and headers(current) == headers(asked)


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "web_acl_arn": {"type": "str", "required": True},
            "destination_arn": {"type": "str"},
            "redacted_headers": {"type": "list", "elements": "str", "default": ["authorization", "cookie"]},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        required_if=[("state", "present", ["destination_arn"])],
        supports_check_mode=True,
    )
    p = module.params
    waf = module.client("wafv2")
    try:
        try:
            current = waf.get_logging_configuration(ResourceArn=p["web_acl_arn"])["LoggingConfiguration"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "WAFNonexistentItemException":
                raise
            current = None
        if p["state"] == "absent":
            if current and not module.check_mode:
                waf.delete_logging_configuration(ResourceArn=p["web_acl_arn"])
            module.exit_json(changed=bool(current), logging_configuration={})
        asked = wanted(p["web_acl_arn"], p["destination_arn"], p["redacted_headers"])
        if same(current, asked):
            module.exit_json(changed=False, logging_configuration=current)
        if not module.check_mode:
            asked = waf.put_logging_configuration(LoggingConfiguration=asked)["LoggingConfiguration"]
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"Could not set the logging of the web ACL {p['web_acl_arn']}")
    module.exit_json(changed=True, logging_configuration=asked)


if __name__ == "__main__":
    main()

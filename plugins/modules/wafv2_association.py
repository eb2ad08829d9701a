#!/usr/bin/python
"""Ansible module: associate a WAFv2 web ACL with a resource (an ALB), or remove the association."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wafv2_association
short_description: Ensure a regional WAFv2 web ACL protects a resource such as an ALB
description:
  - >-
    Associates the web ACL O(web_acl_arn) with O(resource_arn), replacing the association with another
    web ACL; with O(state=absent) removes the resource's association. Asks the resource which ACL it has
    (GetWebACLForResource) instead of listing the ACL's resources, so it works where
    ListResourcesForWebACL does not (community.aws.wafv2_resources relies on it).
version_added: "0.4.0"
author: modelfleet
options:
  resource_arn:
    description: ARN of the protected resource (an application load balancer).
    type: str
    required: true
  web_acl_arn:
    description: ARN of the regional web ACL. Required with O(state=present).
    type: str
  state:
    description: Whether the resource is protected by O(web_acl_arn).
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Put the load balancer behind the web ACL
  modelfleet.fleet.wafv2_association:
    resource_arn: "{{ alb.load_balancer_arn }}"
    web_acl_arn: "{{ acl.arn }}"
"""

RETURN = r"""
web_acl_arn:
  description: ARN of the web ACL now associated with the resource (null when none).
  returned: always
  type: str
"""

import contextlib
from typing import Any

with contextlib.suppress(ImportError):  # AnsibleAWSModule says what is missing
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def decide(current: str | None, wanted: str | None, state: str) -> tuple[bool, bool]:
    """(disassociate first, associate) for the current and the wanted web ACL."""
    if state == "absent":
        return current is not None, False
    if current == wanted:
        return False, False
    return current is not None, True


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "resource_arn": {"type": "str", "required": True},
            "web_acl_arn": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        required_if=[("state", "present", ["web_acl_arn"])],
        supports_check_mode=True,
    )
    resource, wanted, state = module.params["resource_arn"], module.params["web_acl_arn"], module.params["state"]
    waf = module.client("wafv2")
    try:
        current: str | None = waf.get_web_acl_for_resource(ResourceArn=resource).get("WebACL", {}).get("ARN")
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "WAFNonexistentItemException":
            module.fail_json_aws(e, msg=f"Could not read the web ACL of {resource}")
        current = None
    except BotoCoreError as e:
        module.fail_json_aws(e, msg=f"Could not read the web ACL of {resource}")
    disassociate, associate = decide(current, wanted, state)
    result: dict[str, Any] = {"changed": disassociate or associate, "web_acl_arn": current}
    if module.check_mode:
        result["web_acl_arn"] = wanted if state == "present" else None
        module.exit_json(**result)
    try:
        if disassociate and not associate:
            waf.disassociate_web_acl(ResourceArn=resource)
            result["web_acl_arn"] = None
        if associate:
            # AssociateWebACL replaces an existing association of the resource.
            waf.associate_web_acl(WebACLArn=wanted, ResourceArn=resource)
            result["web_acl_arn"] = wanted
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"Could not change the web ACL of {resource}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()

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
  - >-
    WAF answers WAFUnavailableEntityException for a resource it cannot see yet (a load balancer still
    provisioning, a resource created moments ago); the association is retried on that error only, every
    5 seconds for at most O(unavailable_timeout) seconds. Wait for the load balancer to be active first.
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
  unavailable_timeout:
    description: Seconds to retry the association while WAF answers WAFUnavailableEntityException (0, once).
    type: int
    default: 120
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
retries:
  description: How many times the association was retried on WAFUnavailableEntityException.
  returned: always
  type: int
"""

import contextlib
import time
from collections.abc import Callable
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


UNAVAILABLE = "WAFUnavailableEntityException"
RETRY_EVERY = 5


class StillUnavailable(Exception):
    """WAF kept answering WAFUnavailableEntityException until the timeout."""


def associate_retrying(
    waf: Any,
    web_acl_arn: str,
    resource_arn: str,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """AssociateWebACL, retried on WAFUnavailableEntityException only for ``timeout`` seconds; the retries.

    Raises StillUnavailable once the time is up, other errors at once.
    """
    deadline = clock() + timeout
    retries = 0
    while True:
        try:
            waf.associate_web_acl(WebACLArn=web_acl_arn, ResourceArn=resource_arn)
            return retries
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != UNAVAILABLE:
                raise
            if clock() + RETRY_EVERY > deadline:
                raise StillUnavailable(
                    f"AWS WAF still answers {UNAVAILABLE} for {resource_arn} after {retries + 1} tries in "
                    f"{timeout:g} s: it cannot see the resource yet (a load balancer still provisioning?). "
                    "Wait for it to be active, or raise unavailable_timeout."
                ) from e
        retries += 1
        sleep(RETRY_EVERY)


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "resource_arn": {"type": "str", "required": True},
            "web_acl_arn": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "unavailable_timeout": {"type": "int", "default": 120},
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
    result: dict[str, Any] = {"changed": disassociate or associate, "web_acl_arn": current, "retries": 0}
    if module.check_mode:
        result["web_acl_arn"] = wanted if state == "present" else None
        module.exit_json(**result)
    try:
        if disassociate and not associate:
            waf.disassociate_web_acl(ResourceArn=resource)
            result["web_acl_arn"] = None
        if associate:
            # AssociateWebACL replaces an existing association of the resource.
            result["retries"] = associate_retrying(waf, wanted, resource, module.params["unavailable_timeout"])
            result["web_acl_arn"] = wanted
    except StillUnavailable as e:
        module.fail_json(msg=str(e), **result)
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"Could not change the web ACL of {resource}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()

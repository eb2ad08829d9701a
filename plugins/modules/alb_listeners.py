#!/usr/bin/python
"""Ansible module: the listeners of an application load balancer, exactly as given (weighted forwards)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: alb_listeners
short_description: Ensure the listeners of an application load balancer, with weighted forwards
description:
  - >-
    Makes the load balancer's listeners exactly O(listeners): creates missing ports, modifies listeners
    whose protocol, TLS policy, certificate or default action differ, and with O(purge) deletes listeners
    on other ports.
  - >-
    A forward is compared by its target groups and their weights, so a listener that already splits
    90/10 between two groups is left alone, and a change of weights is one ModifyListener call: the
    step of a blue/green release. amazon.aws.elb_application_lb compares only the first target group of
    a default action and reports a weighted forward as changed on every run.
version_added: "0.4.0"
author: modelfleet
options:
  load_balancer_arn:
    description: ARN of the application load balancer.
    type: str
    required: true
  listeners:
    description:
      - Listeners in the API's form, one per port. C(DefaultActions) holds one action of C(Type) forward
        (C(ForwardConfig.TargetGroups) of C(TargetGroupArn) and C(Weight)), redirect or fixed-response.
    type: list
    elements: dict
    required: true
  purge:
    description: Delete listeners on ports not in O(listeners).
    type: bool
    default: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Send 10 % of the requests to the new release
  modelfleet.fleet.alb_listeners:
    load_balancer_arn: "{{ alb.arn }}"
    listeners:
      - Protocol: HTTP
        Port: 80
        DefaultActions:
          - Type: forward
            ForwardConfig:
              TargetGroups:
                - {TargetGroupArn: "{{ blue.arn }}", Weight: 90}
                - {TargetGroupArn: "{{ green.arn }}", Weight: 10}
"""

RETURN = r"""
listeners:
  description: The listeners after the change, as the API describes them.
  returned: always
  type: list
  elements: dict
actions:
  description: What was (or in check mode would be) done, as C(create PORT), C(modify PORT), C(delete PORT).
  returned: always
  type: list
  elements: str
"""

import contextlib
from typing import Any

with contextlib.suppress(ImportError):  # AnsibleAWSModule says what is missing
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def normal_action(action: dict[str, Any]) -> dict[str, Any]:
    """An action reduced to what decides where a request goes, in one canonical form."""
    kind = action["Type"]
    if kind == "forward":
        groups = action.get("ForwardConfig", {}).get("TargetGroups") or [
            {"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}
        ]
        weighted = sorted((g["TargetGroupArn"], int(g.get("Weight", 1))) for g in groups)
        if len(weighted) == 1:  # one group takes everything, whatever its weight
            weighted = [(weighted[0][0], 1)]
        stickiness = action.get("ForwardConfig", {}).get("TargetGroupStickinessConfig", {}).get("Enabled", False)
        return {"Type": kind, "TargetGroups": weighted, "Sticky": bool(stickiness)}
    if kind == "redirect":
        config = {"Host": "#{host}", "Path": "/#{path}", "Query": "#{query}", "Port": "#{port}"}
        config.update({k: str(v) for k, v in action["RedirectConfig"].items()})
        return {"Type": kind, "Config": config}
    if kind == "fixed-response":
        return {"Type": kind, "Config": {k: str(v) for k, v in action["FixedResponseConfig"].items()}}
    return {"Type": kind, "Config": {k: v for k, v in action.items() if k not in ("Order", "Type")}}


def normal_listener(listener: dict[str, Any]) -> dict[str, Any]:
    """A listener reduced to what the module manages."""
    tls = listener["Protocol"] in ("HTTPS", "TLS")
    return {
        "Protocol": listener["Protocol"],
        "SslPolicy": listener.get("SslPolicy") if tls else None,
        "Certificates": sorted(c["CertificateArn"] for c in listener.get("Certificates", [])) if tls else [],
        "DefaultActions": [normal_action(a) for a in listener["DefaultActions"]],
    }


def plan(
    current: list[dict[str, Any]], wanted: list[dict[str, Any]], purge: bool
) -> list[tuple[str, int, dict[str, Any] | None]]:
    """(create|modify|delete, port, wanted listener or the current one) for every port that must change."""
    by_port = {int(c["Port"]): c for c in current}
    steps: list[tuple[str, int, dict[str, Any] | None]] = []
    for listener in wanted:
        port = int(listener["Port"])
        if port not in by_port:
            steps.append(("create", port, listener))
        elif normal_listener(by_port[port]) != normal_listener(listener):
            steps.append(("modify", port, listener))
    if purge:
        ports = {int(w["Port"]) for w in wanted}
        steps.extend(("delete", port, by_port[port]) for port in sorted(by_port) if port not in ports)
    return steps


def api_form(listener: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of CreateListener/ModifyListener for a wanted listener."""
    args = {k: listener[k] for k in ("Protocol", "Port", "SslPolicy", "Certificates") if k in listener}
    args["Port"] = int(args["Port"])
    args["DefaultActions"] = listener["DefaultActions"]
    return args


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "load_balancer_arn": {"type": "str", "required": True},
            "listeners": {"type": "list", "elements": "dict", "required": True},
            "purge": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    arn = module.params["load_balancer_arn"]
    elb = module.client("elbv2")
    try:
        current = elb.describe_listeners(LoadBalancerArn=arn)["Listeners"]
        steps = plan(current, module.params["listeners"], module.params["purge"])
        if not module.check_mode:
            by_port = {int(c["Port"]): c for c in current}
            for step, port, listener in steps:
                if step == "create":
                    elb.create_listener(LoadBalancerArn=arn, **api_form(listener))
                elif step == "modify":
                    elb.modify_listener(ListenerArn=by_port[port]["ListenerArn"], **api_form(listener))
                else:
                    elb.delete_listener(ListenerArn=by_port[port]["ListenerArn"])
            if steps:
                current = elb.describe_listeners(LoadBalancerArn=arn)["Listeners"]
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"Could not set the listeners of {arn}")
    module.exit_json(
        changed=bool(steps),
        listeners=sorted(current, key=lambda c: int(c["Port"])),
        actions=[f"{step} {port}" for step, port, _ in steps],
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The project's AWS emulator: moto's server, made stricter where AWS refuses what moto accepts.

Run as ``python tools/strict_moto.py -H 127.0.0.1 -p 5000`` (the arguments of ``moto_server``): it applies
the patches below to moto's backends, then runs moto's own server (``moto.server.main``). Each patch is a
small wrapper around one moto method, so what moto does otherwise is unchanged.

1. Targets of a target group that no load balancer uses are ``unused`` (reason ``Target.NotInUse``), never
   ``healthy``: AWS runs no health check for them. Application Load Balancers guide, "Health checks for
   your target groups", target health states: "unused - The target is not registered with a target
   group, the target group is not used in a listener rule, ..." and reason codes: "Target.NotInUse - The
   target group is not configured to receive traffic from the load balancer"
   (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html).
   A group is used when a listener's default action or one of its rules forwards to it, with any weight,
   0 included (a weighted forward takes weights 0 to 999, API Reference, TargetGroupTuple). moto reports
   a registered target healthy at once, on a load balancer or not.
2. A new application load balancer stays ``provisioning`` for MODELFLEET_EMULATOR_ALB_PROVISIONING_SECONDS
   (default 3) before it is ``active``, and WAF refuses to associate a web ACL with it meanwhile:
   AssociateWebACL answers WAFUnavailableEntityException, "AWS WAF couldn't retrieve a resource that you
   specified for this operation. If you've just created a resource that you're using in this operation,
   you might just need to wait a few minutes" (AWS WAFV2 API Reference, AssociateWebACL, Errors:
   https://docs.aws.amazon.com/waf/latest/APIReference/API_AssociateWebACL.html). moto makes a load
   balancer active on the first describe call and associates at once.

3. A new IAM instance profile cannot be used for MODELFLEET_EMULATOR_IAM_PROPAGATION_SECONDS (default 3):
   RunInstances with it, or CreateAutoScalingGroup from a launch template that names it, is refused with
   "Invalid IAM Instance Profile name", as AWS does while the profile propagates. IAM User Guide,
   "Troubleshooting IAM roles": "If you create an instance profile ... and immediately try to launch an
   instance with it, you might get an error that the instance profile is invalid ... wait and retry", and
   "Changes that I make are not always immediately visible" (IAM is eventually consistent:
   https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html). moto accepts it at once.

The patches check the moto internals they wrap exist (written against moto 5.2.5) and refuse to start
otherwise: a silently lenient emulator would hide exactly what it is here to show.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

PROVISIONING_SECONDS_ENV = "MODELFLEET_EMULATOR_ALB_PROVISIONING_SECONDS"
IAM_SECONDS_ENV = "MODELFLEET_EMULATOR_IAM_PROPAGATION_SECONDS"
_PROFILES_BORN: dict[str, float] = {}  # instance profile name -> when it was created (monotonic)
_APPLIED = "_modelfleet_strict"


def _need(owner: Any, name: str) -> Any:
    found = getattr(owner, name, None)
    if found is None:
        import moto

        raise RuntimeError(
            f"strict_moto: moto {moto.__version__} has no {owner.__name__}.{name}; the patch was written "
            "for moto 5.2.5, adapt tools/strict_moto.py"
        )
    return found


def forwarded_target_groups(action: Any) -> set[str]:
    """The target group ARNs a listener action forwards to (a plain or a weighted forward, any weight)."""
    data = getattr(action, "data", action)
    if not isinstance(data, dict) or data.get("Type") != "forward":
        return set()
    arns = {data["TargetGroupArn"]} if data.get("TargetGroupArn") else set()
    arns.update(g["TargetGroupArn"] for g in (data.get("ForwardConfig") or {}).get("TargetGroups") or [])
    return arns


def target_groups_in_use(backend: Any) -> set[str]:
    """Every target group ARN a listener of one of the backend's load balancers forwards to."""
    used: set[str] = set()
    for balancer in backend.load_balancers.values():
        for listener in balancer.listeners.values():
            actions = list(listener.default_actions or [])
            for rule in listener.rules.values():
                actions.extend(rule.actions or [])
            for action in actions:
                used |= forwarded_target_groups(action)
    return used


def patch_unused_target_groups() -> None:
    """describe_target_health: targets of a group no listener forwards to are unused (Target.NotInUse)."""
    from moto.elbv2.models import ELBv2Backend, FakeHealthStatus

    original = _need(ELBv2Backend, "describe_target_health")
    if getattr(original, _APPLIED, False):
        return
    for attribute in ("status", "reason", "description"):  # what the wrapper rewrites
        if attribute not in FakeHealthStatus("i-0", "80", None, "healthy").__dict__:
            raise RuntimeError(f"strict_moto: moto's FakeHealthStatus has no {attribute}; adapt the patch")

    def describe_target_health(self: Any, target_group_arn: str, targets: list[dict[str, Any]]) -> Any:
        statuses = original(self, target_group_arn, targets)
        if target_group_arn in target_groups_in_use(self):
            return statuses
        for status in statuses:
            # Not registered, draining, stopped: as moto says. Registered and "healthy": not checked at all.
            if status.status in ("healthy", "unhealthy", "initial"):
                status.status = "unused"
                status.reason = "Target.NotInUse"
                status.description = "Target group is not configured to receive traffic from the load balancer"
        return statuses

    setattr(describe_target_health, _APPLIED, True)
    ELBv2Backend.describe_target_health = describe_target_health  # type: ignore[method-assign]


def patch_provisioning_load_balancers(seconds: float) -> None:
    """A load balancer is provisioning for its first ``seconds``; WAF will not associate with it until active."""
    from moto.core.exceptions import JsonRESTError
    from moto.elbv2.models import FakeLoadBalancer, elbv2_backends
    from moto.wafv2.models import WAFV2Backend

    init = _need(FakeLoadBalancer, "__init__")
    activate = _need(FakeLoadBalancer, "activate")
    associate = _need(WAFV2Backend, "associate_web_acl")
    if getattr(activate, _APPLIED, False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.modelfleet_created = time.monotonic()

    def activate_when_provisioned(self: Any) -> None:
        if time.monotonic() - getattr(self, "modelfleet_created", 0.0) >= seconds:
            activate(self)

    def associate_web_acl(self: Any, web_acl_arn: str, resource_arn: str) -> None:
        if ":elasticloadbalancing:" in resource_arn and ":loadbalancer/app/" in resource_arn:
            balancer = elbv2_backends[self.account_id][self.region_name].load_balancers.get(resource_arn)
            if balancer is not None:
                balancer.activate()
                if balancer.state == "provisioning":
                    raise JsonRESTError(
                        "WAFUnavailableEntityException",
                        "AWS WAF couldn't retrieve a resource that you specified for this operation. "
                        "If you've just created a resource that you're using in this operation, you might "
                        "just need to wait a few minutes. It can take from a few seconds to a number of "
                        "minutes for changes to propagate.",
                    )
        associate(self, web_acl_arn, resource_arn)

    for wrapper in (__init__, activate_when_provisioned, associate_web_acl):
        setattr(wrapper, _APPLIED, True)
    FakeLoadBalancer.__init__ = __init__  # type: ignore[method-assign]
    FakeLoadBalancer.activate = activate_when_provisioned  # type: ignore[method-assign]
    WAFV2Backend.associate_web_acl = associate_web_acl  # type: ignore[method-assign]


def _profile_name(reference: Any) -> str:
    """An instance profile's name from a name, an ARN or a launch template's ``IamInstanceProfile``."""
    if isinstance(reference, dict):
        reference = reference.get("Name") or reference.get("Arn") or ""
    return str(reference or "").rsplit("/", 1)[-1]


def young_profile(reference: Any, seconds: float) -> str:
    """The profile's name when it was created less than ``seconds`` ago (else empty)."""
    name = _profile_name(reference)
    born = _PROFILES_BORN.get(name)
    return name if born is not None and time.monotonic() - born < seconds else ""


def patch_iam_propagation(seconds: float) -> None:
    """A new instance profile is refused by RunInstances and CreateAutoScalingGroup for ``seconds``."""
    from moto.autoscaling.exceptions import ValidationError
    from moto.autoscaling.models import AutoScalingBackend
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.instances import InstanceBackend
    from moto.iam.models import IAMBackend

    create = _need(IAMBackend, "create_instance_profile")
    run = _need(InstanceBackend, "run_instances")
    template_of = _need(InstanceBackend, "_get_template_from_args")
    create_group = _need(AutoScalingBackend, "create_auto_scaling_group")
    if getattr(create, _APPLIED, False):
        return

    def create_instance_profile(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        profile = create(self, name, *args, **kwargs)
        _PROFILES_BORN[name] = time.monotonic()
        return profile

    def run_instances(self: Any, image_id: str, count: int, user_data: Any, groups: Any, **kwargs: Any) -> Any:
        reference = kwargs.get("iam_instance_profile_name") or kwargs.get("iam_instance_profile_arn")
        if not reference and kwargs.get("launch_template"):
            reference = template_of(self, kwargs["launch_template"]).data.get("IamInstanceProfile")
        if name := young_profile(reference, seconds):
            raise EC2ClientError(
                "InvalidParameterValue",
                f"Value ({name}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
            )
        return run(self, image_id, count, user_data, groups, **kwargs)

    def create_auto_scaling_group(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        template = kwargs.get("launch_template") or {}
        if template:
            data = template_of(self.ec2_backend, template).data
            if young := young_profile(data.get("IamInstanceProfile"), seconds):
                raise ValidationError(
                    "You must use a valid fully-formed launch template. Value "
                    f"({young}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"
                )
        return create_group(self, name, *args, **kwargs)

    for wrapper in (create_instance_profile, run_instances, create_auto_scaling_group):
        setattr(wrapper, _APPLIED, True)
    IAMBackend.create_instance_profile = create_instance_profile  # type: ignore[method-assign]
    InstanceBackend.run_instances = run_instances  # type: ignore[method-assign]
    AutoScalingBackend.create_auto_scaling_group = create_auto_scaling_group  # type: ignore[method-assign]


def apply(provisioning_seconds: float | None = None, iam_seconds: float | None = None) -> None:
    """Every patch (idempotent); the times from the arguments or the environment (default 3 s each)."""
    if provisioning_seconds is None:
        provisioning_seconds = float(os.environ.get(PROVISIONING_SECONDS_ENV, "3"))
    if iam_seconds is None:
        iam_seconds = float(os.environ.get(IAM_SECONDS_ENV, "3"))
    patch_unused_target_groups()
    patch_provisioning_load_balancers(provisioning_seconds)
    patch_iam_propagation(iam_seconds)


def main(argv: list[str] | None = None) -> None:
    apply()
    from moto.server import main as moto_main

    print("strict_moto: moto server with the project's strictness patches (tools/strict_moto.py)", flush=True)
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()

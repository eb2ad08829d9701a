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

4. A load balancer has a network interface in each of its subnets (description ``ELB app/NAME/ID``, as
   AWS names them), and they stay for MODELFLEET_EMULATOR_ENI_LINGER_SECONDS (default 5) after the load
   balancer is deleted. Meanwhile the VPC's internet gateway cannot be detached, and their subnets and
   security groups cannot be deleted (DependencyViolation). AWS: "After you delete a load balancer, it
   can take several minutes for its network interfaces to be deleted" (Elastic Load Balancing user
   guide, troubleshooting) and DeleteSubnet / DeleteSecurityGroup / DetachInternetGateway answer
   DependencyViolation while an interface uses them (EC2 API Reference, error codes:
   https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html). moto makes no interface
   for a load balancer and deletes subnets and groups whatever uses them.

5. Targets are health-checked, not healthy on arrival: a target of a group that a listener forwards to is
   ``initial`` (reason ``Elb.InitialHealthChecking``) for MODELFLEET_EMULATOR_INITIAL_HEALTH_SECONDS
   (default 2) from the first look at it in use, as AWS sends the healthy threshold's checks first; and a
   deregistered target is ``draining`` (``Target.DeregistrationInProgress``) for its group's
   ``deregistration_delay.timeout_seconds`` before it is gone (Application Load Balancers guide, "Target
   health states" and "Deregistration delay"). moto reports a target healthy at once and forgets a
   deregistered one at once.

6. An instance type is started only in an availability zone that offers it: RunInstances (also from an
   Auto Scaling Group) in a subnet of a zone whose offerings (moto carries AWS' DescribeInstanceTypeOfferings
   data) lack the type answers ``Unsupported``: "Your requested instance type (t3.small) is not supported
   in your requested Availability Zone (us-east-1e)", as AWS does. moto starts any type anywhere.

7. AWS managed policies exist (``arn:aws:iam::aws:policy/...``, for example AmazonSSMManagedInstanceCore,
   which the instance roles take with Session Manager as the access path): moto loads them only with
   MOTO_IAM_LOAD_MANAGED_POLICIES=true, which the launcher sets, and otherwise refuses to attach them.

8. The account has an On-Demand vCPU quota: Service Quotas answers for EC2's "Running On-Demand Standard
   (A, C, D, H, I, M, R, T, Z) instances" (L-1216C47A) with MODELFLEET_EMULATOR_EC2_VCPU_QUOTA vCPUs
   (default 32). moto knows no EC2 quota (only VPC's) and refuses the question.

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
ENI_LINGER_SECONDS_ENV = "MODELFLEET_EMULATOR_ENI_LINGER_SECONDS"
INITIAL_HEALTH_SECONDS_ENV = "MODELFLEET_EMULATOR_INITIAL_HEALTH_SECONDS"
VCPU_QUOTA_ENV = "MODELFLEET_EMULATOR_EC2_VCPU_QUOTA"
VCPU_QUOTA_CODE = "L-1216C47A"
_IN_USE_SINCE: dict[tuple[str, str], float] = {}  # (target group ARN, target id) -> first seen in use (monotonic)
_DRAINING: dict[str, dict[str, tuple[Any, float]]] = {}  # target group ARN -> target id -> (target, until)
_LINGERING: dict[str, float] = {}  # network interface id of a deleted load balancer -> when it goes (monotonic)
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


def balancer_interfaces(ec2: Any) -> list[Any]:
    """The network interfaces of load balancers (live or deleted and lingering) in an EC2 backend, after
    dropping the lingering ones whose time is up."""
    now = time.monotonic()
    for eni_id, gone_at in list(_LINGERING.items()):
        if now >= gone_at and eni_id in ec2.enis:
            ec2.enis.pop(eni_id)
            _LINGERING.pop(eni_id)
    return [eni for eni in ec2.enis.values() if eni.description.startswith("ELB app/")]


def patch_lingering_interfaces(seconds: float) -> None:
    """Load balancers get interfaces that outlive them by ``seconds`` and block their network's deletion."""
    from moto.ec2.exceptions import DependencyViolationError
    from moto.ec2.models.elastic_network_interfaces import NetworkInterfaceBackend
    from moto.ec2.models.internet_gateways import InternetGatewayBackend
    from moto.ec2.models.security_groups import SecurityGroupBackend
    from moto.ec2.models.subnets import SubnetBackend
    from moto.elbv2.models import ELBv2Backend

    create = _need(ELBv2Backend, "create_load_balancer")
    delete = _need(ELBv2Backend, "delete_load_balancer")
    listing = _need(NetworkInterfaceBackend, "get_all_network_interfaces")
    detach = _need(InternetGatewayBackend, "detach_internet_gateway")
    delete_subnet = _need(SubnetBackend, "delete_subnet")
    delete_group = _need(SecurityGroupBackend, "delete_security_group")
    if getattr(create, _APPLIED, False):
        return

    def create_load_balancer(self: Any, name: str, security_groups: list[str], *a: Any, **k: Any) -> Any:
        balancer = create(self, name, security_groups, *a, **k)
        suffix = balancer.arn.split(":loadbalancer/", 1)[-1]  # app/NAME/ID
        balancer.modelfleet_enis = [
            self.ec2_backend.create_network_interface(
                subnet, None, group_ids=list(security_groups or []), description=f"ELB {suffix}"
            ).id
            for subnet in balancer.subnets
        ]
        return balancer

    def delete_load_balancer(self: Any, arn: str) -> None:
        balancer = self.load_balancers.get(arn)
        delete(self, arn)
        for eni_id in getattr(balancer, "modelfleet_enis", []):
            _LINGERING[eni_id] = time.monotonic() + seconds

    def get_all_network_interfaces(self: Any, *a: Any, **k: Any) -> Any:
        balancer_interfaces(self)
        return listing(self, *a, **k)

    def detach_internet_gateway(self: Any, internet_gateway_id: str, vpc_id: str) -> None:
        if any(eni.subnet.vpc_id == vpc_id for eni in balancer_interfaces(self)):
            raise DependencyViolationError(
                f"Network {vpc_id} has some mapped public address(es). Please unmap those public address(es) "
                "before detaching the gateway."
            )
        detach(self, internet_gateway_id, vpc_id)

    def delete_subnet_in_use(self: Any, subnet_id: str) -> Any:
        if any(eni.subnet.id == subnet_id for eni in balancer_interfaces(self)):
            raise DependencyViolationError(f"The subnet '{subnet_id}' has dependencies and cannot be deleted.")
        return delete_subnet(self, subnet_id)

    def delete_security_group(self: Any, name: str | None = None, group_id: str | None = None) -> None:
        if group_id and any(group_id in [g.id for g in eni.group_set] for eni in balancer_interfaces(self)):
            raise DependencyViolationError(f"resource {group_id} has a dependent object")
        delete_group(self, name=name, group_id=group_id)

    wrappers = (
        create_load_balancer,
        delete_load_balancer,
        get_all_network_interfaces,
        detach_internet_gateway,
        delete_subnet_in_use,
        delete_security_group,
    )
    for wrapper in wrappers:
        setattr(wrapper, _APPLIED, True)
    ELBv2Backend.create_load_balancer = create_load_balancer  # type: ignore[method-assign]
    ELBv2Backend.delete_load_balancer = delete_load_balancer  # type: ignore[method-assign]
    NetworkInterfaceBackend.get_all_network_interfaces = get_all_network_interfaces  # type: ignore[method-assign]
    InternetGatewayBackend.detach_internet_gateway = detach_internet_gateway  # type: ignore[method-assign]
    SubnetBackend.delete_subnet = delete_subnet_in_use  # type: ignore[method-assign]
    SecurityGroupBackend.delete_security_group = delete_security_group  # type: ignore[method-assign]


def patch_health_checks(initial_seconds: float) -> None:
    """Targets in use are ``initial`` for ``initial_seconds``; deregistered ones drain for the group's delay."""
    from moto.elbv2.models import ELBv2Backend, FakeHealthStatus

    describe = _need(ELBv2Backend, "describe_target_health")
    deregister = _need(ELBv2Backend, "deregister_targets")
    if getattr(deregister, _APPLIED, False):
        return

    def deregister_targets(self: Any, target_group_arn: str, instances: list[dict[str, Any]]) -> None:
        group = self.target_groups.get(target_group_arn)
        registered = dict(group.targets) if group is not None else {}
        deregister(self, target_group_arn, instances)
        delay = float(group.attributes.get("deregistration_delay.timeout_seconds", 300)) if group else 0.0
        until = time.monotonic() + delay
        for instance in instances:
            if instance["Id"] in registered:
                _DRAINING.setdefault(target_group_arn, {})[instance["Id"]] = (registered[instance["Id"]], until)
                _IN_USE_SINCE.pop((target_group_arn, instance["Id"]), None)

    def describe_target_health(self: Any, target_group_arn: str, targets: list[dict[str, Any]]) -> Any:
        statuses = list(describe(self, target_group_arn, targets))
        now = time.monotonic()
        for status in statuses:
            if status.status != "healthy":
                continue
            since = _IN_USE_SINCE.setdefault((target_group_arn, status.instance_id), now)
            if now - since < initial_seconds:
                status.status = "initial"
                status.reason = "Elb.InitialHealthChecking"
                status.description = "Initial health checks in progress"
        draining = _DRAINING.get(target_group_arn, {})
        asked = {t["Id"] for t in targets or []}
        for target_id, (target, until) in list(draining.items()):
            if now >= until:
                draining.pop(target_id)
            elif not asked or target_id in asked:
                statuses = [s for s in statuses if s.instance_id != target_id]
                statuses.append(
                    FakeHealthStatus(
                        target_id,
                        target.get("Port", 80),
                        None,
                        "draining",
                        "Target.DeregistrationInProgress",
                        "Target deregistration is in progress",
                    )
                )
        return statuses

    for wrapper in (deregister_targets, describe_target_health):
        setattr(wrapper, _APPLIED, True)
    ELBv2Backend.deregister_targets = deregister_targets  # type: ignore[method-assign]
    ELBv2Backend.describe_target_health = describe_target_health  # type: ignore[method-assign]


def patch_zone_offerings() -> None:
    """RunInstances refuses an instance type that the subnet's availability zone does not offer."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.instance_types import InstanceTypeOfferingBackend
    from moto.ec2.models.instances import InstanceBackend

    run = _need(InstanceBackend, "run_instances")
    template_of = _need(InstanceBackend, "_get_template_from_args")
    _need(InstanceTypeOfferingBackend, "describe_instance_type_offerings")
    if getattr(run, "_modelfleet_offerings", False):
        return

    def run_instances(self: Any, image_id: str, count: int, user_data: Any, groups: Any, **kwargs: Any) -> Any:
        instance_type = kwargs.get("instance_type")
        if kwargs.get("launch_template") and kwargs.get("is_instance_type_default"):
            instance_type = template_of(self, kwargs["launch_template"]).data.get("InstanceType") or instance_type
        zone = self.get_subnet(kwargs["subnet_id"]).availability_zone if kwargs.get("subnet_id") else None
        zone = zone or kwargs.get("placement")
        if instance_type and zone:
            offered = self.describe_instance_type_offerings(
                location_type="availability-zone", filters={"instance-type": [instance_type]}
            )
            zones = sorted({o["Location"] for o in offered})
            if zone not in zones:
                raise EC2ClientError(
                    "Unsupported",
                    f"Your requested instance type ({instance_type}) is not supported in your requested "
                    f"Availability Zone ({zone}). Please retry your request by not specifying an Availability "
                    f"Zone or choosing {', '.join(zones)}.",
                )
        return run(self, image_id, count, user_data, groups, **kwargs)

    run_instances._modelfleet_offerings = True  # type: ignore[attr-defined]
    setattr(run_instances, _APPLIED, True)
    InstanceBackend.run_instances = run_instances  # type: ignore[method-assign]


def patch_vcpu_quota(vcpus: float) -> None:
    """Service Quotas answers for EC2's On-Demand Standard vCPU quota."""
    from moto.servicequotas.models import ServiceQuotasBackend

    original = _need(ServiceQuotasBackend, "get_service_quota")
    if getattr(original, _APPLIED, False):
        return

    def get_service_quota(self: Any, service_code: str, quota_code: str) -> dict[str, Any]:
        if (service_code, quota_code) == ("ec2", VCPU_QUOTA_CODE):
            return {
                "Adjustable": True,
                "GlobalQuota": False,
                "QuotaArn": f"arn:aws:servicequotas:{self.region_name}:{self.account_id}:ec2/{VCPU_QUOTA_CODE}",
                "QuotaCode": VCPU_QUOTA_CODE,
                "QuotaName": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
                "ServiceCode": "ec2",
                "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
                "Unit": "None",
                "Value": vcpus,
            }
        return dict(original(self, service_code, quota_code))

    setattr(get_service_quota, _APPLIED, True)
    ServiceQuotasBackend.get_service_quota = get_service_quota  # type: ignore[method-assign]


def apply(
    provisioning_seconds: float | None = None,
    iam_seconds: float | None = None,
    eni_seconds: float | None = None,
    initial_seconds: float | None = None,
) -> None:
    """Every patch (idempotent); the times from the arguments or the environment (default 3, 3, 5 and 2 s)."""
    if provisioning_seconds is None:
        provisioning_seconds = float(os.environ.get(PROVISIONING_SECONDS_ENV, "3"))
    if iam_seconds is None:
        iam_seconds = float(os.environ.get(IAM_SECONDS_ENV, "3"))
    if eni_seconds is None:
        eni_seconds = float(os.environ.get(ENI_LINGER_SECONDS_ENV, "5"))
    patch_unused_target_groups()
    patch_provisioning_load_balancers(provisioning_seconds)
    patch_iam_propagation(iam_seconds)
    patch_lingering_interfaces(eni_seconds)
    if initial_seconds is None:
        initial_seconds = float(os.environ.get(INITIAL_HEALTH_SECONDS_ENV, "2"))
    patch_health_checks(initial_seconds)
    patch_zone_offerings()
    patch_vcpu_quota(float(os.environ.get(VCPU_QUOTA_ENV, "32")))


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    apply()
    from moto.server import main as moto_main

    print("strict_moto: moto server with the project's strictness patches (tools/strict_moto.py)", flush=True)
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()

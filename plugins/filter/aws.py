"""Filters of the modelfleet.fleet collection for the AWS provider: the preflight and resource names."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any
from urllib.parse import urlsplit

WORLD = {ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")}


def is_loopback_url(url: str) -> bool:
    """Whether an endpoint URL points at this machine only (an emulator), never at AWS."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _networks(cidrs: list[str], what: str, problems: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for cidr in cidrs:
        try:
            nets.append(ipaddress.ip_network(str(cidr), strict=True))
        except ValueError as e:
            problems.append(f"{what}: {cidr!r} is not a network address ({e})")
    return nets


def _opens_world(nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    return any(net in WORLD or net.prefixlen == 0 for net in nets)


def aws_preflight(settings: dict[str, Any]) -> list[str]:
    """What would make the stack unsafe or unbuildable, one sentence each (empty: go ahead).

    Checked before any AWS call: the endpoint (an emulator only on loopback, never a mix of an
    emulator and AWS), HTTPS and its certificate, who may reach what, the subnets, and what a
    production environment must keep on.
    """
    problems: list[str] = []
    endpoint = str(settings.get("endpoint") or "")
    env_endpoint = str(settings.get("env_endpoint") or "")
    if endpoint and not is_loopback_url(endpoint):
        problems.append(
            f"the AWS endpoint {endpoint} is not on this machine's loopback: an endpoint is for a local "
            "emulator only (leave it empty for AWS)"
        )
    if env_endpoint and env_endpoint != endpoint:
        problems.append(
            f"AWS_ENDPOINT_URL is {env_endpoint} but the playbooks' endpoint is {endpoint or 'AWS itself'}: "
            "the inventory and the modules would talk to different places"
        )
    if settings.get("https") and not settings.get("certificate_arn"):
        problems.append("HTTPS is asked for (modelfleet_aws_https) but no certificate ARN is given")
    certificate = str(settings.get("certificate_arn") or "")
    if certificate and not certificate.startswith("arn:"):
        problems.append(f"the certificate {certificate!r} is not an ARN")
    if settings.get("certificate_arn") and not settings.get("https"):
        problems.append("a certificate is given but HTTPS is off: set modelfleet_aws_https: true")
    if _opens_world(_networks(settings.get("admin_cidrs") or [], "admin CIDRs", problems)):
        problems.append("Prometheus, Alertmanager and Grafana would be open to the world (admin CIDRs)")
    if _opens_world(_networks(settings.get("ssh_cidrs") or [], "SSH CIDRs", problems)):
        problems.append("SSH would be open to the world: give the bastion's address (SSH CIDRs)")
    _networks(settings.get("alb_ingress_cidrs") or [], "load balancer CIDRs", problems)
    public = _networks(settings.get("public_cidrs") or [], "public subnets", problems)
    private = _networks(settings.get("private_cidrs") or [], "private subnets", problems)
    if len(public) < 2 or len(private) != len(public):
        problems.append(
            f"the stack needs two AZs or more: give at least two public subnets and as many private ones "
            f"(public {len(public)}, private {len(private)})"
        )
    vpc = _networks([settings.get("vpc_cidr") or "0.0.0.0/0"], "VPC CIDR", problems)
    for net in public + private:
        if vpc and (net.version != vpc[0].version or not net.subnet_of(vpc[0])):  # type: ignore[arg-type]
            problems.append(f"the subnet {net} is not inside the VPC {vpc[0]}")
    every = public + private
    for i, a in enumerate(every):
        for b in every[i + 1 :]:
            if a.overlaps(b):
                problems.append(f"the subnets {a} and {b} overlap")
    if settings.get("service_port") in (settings.get("metrics_ports") or []):
        problems.append(f"the service port {settings.get('service_port')} is also a metrics port")
    if settings.get("environment") == "prod" and not settings.get("deletion_protection"):
        problems.append("prod keeps the load balancer's deletion protection on (modelfleet_aws_deletion_protection)")
    access = settings.get("access")
    if access not in ("ssm", "bastion"):
        problems.append(f"modelfleet_aws_access must be ssm or bastion (got {access!r})")
    if access == "bastion" and not settings.get("bastion") and not settings.get("emulated"):
        problems.append("modelfleet_aws_access is bastion but no bastion is given (modelfleet_aws_bastion: user@host)")
    if "builder_connection" in settings:
        problems.extend(_builder_problems(settings))
    return problems


def _builder_problems(settings: dict[str, Any]) -> list[str]:
    """What stops an image builder from starting safely (checked by a bake only)."""
    problems: list[str] = []
    connection = settings.get("builder_connection")
    if connection not in ("ssh", "docker"):
        problems.append(f"modelfleet_aws_builder_connection must be ssh or docker (got {connection!r})")
    elif connection == "docker" and not settings.get("emulated"):
        problems.append(
            "modelfleet_aws_builder_connection: docker stands a local container in for the builder against an "
            "emulator only; on AWS the builder is reached over ssh"
        )
    elif connection == "ssh":
        cidrs = _networks(settings.get("builder_cidrs") or [], "builder CIDRs", problems)
        if not cidrs:
            problems.append(
                "the bake reaches its builder over SSH from modelfleet_aws_builder_cidrs: give the controller's "
                "address (for example 203.0.113.7/32)"
            )
        elif _opens_world(cidrs):
            problems.append(
                "the builder's SSH would be open to the world: give the controller's address (builder CIDRs)"
            )
    return problems


def aws_release_name(prefix: str, release: str) -> str:
    """The name of a release's launch template, Auto Scaling Group and target group (32 characters at most).

    A short digest of the release label keeps names within the target group's 32 characters and stable
    for the same release: ``aws_release_name('modelfleet-prod', '1.0.0-0123abcd')`` -> ``modelfleet-prod-5d6b6f0a``.
    """
    if not release:
        raise ValueError("a release label is needed to name its resources")
    name = f"{prefix}-{hashlib.sha1(release.encode(), usedforsecurity=False).hexdigest()[:8]}"
    if len(name) > 32:
        raise ValueError(f"{name!r} is longer than 32 characters: shorten the name prefix {prefix!r}")
    return name


def alb_forwards(listeners: list[dict[str, Any]], target_groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where a load balancer's listeners forward: ``[{name, arn, weight}]``, largest share first.

    ``listeners`` as ``elb_application_lb_info`` returns them, ``target_groups`` as ``elb_target_group_info``
    does. An HTTP listener that only redirects to HTTPS forwards nothing; the forwarding listeners agree
    (alb_listeners makes them so), and the first one is read.
    """
    names = {tg["target_group_arn"]: tg["target_group_name"] for tg in target_groups}
    for listener in sorted(listeners, key=lambda item: -int(item.get("port", 0))):
        for action in listener.get("default_actions", []):
            if action.get("type") != "forward":
                continue
            groups = (action.get("forward_config") or {}).get("target_groups") or [
                {"target_group_arn": action["target_group_arn"], "weight": 1}
            ]
            total = sum(int(g.get("weight", 1)) for g in groups) or 1
            forwards = [
                {
                    "name": names.get(g["target_group_arn"], g["target_group_arn"].rsplit("/", 2)[-2]),
                    "arn": g["target_group_arn"],
                    "weight": round(100 * int(g.get("weight", 1)) / total),
                }
                for g in groups
            ]
            return sorted(forwards, key=lambda f: (-f["weight"], f["name"]))
    return []


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "aws_preflight": aws_preflight,
            "aws_release_name": aws_release_name,
            "alb_forwards": alb_forwards,
            "is_loopback_url": is_loopback_url,
        }

"""Filters of the modelfleet.fleet collection for the AWS provider: the preflight and resource names."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Address space no client on the internet comes from (IANA's IPv4 and IPv6 special-purpose registries,
# RFC 6890 and successors): private, shared, loopback, link-local, documentation, benchmarking, multicast
# and reserved space. For IPv6 only the global unicast space, 2000::/3, is routed at all.
_NOT_PUBLIC_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
_NOT_PUBLIC_V6 = ["2001::/23", "2001:db8::/32", "3fff::/20"]

# The most public address space admin, SSH and builder CIDRs may open to: a /8's worth of IPv4
# (16,777,216 addresses), a /32's worth of IPv6 (2^96, what a regional registry allocates an ISP).
MAX_PUBLIC = {4: 2**24, 6: 2**96}
_BOUND_NAME = {4: "a /8, 16,777,216", 6: f"a /32, 2^96 = {2**96:,}"}

# An ACM certificate: arn:<partition>:acm:<region>:<12-digit account>:certificate/<id>.
CERTIFICATE_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:acm:(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]+):[0-9]{12}:certificate/[A-Za-z0-9-]+"
)

# sha256 digests of the example vault's secrets (molecule/shared/example-vault.yml, the tests' fixture,
# password molecule/shared/example-vault-password): a secret copied from the example is refused outside
# an emulator, and the secrets themselves are not kept here.
EXAMPLE_SECRET_DIGESTS = frozenset(
    {
        "e34c6f13ef66418586d7bf3c9c5e0f88480639c42c536e75591c18d6f3c00ea2",  # vault_alertmanager_slack_api_url
        "5bbbb1522af8be50c7eca36dcf22536732f44092971b0b1fb7402eec52a94380",  # vault_alertmanager_smtp_password
        "185e9646e13e35919f46b6df5c349e81ef95eb5e7f5f09402f2d33932693e0ed",  # vault_alertmanager_pager_webhook_url
        "c6ef13822a64aa01ebb50ca707caf43a4d1a9ddb74bb7a88e59be1b9e34ab84f",  # vault_alertmanager_pager_token
        "0dd0e2a00cf4c38f68397449247b1d575a2bc6b835a572359a8175b027dc580c",  # vault_grafana_admin_password
    }
)
SECRET_NAMES = {
    "grafana_admin_password": "the Grafana admin password",
    "alertmanager_slack_api_url": "Alertmanager's Slack webhook URL",
    "alertmanager_smtp_password": "Alertmanager's SMTP password",
    "alertmanager_pager_webhook_url": "Alertmanager's pager webhook URL",
    "alertmanager_pager_token": "Alertmanager's pager token",
    # Not secret, but in the vault too: without them Alertmanager has no mail server to send through.
    "alertmanager_smtp_smarthost": "Alertmanager's SMTP server",
    "alertmanager_smtp_username": "Alertmanager's SMTP user",
}


def _public_space() -> dict[int, list[Network]]:
    """The publicly routable networks of each IP version, disjoint."""
    space: dict[int, list[Network]] = {}
    for version, whole, excluded in (
        (4, "0.0.0.0/0", _NOT_PUBLIC_V4),
        (6, "2000::/3", _NOT_PUBLIC_V6),
    ):
        nets: list[Network] = [ipaddress.ip_network(whole)]
        for cidr in excluded:
            out = ipaddress.ip_network(cidr)
            kept: list[Network] = []
            for net in nets:
                if not net.overlaps(out):
                    kept.append(net)
                elif out.subnet_of(net):  # type: ignore[arg-type]
                    kept.extend(net.address_exclude(out))  # type: ignore[arg-type]
                # else the whole of net is excluded
            nets = kept
        space[version] = nets
    return space


PUBLIC_SPACE = _public_space()


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


def public_addresses(nets: list[Network]) -> dict[int, int]:
    """How many publicly routable addresses the union of ``nets`` holds, per IP version (4, 6).

    Overlapping networks count once; private, loopback, link-local, documentation, multicast and reserved
    space counts not at all: ``0.0.0.0/1`` and ``128.0.0.0/1`` together are the whole public IPv4 space.
    """
    counts = {}
    for version, public in PUBLIC_SPACE.items():
        union = list(ipaddress.collapse_addresses(n for n in nets if n.version == version))  # type: ignore[misc]
        counts[version] = sum(
            min(a.num_addresses, p.num_addresses)
            for a in union
            for p in public
            if a.overlaps(p)  # type: ignore[arg-type]
        )
    return counts


def _opens_world(nets: list[Network]) -> str:
    """How much more public space than the bound the networks open to ('': within it).

    The bound is ``MAX_PUBLIC``: a /8's worth of public IPv4 addresses (2^24), a /32's worth of public IPv6
    ones (2^96); a few /1s, or /2s, are the world as much as one /0 is.
    """
    counts = public_addresses(nets)
    return " and ".join(
        f"{counts[v]:,} public IPv{v} addresses (more than {_BOUND_NAME[v]})"
        for v in (4, 6)
        if counts[v] > MAX_PUBLIC[v]
    )


def aws_preflight(settings: dict[str, Any]) -> list[str]:
    """What would make the stack unsafe or unbuildable, one sentence each (empty: go ahead).

    Checked before any AWS call: the endpoint (an emulator only on loopback, never a mix of an
    emulator and AWS), HTTPS and its certificate (prod serves HTTPS only, with an ACM certificate of the
    load balancer's region), who may reach what (admin, SSH and builder CIDRs open to a /8's worth of
    public IPv4 addresses at most, a /32's worth of IPv6: ``MAX_PUBLIC``), the subnets, what a production
    environment must keep on, and no secret of the example vault (``secrets``: name -> value). Against an
    emulator (``emulated``) HTTP and the example vault are allowed. With ``purpose: operate`` (a rollback,
    a teardown, the lease) only the endpoint is checked: those runs build nothing.
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
    emulated = bool(settings.get("emulated"))
    environment = str(settings.get("environment") or "")
    # The aws_ec2 inventory cannot read the region from a variable: its regions are checked against it.
    regions = settings.get("inventory_regions")  # empty: the plugin looks in every region
    if regions and settings.get("region") not in regions:
        problems.append(
            f"modelfleet_aws_region is {settings.get('region')} but the inventory's aws_ec2.yml lists "
            f"{', '.join(regions) or 'no region'}: the inventory would not find the instances (set both alike)"
        )
    # "operate" (rollback, teardown, the lease): what the run talks to is checked, not what a build would
    # make, so that a stack built before a rule existed can still be rolled back or torn down.
    if settings.get("purpose") == "operate":
        return problems
    # Prod serves HTTPS only; against an emulator HTTP stays allowed (the emulated suite builds prod over
    # HTTP, and tests HTTPS with a certificate of the emulator's own).
    if environment == "prod" and not emulated and not settings.get("https"):
        problems.append("prod serves HTTPS only: set modelfleet_aws_https: true and modelfleet_aws_certificate_arn")
    if settings.get("https") and not settings.get("certificate_arn"):
        problems.append("HTTPS is asked for (modelfleet_aws_https) but no certificate ARN is given")
    problems.extend(_certificate_problems(str(settings.get("certificate_arn") or ""), settings.get("region")))
    # What ACM says of it (read by the preflight when HTTPS is on): missing, or not issued yet.
    status = settings.get("certificate_status")
    if settings.get("certificate_arn") and status is not None and status != "ISSUED":
        if str(status).startswith("unreadable: "):
            problems.append(
                f"ACM could not be asked about the certificate {settings['certificate_arn']}: {status[12:]}"
            )
        else:
            problems.append(
                f"the certificate {settings['certificate_arn']} is "
                + ("not in ACM in this region" if status == "" else f"{status}, not ISSUED")
                + ": a load balancer takes only an issued certificate (validate it, or give another)"
            )
    if settings.get("certificate_arn") and not settings.get("https"):
        problems.append("a certificate is given but HTTPS is off: set modelfleet_aws_https: true")
    opened = _opens_world(_networks(settings.get("admin_cidrs") or [], "admin CIDRs", problems))
    if opened:
        problems.append(
            "Prometheus, Alertmanager and Grafana would be open to the world: the admin CIDRs "
            f"(modelfleet_aws_admin_cidrs) open them to {opened}: give your office or VPN ranges"
        )
    opened = _opens_world(_networks(settings.get("ssh_cidrs") or [], "SSH CIDRs", problems))
    if opened:
        problems.append(
            f"SSH would be open to the world: the SSH CIDRs (modelfleet_aws_ssh_cidrs) open it to {opened}: "
            "give the bastion's address"
        )
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
    # Every host must be reachable by the access path chosen: the monitoring tier configures its host, and
    # ad-hoc operations reach the app hosts. (Against an emulator no instance boots: nothing to reach.)
    if access == "bastion" and "key_name" in settings and not settings.get("key_name") and not emulated:
        problems.append(
            "modelfleet_aws_access is bastion but the instances get no key pair (modelfleet_aws_key_name): "
            "no host would accept the SSH connection"
        )
    no_plugin = "session_manager_plugin" in settings and not settings.get("session_manager_plugin")
    if access == "ssm" and no_plugin and not emulated:
        problems.append(
            "modelfleet_aws_access is ssm but session-manager-plugin is not installed on this controller: "
            "install it (AWS Systems Manager user guide, 'Install the Session Manager plugin') or use a bastion"
        )
    if "builder_connection" in settings:
        problems.extend(_builder_problems(settings))
    secrets = settings.get("secrets")
    if not emulated and secrets is not None:  # the emulated runs use the example vault, on purpose
        problems.extend(_missing_secrets(secrets, environment))
        problems.extend(_example_secrets(secrets, environment))
    return problems


TEMPLATE_PLACEHOLDER = "CHANGE-ME"  # the values of inventories/*/group_vars/monitoring/vault.yml.example


def _missing_secrets(secrets: dict[str, Any], environment: str) -> list[str]:
    """The secrets the inventory was read for but does not set (no vault of its own yet), in one sentence."""
    missing = [
        SECRET_NAMES.get(key, key)
        for key, value in secrets.items()
        if not value or str(value).startswith(TEMPLATE_PLACEHOLDER)
    ]
    if not missing:
        return []
    env = environment or "<environment>"
    where = f"inventories/{env}/group_vars/monitoring/vault.yml"
    return [
        f"the monitoring tier's secrets are not set ({', '.join(missing)}): copy {where}.example to {where}, "
        f"fill it in and encrypt it (ansible-vault encrypt {where})"
    ]


def _certificate_problems(certificate: str, region: Any) -> list[str]:
    """What is wrong with an ACM certificate ARN for a load balancer in ``region`` (none given: nothing)."""
    if not certificate:
        return []
    found = CERTIFICATE_ARN.fullmatch(certificate)
    if not found:
        return [
            f"the certificate {certificate!r} is not an ACM certificate ARN "
            "(arn:aws:acm:<region>:<12-digit account>:certificate/<id>)"
        ]
    if region and found["region"] != region:
        return [
            f"the certificate is in {found['region']} but the load balancer in {region} (modelfleet_aws_region): "
            "an ALB takes a certificate of its own region (request or import it there)"
        ]
    return []


def _example_secrets(secrets: dict[str, Any], environment: str) -> list[str]:
    """The secrets whose value is one of the example vault's (compared by sha256 digest), in one sentence."""
    found = [
        SECRET_NAMES.get(key, key)
        for key, value in secrets.items()
        if value and hashlib.sha256(str(value).encode()).hexdigest() in EXAMPLE_SECRET_DIGESTS
    ]
    if not found:
        return []
    env = environment or "<environment>"
    names = found[0] if len(found) == 1 else f"{', '.join(found[:-1])} and {found[-1]}"
    return [
        f"{names} {'is' if len(found) == 1 else 'are'} the example vault's: create your own vault "
        f"(ansible-vault create inventories/{env}/group_vars/monitoring/vault.yml) before {env}"
    ]


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
        elif opened := _opens_world(cidrs):
            problems.append(
                "the builder's SSH would be open to the world: the builder CIDRs (modelfleet_aws_builder_cidrs) "
                f"open it to {opened}: give the controller's address"
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


def alb_attach(serving: list[dict[str, Any]], target_group_arn: str) -> list[dict[str, Any]]:
    """The forward that puts a release's target group on the listener without giving it a request yet.

    ``serving`` as ``alb_forwards`` returns it; the result is ``aws_alb_forward`` (``[{target_group_arn,
    weight}]``): what is served stays as it is and the new group joins at weight 0, or takes 100 % when
    nothing is served (the first release). On AWS a target group no listener forwards to has every target
    ``unused`` (Target.NotInUse) and no health check runs, so a release waits for its targets' health only
    once its group is on the listener; a weight of 0 (the API takes 0 to 999) still counts as on it.
    """
    served = [{"target_group_arn": f["arn"], "weight": int(f["weight"])} for f in serving]
    if not any(f["weight"] > 0 for f in served):
        return [{"target_group_arn": target_group_arn, "weight": 100}]
    if all(f["target_group_arn"] != target_group_arn for f in served):
        served.append({"target_group_arn": target_group_arn, "weight": 0})
    return served


def alb_promote(serving: list[dict[str, Any]], target_group_arn: str) -> list[dict[str, Any]]:
    """The forward that gives a release every request while the groups that served stay on at weight 0.

    A group that stays on the listener is still health-checked and its targets, once deregistered, drain:
    AWS reports them ``draining`` for the group's deregistration delay, in which requests in progress are
    answered; the play reads that before it deletes them. Taken off the listener
    at once, their targets would only be ``unused``, which says nothing about requests still in progress.
    """
    others = [f["arn"] for f in serving if f["arn"] != target_group_arn]
    return [{"target_group_arn": target_group_arn, "weight": 100}] + [
        {"target_group_arn": arn, "weight": 0} for arn in others
    ]


def greater_than_regex(limit: Any) -> str:
    """An anchored regular expression that matches a decimal number greater than ``limit`` and nothing else.

    AWS WAF compares a header's text, not its value: a rule that refuses a Content-Length over the
    service's body limit needs the numbers above the limit as a pattern (leading zeros allowed).
    """
    number = int(limit)
    if number < 0:
        raise ValueError(f"a body limit is a number of bytes, not {limit!r}")
    digits = str(number)
    longer = f"[1-9][0-9]{{{len(digits)},}}"
    same = []
    for index, digit in enumerate(digits):
        if digit == "9":
            continue
        rest = len(digits) - index - 1
        higher = str(int(digit) + 1) if digit == "8" else f"[{int(digit) + 1}-9]"
        same.append(digits[:index] + higher + (f"[0-9]{{{rest}}}" if rest > 1 else "[0-9]" if rest == 1 else ""))
    # A group that captures nothing: AWS WAF refuses capturing subexpressions.
    return "^0*(?:" + "|".join([longer, *same]) + ")$"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "aws_preflight": aws_preflight,
            "aws_release_name": aws_release_name,
            "alb_forwards": alb_forwards,
            "alb_attach": alb_attach,
            "alb_promote": alb_promote,
            "is_loopback_url": is_loopback_url,
            "greater_than_regex": greater_than_regex,
        }

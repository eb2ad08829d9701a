"""Filters of the modelfleet.fleet collection: address plans and batches for the local fleet.

They are pure functions of their inputs, so the release and scale logic they carry is unit-tested
(tools/tests/test_filters.py) instead of being spread over Jinja expressions.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def free_addresses(
    used: list[str], subnet: str, count: int, first_host: int = 10, slots: int | None = None
) -> list[str]:
    """The ``count`` lowest addresses of ``subnet`` from its ``first_host``-th host on that are not ``used``.

    The local fleet gives each app container a fixed address, so that the balancer's server list never
    depends on a name that disappears with a stopped container. With ``slots``, only the first ``slots``
    addresses count: the balancer lists that many servers.
    """
    network = ipaddress.ip_network(subnet)
    taken = {ipaddress.ip_address(address) for address in used if address}
    found: list[str] = []
    for offset, address in enumerate(network.hosts(), start=1):
        if offset < first_host or address in taken:
            continue
        if slots is not None and offset >= first_host + int(slots):
            break
        found.append(str(address))
        if len(found) == count:
            return found
    if slots is not None:
        raise ValueError(
            f"the balancer has {slots} host slots and only {len(found)} are free; {count} are needed "
            "(hosts of the release serving now and of the new one run side by side during a roll): "
            "raise modelfleet_local_host_slots"
        )
    raise ValueError(f"{subnet} has only {len(found)} free addresses from host {first_host} on; {count} are needed")


def fleet_hosts(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """App hosts from docker_host_info's verbose container list, by the labels they were started with."""
    hosts = []
    for container in containers:
        labels = container.get("Labels") or {}
        hosts.append(
            {
                "name": labels.get("modelfleet.host", container["Names"][0].lstrip("/")),
                "address": labels.get("modelfleet.address", ""),
                "image": labels.get("modelfleet.image", ""),
                "running": container.get("State") == "running",
            }
        )
    return sorted(hosts, key=lambda host: host["name"])


def batches(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` in consecutive batches of at most ``size`` (the release's batch size)."""
    if int(size) < 1:
        raise ValueError(f"the batch size must be at least 1, not {size}")
    size = int(size)
    return [items[i : i + size] for i in range(0, len(items), size)]


def canary_weights(percent: float, old: int, new: int, full: int = 100) -> dict[str, int]:
    """Balancer weights (1-256) that send ``percent`` % of requests to ``new`` hosts and the rest to ``old`` ones.

    Returns ``{"old": w, "new": w}`` per host. Integer weights make the share approximate: the
    closest one with weights of at most 256 is chosen, and ``share`` says what it is.
    """
    percent = float(percent)
    if not 0 < percent < 100:
        raise ValueError(f"a canary step is a share of traffic between 0 and 100 %, not {percent}")
    if old < 1 or new < 1:
        raise ValueError(f"a canary needs old and new hosts (old {old}, new {new})")
    best: tuple[float, int, int] | None = None
    for w_old in range(1, 257):
        # new * w_new / (new * w_new + old * w_old) = percent / 100
        w_new = round(percent * old * w_old / ((100 - percent) * new))
        if not 1 <= w_new <= 256:
            continue
        share = 100 * new * w_new / (new * w_new + old * w_old)
        error = abs(share - percent)
        # The weights closest to the full weight win among equally good ones.
        if (
            best is None
            or error < best[0] - 1e-9
            or (abs(error - best[0]) < 1e-9 and abs(w_old - full) < abs(best[1] - full))
        ):
            best = (error, w_old, w_new)
    if best is None:
        raise ValueError(f"no weights of 1-256 give {percent} % to {new} new host(s) beside {old}")
    _, w_old, w_new = best
    return {"old": w_old, "new": w_new, "share": round(100 * new * w_new / (new * w_new + old * w_old), 2)}


def canary_steps(steps: Any) -> list[float | int]:
    """The canary's steps (shares of requests in percent), checked: rising, each above 0 and below 100."""
    if not isinstance(steps, list | tuple) or not steps:
        raise ValueError(f"modelfleet_canary_steps must be a list of percentages, such as [5, 25, 50], not {steps!r}")
    try:
        values = [float(step) for step in steps]
    except (TypeError, ValueError):
        raise ValueError(f"modelfleet_canary_steps must hold numbers (percent), not {steps!r}") from None
    if any(not 0 < v < 100 for v in values) or values != sorted(set(values)):
        raise ValueError(
            f"modelfleet_canary_steps must rise, each step above 0 and below 100 % (the release takes the "
            f"rest once the last step passed), not {steps!r}"
        )
    return [int(v) if v.is_integer() else v for v in values]


def step_weights(baseline: list[str], canary: list[str], percent: float) -> dict[str, int]:
    """Each host's balancer weight for a canary step: ``canary`` hosts take ``percent`` % of the requests."""
    weights = canary_weights(percent, len(baseline), len(canary))
    return {**dict.fromkeys(baseline, weights["old"]), **dict.fromkeys(canary, weights["new"])}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "free_addresses": free_addresses,
            "canary_weights": canary_weights,
            "step_weights": step_weights,
            "canary_steps": canary_steps,
            "batches": batches,
            "fleet_hosts": fleet_hosts,
        }

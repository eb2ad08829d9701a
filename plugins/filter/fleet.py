"""Filters of the modelfleet.fleet collection: address plans and batches for the local fleet.

They are pure functions of their inputs, so the release and scale logic they carry is unit-tested
(tools/tests/test_filters.py) instead of being spread over Jinja expressions.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def free_addresses(used: list[str], subnet: str, count: int, first_host: int = 10) -> list[str]:
    """The ``count`` lowest addresses of ``subnet`` from its ``first_host``-th host on that are not ``used``.

    The local fleet gives each app container a fixed address, so that the load balancer's upstream
    list never depends on a name that disappears with a stopped container.
    """
    network = ipaddress.ip_network(subnet)
    taken = {ipaddress.ip_address(address) for address in used if address}
    found: list[str] = []
    for offset, address in enumerate(network.hosts(), start=1):
        if offset < first_host or address in taken:
            continue
        found.append(str(address))
        if len(found) == count:
            return found
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


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "free_addresses": free_addresses,
            "batches": batches,
            "fleet_hosts": fleet_hosts,
        }

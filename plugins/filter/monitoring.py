"""Filters of the modelfleet.fleet collection for the monitoring tier (Prometheus file discovery)."""

from __future__ import annotations

from typing import Any


def prometheus_file_sd(targets: list[dict[str, Any]], port: int) -> list[dict[str, Any]]:
    """Prometheus file_sd groups, one per host, from ``[{address, labels}]``, in a stable order.

    Each host is scraped at ``address:port`` and carries its own labels (instance, release, ...),
    so the same file always renders the same bytes for the same fleet.
    """
    groups = []
    for target in targets:
        address = str(target.get("address") or "")
        if not address:
            raise ValueError(f"a target needs an address: {target!r}")
        labels = {str(k): str(v) for k, v in sorted((target.get("labels") or {}).items())}
        groups.append({"targets": [f"{address}:{int(port)}"], "labels": labels})
    return sorted(groups, key=lambda group: group["targets"][0])


def image_release(image: str) -> str:
    """The release an image stands for: its tag (modelfleet/app:1.0.0-0123abcd -> 1.0.0-0123abcd)."""
    name = image.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else name


def fleet_targets(hosts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scrape targets of the running local app hosts (from the ``fleet_hosts`` filter)."""
    return [
        {
            "address": host["address"],
            "labels": {"instance": host["name"], "release": image_release(host["image"]), "image": host["image"]},
        }
        for host in hosts
        if host.get("running") and host.get("address")
    ]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "prometheus_file_sd": prometheus_file_sd,
            "image_release": image_release,
            "fleet_targets": fleet_targets,
        }

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location("fleet_filters", Path(__file__).parents[2] / "plugins/filter/fleet.py")
fleet = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fleet)


def test_free_addresses_skip_used_and_reserved() -> None:
    used = ["172.31.250.10", "172.31.250.12", ""]
    assert fleet.free_addresses(used, "172.31.250.0/24", 3) == ["172.31.250.11", "172.31.250.13", "172.31.250.14"]


def test_free_addresses_refuse_a_full_subnet() -> None:
    with pytest.raises(ValueError, match="only 2 free addresses"):
        fleet.free_addresses([], "10.0.0.0/29", 3, first_host=5)


def test_batches() -> None:
    assert fleet.batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert fleet.batches([], 1) == []
    with pytest.raises(ValueError, match="at least 1"):
        fleet.batches([1], 0)


def test_previous_image_is_the_last_other_image_served() -> None:
    records = [
        {"image": "app:a", "result": "succeeded"},
        {"image": "app:b", "result": "succeeded"},
        {"image": "app:c", "result": "failed"},
        {"image": "app:a", "result": "succeeded"},
    ]
    assert fleet.previous_image(records) == "app:b"
    assert fleet.previous_image(records[:2]) == "app:a"
    assert fleet.previous_image("\n".join(json.dumps(r) for r in records) + "\n") == "app:b"
    with pytest.raises(ValueError, match="nothing to roll back to"):
        fleet.previous_image(records[:1])
    with pytest.raises(ValueError, match="no successful release"):
        fleet.previous_image([])


def test_fleet_hosts_from_container_labels() -> None:
    containers = [
        {
            "Names": ["/modelfleet-app-11"],
            "State": "exited",
            "Labels": {
                "modelfleet.host": "modelfleet-app-11",
                "modelfleet.address": "10.0.0.11",
                "modelfleet.image": "a",
            },
        },
        {"Names": ["/other"], "State": "running", "Labels": None},
    ]
    assert fleet.fleet_hosts(containers) == [
        {"name": "modelfleet-app-11", "address": "10.0.0.11", "image": "a", "running": False},
        {"name": "other", "address": "", "image": "", "running": True},
    ]


def test_filters_are_registered() -> None:
    assert set(fleet.FilterModule().filters()) == {"free_addresses", "batches", "previous_image", "fleet_hosts"}

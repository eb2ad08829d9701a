from __future__ import annotations

import importlib.util
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
    assert set(fleet.FilterModule().filters()) == {
        "free_addresses",
        "batches",
        "fleet_hosts",
        "canary_weights",
        "step_weights",
        "canary_steps",
    }


_MSPEC = importlib.util.spec_from_file_location(
    "monitoring_filters", Path(__file__).parents[2] / "plugins/filter/monitoring.py"
)
monitoring = importlib.util.module_from_spec(_MSPEC)
_MSPEC.loader.exec_module(monitoring)


def test_prometheus_file_sd_groups_are_stable_and_labelled() -> None:
    targets = [
        {"address": "172.31.250.11", "labels": {"release": "r2", "instance": "app-11"}},
        {"address": "172.31.250.10", "labels": {"instance": "app-10", "release": "r1"}},
    ]
    assert monitoring.prometheus_file_sd(targets, 9180) == [
        {"targets": ["172.31.250.10:9180"], "labels": {"instance": "app-10", "release": "r1"}},
        {"targets": ["172.31.250.11:9180"], "labels": {"instance": "app-11", "release": "r2"}},
    ]
    assert monitoring.prometheus_file_sd([], 9180) == []
    with pytest.raises(ValueError, match="needs an address"):
        monitoring.prometheus_file_sd([{"labels": {}}], 9180)


def test_fleet_targets_are_the_running_hosts_with_their_release() -> None:
    hosts = [
        {"name": "modelfleet-app-10", "address": "172.31.250.10", "image": "modelfleet/app:1.0.0-abc", "running": True},
        {
            "name": "modelfleet-app-11",
            "address": "172.31.250.11",
            "image": "modelfleet/app:1.0.0-abc",
            "running": False,
        },
    ]
    assert monitoring.fleet_targets(hosts) == [
        {
            "address": "172.31.250.10",
            "labels": {"instance": "modelfleet-app-10", "release": "1.0.0-abc", "image": "modelfleet/app:1.0.0-abc"},
        }
    ]


def test_image_release_is_the_tag() -> None:
    assert monitoring.image_release("modelfleet/app:1.0.0-0123abcd") == "1.0.0-0123abcd"
    assert monitoring.image_release("registry:5000/modelfleet/app:2.0.0-ff") == "2.0.0-ff"


def test_free_addresses_stay_within_the_balancers_slots() -> None:
    used = ["172.31.250.10", "172.31.250.11"]
    assert fleet.free_addresses(used, "172.31.250.0/24", 2, slots=4) == ["172.31.250.12", "172.31.250.13"]
    with pytest.raises(ValueError, match="4 host slots and only 2 are free; 3 are needed"):
        fleet.free_addresses(used, "172.31.250.0/24", 3, slots=4)


@pytest.mark.parametrize(
    ("percent", "old", "new"),
    [(10, 2, 1), (25, 2, 1), (50, 2, 1), (5, 3, 1), (10, 20, 1), (50, 1, 2), (1, 2, 1), (99, 1, 1), (33.3, 2, 2)],
)
def test_canary_weights_give_the_new_hosts_their_share(percent: float, old: int, new: int) -> None:
    weights = fleet.canary_weights(percent, old, new)
    assert 1 <= weights["old"] <= 256
    assert 1 <= weights["new"] <= 256
    share = 100 * new * weights["new"] / (new * weights["new"] + old * weights["old"])
    assert share == pytest.approx(percent, abs=0.5)
    assert weights["share"] == pytest.approx(share, abs=0.01)


def test_canary_weights_prefer_the_full_weight_for_the_old_hosts() -> None:
    assert fleet.canary_weights(50, 2, 2) == {"old": 100, "new": 100, "share": 50.0}
    assert fleet.canary_weights(10, 2, 1) == {"old": 99, "new": 22, "share": 10.0}


@pytest.mark.parametrize(
    ("percent", "old", "new", "message"),
    [
        (0, 2, 1, "between 0 and 100"),
        (100, 2, 1, "between 0 and 100"),
        (10, 0, 1, "needs old and new"),
        (10, 2, 0, "needs old and new"),
    ],
)
def test_canary_weights_refuse_what_is_not_a_canary(percent: float, old: int, new: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fleet.canary_weights(percent, old, new)


def test_step_weights_name_every_host() -> None:
    assert fleet.step_weights(["10.0.0.10", "10.0.0.11"], ["10.0.0.12"], 10) == {
        "10.0.0.10": 99,
        "10.0.0.11": 99,
        "10.0.0.12": 22,
    }


def test_canary_steps_rise_below_100_percent() -> None:
    assert fleet.canary_steps([5, 25, "50"]) == [5.0, 25.0, 50.0]


@pytest.mark.parametrize("steps", [[], [0, 10], [10, 100], [50, 25], [10, 10], "10", [None], {"a": 1}])
def test_canary_steps_refuse_what_cannot_be_a_plan(steps: object) -> None:
    with pytest.raises(ValueError, match="modelfleet_canary_steps must"):
        fleet.canary_steps(steps)

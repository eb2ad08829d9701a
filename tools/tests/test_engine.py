"""The release engine's plan (plugins/filter/engine.py): the roll both providers execute and make plan says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "plugins/filter"))
from engine import aws_roll, canary_plan, local_roll
from fleet import canary_weights

OLD, NEW = "app:r1-aaa", "app:r2-bbb"
HOSTS = [
    {"name": "app-10", "address": "10.0.0.10", "image": OLD, "running": True},
    {"name": "app-11", "address": "10.0.0.11", "image": OLD, "running": True},
]
CANARY = {"enabled": True, "steps": [10, 50], "window": 30, "soak": 20}
SETTINGS = {"count": 2, "batch_size": 1, "monitoring": True, "changing": True, "addresses": ["10.0.0.12", "10.0.0.13"]}


def test_a_release_starts_a_batch_at_a_time_and_judges_the_first_against_every_running_host() -> None:
    roll = local_roll(HOSTS, NEW, SETTINGS, CANARY)
    assert roll["batches"] == [
        {"number": 1, "start": ["10.0.0.12"], "retire": ["10.0.0.10"]},
        {"number": 2, "start": ["10.0.0.13"], "retire": ["10.0.0.11"]},
    ]
    assert roll["retire"] == []
    assert roll["members"] == ["10.0.0.10", "10.0.0.11"]
    assert roll["previous_images"] == [OLD]
    steps = roll["canary"]
    assert [(s["number"], s["percent"], s["soak"], s["window"], s["shift"]) for s in steps] == [
        (1, 10, False, 30, False),  # joins the balancer at its first step's weights
        (2, 50, False, 30, True),
        (3, 50, True, 20, False),  # the soak keeps the last step's weights, judged over its 20 s
    ]
    ten = canary_weights(10, 2, 1)
    assert steps[0]["weights"] == {"10.0.0.10": ten["old"], "10.0.0.11": ten["old"], "10.0.0.12": ten["new"]}
    assert steps[0]["share"] == ten["share"]
    assert steps[2]["weights"] == steps[1]["weights"]


def test_hosts_on_the_target_are_kept_and_those_beyond_the_count_retired_at_the_end() -> None:
    hosts = [*HOSTS, {"name": "app-12", "address": "10.0.0.12", "image": NEW, "running": True}]
    roll = local_roll(hosts, NEW, {**SETTINGS, "count": 1, "addresses": ["10.0.0.13"]}, CANARY)
    assert roll["keep"] == ["10.0.0.12"]
    assert roll["batches"] == []
    assert roll["retire"] == ["10.0.0.10", "10.0.0.11"]
    assert roll["canary"] == []
    assert roll["no_canary"] == "nothing to start"
    shrink = local_roll([{**h, "image": NEW} for h in hosts], NEW, {**SETTINGS, "count": 2}, CANARY)
    assert shrink["retire"] == ["10.0.0.12"]


@pytest.mark.parametrize(
    ("hosts", "settings", "canary", "why"),
    [
        ([], SETTINGS, CANARY, "nothing is served yet"),
        (HOSTS, {**SETTINGS, "changing": False}, CANARY, "the fleet only grows"),
        (HOSTS, {**SETTINGS, "changing": "false"}, CANARY, "the fleet only grows"),
        (HOSTS, {**SETTINGS, "monitoring": False}, CANARY, "the gate is off"),
        (HOSTS, SETTINGS, {**CANARY, "enabled": "False"}, "the gate is off"),
        ([{**h, "running": False} for h in HOSTS], SETTINGS, CANARY, "nothing is served yet"),
    ],
)
def test_when_no_gate_judges_the_plan_says_why(hosts: list, settings: dict, canary: dict, why: str) -> None:
    roll = local_roll(hosts, NEW, settings, canary)
    assert roll["canary"] == []
    assert roll["no_canary"].startswith(why)


def test_a_bigger_batch_is_one_canary_of_several_hosts() -> None:
    hosts = [*HOSTS, {"name": "app-12", "address": "10.0.0.12", "image": OLD, "running": True}]
    settings = {**SETTINGS, "count": 3, "batch_size": 2, "addresses": ["10.0.0.13", "10.0.0.14", "10.0.0.15"]}
    roll = local_roll(hosts, NEW, settings, {**CANARY, "soak": 0})
    assert [b["start"] for b in roll["batches"]] == [["10.0.0.13", "10.0.0.14"], ["10.0.0.15"]]
    assert [b["retire"] for b in roll["batches"]] == [["10.0.0.10", "10.0.0.11"], ["10.0.0.12"]]
    weights = roll["canary"][0]["weights"]
    assert weights["10.0.0.13"] == weights["10.0.0.14"] == canary_weights(10, 3, 2)["new"]
    assert len(roll["canary"]) == 2


def test_too_few_addresses_are_refused() -> None:
    with pytest.raises(ValueError, match="2 new host"):
        local_roll(HOSTS, NEW, {**SETTINGS, "addresses": ["10.0.0.12"]}, CANARY)


def test_aws_a_release_beside_the_live_one_is_judged_at_listener_weights() -> None:
    live = {"name": "mf-r1", "desired": 3}
    roll = aws_roll(live, {"release_name": "mf-r2", "count": 2, "max_size": 6}, {**CANARY, "steps": [5, 25]})
    assert roll["capacity"] == 3  # never fewer than the live release runs now
    assert roll["beside_live"]
    assert [(s["percent"], s["weights"], s["shift"], s["soak"]) for s in roll["canary"]] == [
        (5, {"old": 95, "new": 5}, True, False),
        (25, {"old": 75, "new": 25}, True, False),
        (25, {"old": 75, "new": 25}, False, True),
    ]
    assert aws_roll(live, {"release_name": "mf-r2", "count": 2, "max_size": 2}, CANARY)["capacity"] == 2


@pytest.mark.parametrize(
    ("live", "name", "canary", "why"),
    [
        ({}, "mf-r2", CANARY, "nothing is served yet"),
        ({"name": "mf-r2", "desired": 2}, "mf-r2", CANARY, "the release is the one served"),
        ({"name": "mf-r1", "desired": 2}, "mf-r2", {**CANARY, "enabled": False}, "the gate is off"),
    ],
)
def test_aws_no_canary_cases(live: dict, name: str, canary: dict, why: str) -> None:
    roll = aws_roll(live, {"release_name": name, "count": 2}, canary)
    assert roll["canary"] == []
    assert roll["no_canary"].startswith(why)


def test_both_providers_share_the_defaults_and_refuse_the_same_steps() -> None:
    local = canary_plan({}, "local", ["a", "b"], ["c"])
    aws = canary_plan({}, "aws")
    assert [s["percent"] for s in local] == [s["percent"] for s in aws] == [10]
    assert local[0]["window"] == aws[0]["window"] == 300
    for bad in ([50, 25], [0], [100]):
        with pytest.raises(ValueError, match="modelfleet_canary_steps"):
            canary_plan({"steps": bad}, "aws")
        with pytest.raises(ValueError, match="modelfleet_canary_steps"):
            canary_plan({"steps": bad}, "local", ["a"], ["b"])


def test_a_host_an_earlier_run_left_on_the_target_is_judged_with_the_canary_not_the_baseline() -> None:
    # A release interrupted after its canary started, run again: the host already on the target serves the
    # canary's release, so it takes the canary's weight (else the release would get far more than its share)
    # and a failed step removes it too.
    hosts = [*HOSTS, {"name": "app-12", "address": "10.0.0.12", "image": NEW, "running": True}]
    roll = local_roll(hosts, NEW, {**SETTINGS, "count": 3, "addresses": ["10.0.0.13", "10.0.0.14"]}, CANARY)
    assert roll["keep"] == ["10.0.0.12"]
    assert roll["baseline"] == ["10.0.0.10", "10.0.0.11"]
    assert roll["canary_hosts"] == ["10.0.0.13", "10.0.0.12"]
    weights, expected = roll["canary"][0]["weights"], canary_weights(10, 2, 2)
    assert weights["10.0.0.12"] == weights["10.0.0.13"] == expected["new"]
    assert weights["10.0.0.10"] == expected["old"]
    assert roll["canary"][0]["share"] == expected["share"]


def test_no_running_host_on_another_image_means_no_canary() -> None:
    hosts = [{**HOSTS[0], "running": False}, {"name": "app-12", "address": "10.0.0.12", "image": NEW, "running": True}]
    roll = local_roll(hosts, NEW, {**SETTINGS, "count": 2, "addresses": ["10.0.0.13"]}, CANARY)
    assert roll["canary"] == []
    assert roll["no_canary"].startswith("no running host serves another image")


def test_an_empty_step_list_is_refused_not_replaced_by_the_default() -> None:
    with pytest.raises(ValueError, match="modelfleet_canary_steps"):
        canary_plan({"steps": []}, "aws")


def test_listener_weights_are_whole_and_the_share_is_what_they_give() -> None:
    [step] = canary_plan({"steps": [12.5]}, "aws")
    assert step["weights"] == {"old": 87, "new": 13}
    assert step["share"] == 13.0


@pytest.mark.parametrize(("value", "enabled"), [("y", True), ("t", True), ("no", False), ("false", False), (0, False)])
def test_the_gate_setting_reads_as_ansibles_bool_does(value: object, enabled: bool) -> None:
    roll = aws_roll({"name": "mf-r1"}, {"release_name": "mf-r2"}, {**CANARY, "enabled": value})
    assert bool(roll["canary"]) is enabled


def test_a_stopped_host_on_the_target_is_replaced_not_counted() -> None:
    # A host on the target image that is not running serves nothing: the fleet would be short of its count
    # for as long as it stays. It is removed like an old host, and a new one starts in its place.
    stopped = {"name": "app-12", "address": "10.0.0.12", "image": NEW, "running": False}
    running = {"name": "app-13", "address": "10.0.0.13", "image": NEW, "running": True}
    roll = local_roll([stopped, running], NEW, {**SETTINGS, "addresses": ["10.0.0.14"]}, CANARY)
    assert roll["keep"] == ["10.0.0.13"]
    assert roll["batches"] == [{"number": 1, "start": ["10.0.0.14"], "retire": ["10.0.0.12"]}]
    assert roll["retire"] == []
    assert roll["no_canary"] == "no running host serves another image to judge it against"

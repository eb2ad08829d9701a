"""The release plan (playbooks/plan.yml): what a release would do, from what is served and the settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "plugins/filter"))
from fleet import canary_weights
from plan import release_plan

FEATURES = ["f1", "f2", "f3"]
MODEL = {"name": "demo", "version": "2.0.0", "release": "r1", "features": FEATURES, "classes": [0, 1]}
SERVED = {"image": "app:r1-aaa", "model_version": "1.0.0", "contract": {"features": FEATURES, "classes": [0, 1]}}
THRESHOLDS = {
    "min_requests": "100",
    "max_error_ratio": "0.01",
    "max_error_ratio_increase": "0.005",
    "error_confidence": "0.95",
    "max_p99_seconds": "0.25",
    "max_p99_ratio": "1.5",
    "p99_tolerance_seconds": "0.002",
    "max_cpu_ratio": "1.5",
    "cpu_tolerance_seconds": "0.0005",
    "on_too_few_requests": "promote",
}
CANARY = {"enabled": True, "steps": [25], "window": 30, "soak": 0, "max_wait": 60, "thresholds": THRESHOLDS}
HOSTS = [
    {"name": "app-10", "address": "10.0.0.10", "image": "app:r1-aaa", "running": True},
    {"name": "app-11", "address": "10.0.0.11", "image": "app:r1-aaa", "running": True},
]
LOCAL = {"count": 2, "batch_size": 1, "monitoring": True, "addresses": ["10.0.0.12", "10.0.0.13"]}


def text(lines: list[str]) -> str:
    return "\n".join(lines)


def test_local_release_with_a_canary_and_batches() -> None:
    plan = release_plan(HOSTS, "local", LOCAL, CANARY, MODEL, SERVED)
    out = text(plan)
    assert plan[0].startswith("Release plan (local; nothing was changed): model demo 2.0.0, release r1")
    assert "contract: the same as the served model's 1.0.0 (app:r1-aaa)" in out
    # The share and the weights are the ones the release would set (canary_weights: 2 old hosts, 1 new).
    assert canary_weights(25, 2, 1) == {"old": 99, "new": 66, "share": 25.0}
    assert (
        "canary step 1: 25 % asked, 25 % given (balancer weights: old 99, new 66); judged over 30 s against "
        "the 2 host(s) serving now" in out
    )
    assert "start 10.0.0.12 from the new image (batch 1 of 2)" in out
    assert "batch 1 of 2 done: drain and remove app-10" in out
    assert "batch 2 of 2: start 10.0.0.13" in out
    assert "then drain and remove app-11" in out
    assert "at least 100 requests on each side, waited for up to 60 s; then too few requests means PROMOTE" in out
    assert "p99 at most 0.25 s and 1.5 x the baseline's + 2 ms" in out
    assert "time: at least 30 s of canary (1 step(s) x 30 s)" in out
    assert "early: a canary whose failed answers already exceed the baseline's plainly (z >= 3.29" in out
    # Steps are numbered; continuation lines are not.
    assert plan[1].startswith("1. contract:")
    assert all(line.startswith(("  ", "Release plan")) or line.split(".")[0].isdigit() for line in plan)


def test_steps_soak_and_a_bigger_batch() -> None:
    canary = {**CANARY, "steps": [10, 50], "soak": 120}
    hosts = [*HOSTS, {"name": "app-12", "address": "10.0.0.12", "image": "app:r1-aaa", "running": True}]
    settings = {**LOCAL, "count": 3, "batch_size": 2, "addresses": ["10.0.0.13", "10.0.0.14", "10.0.0.15"]}
    out = text(release_plan(hosts, "local", settings, canary, MODEL, SERVED))
    assert "start 10.0.0.13, 10.0.0.14 from the new image (batch 1 of 2)" in out
    assert "canary step 1: 10 % asked" in out
    assert "canary step 2: 50 % asked" in out
    assert "soak: the last step held 120 s more" in out
    assert "time: at least 180 s of canary (2 step(s) x 30 s + 120 s soak)" in out
    assert "batch 1 of 2 done: drain and remove app-10, app-11" in out
    assert "batch 2 of 2: start 10.0.0.15" in out
    assert "then drain and remove app-12" in out


def test_a_contract_change_stops_the_plan_where_the_release_would_stop() -> None:
    renamed = {**MODEL, "features": ["f1", "f2", "f3_renamed"]}
    plan = release_plan(HOSTS, "local", LOCAL, CANARY, renamed, SERVED)
    out = text(plan)
    assert "contract: changes against 1.0.0 (app:r1-aaa)" in out
    assert "f3" in out
    assert "f3_renamed" in out
    assert "STOP: the release would be refused here" in out
    assert "bake" not in out
    assert "canary" not in out
    declared = text(release_plan(HOSTS, "local", LOCAL, CANARY, renamed, SERVED, declared=True))
    assert "declared (modelfleet_release_contract_change=true): the release goes on" in declared
    assert "canary step 1" in declared


def test_hosts_already_on_the_new_image_are_kept() -> None:
    hosts = [HOSTS[0], {**HOSTS[1], "image": "app:r1-bbb"}]
    out = text(release_plan(hosts, "local", {**LOCAL, "image": "app:r1-bbb"}, CANARY, MODEL, SERVED))
    assert "keep app-11: already on app:r1-bbb" in out
    assert "start 10.0.0.12 from the new image (batch 1 of 1)" in out
    assert "10.0.0.13" not in out
    assert "batch 1 of 1 done: drain and remove app-10" in out
    same = [{**host, "image": "app:r1-bbb"} for host in HOSTS]
    out = text(release_plan(same, "local", {**LOCAL, "image": "app:r1-bbb"}, CANARY, MODEL, SERVED))
    assert "start nothing: the fleet already runs the new image" in out
    assert "record: nothing, since nothing changes" in out
    assert "canary step" not in out
    assert "drain" not in out


def test_a_kept_image_is_neither_baked_nor_checked() -> None:
    renamed = {**MODEL, "features": ["other"]}
    settings = {**LOCAL, "image": "app:r0-old", "kept_image": "app:r0-old"}
    out = text(release_plan(HOSTS, "local", settings, CANARY, renamed, SERVED))
    assert "no bake: the kept image app:r0-old" in out
    assert "contract: not checked" in out
    assert "STOP" not in out
    assert "canary step 1" in out


def test_first_deploy_and_unknown_contract() -> None:
    out = text(release_plan([], "local", LOCAL, CANARY, MODEL, {}))
    assert "no contract on record" in out
    assert "serving now: 0 host(s): none" in out
    assert "no canary: nothing is served yet" in out
    assert "drain" not in out


def test_no_canary_without_monitoring_or_with_the_gate_off() -> None:
    out = text(release_plan(HOSTS, "local", {**LOCAL, "monitoring": False}, CANARY, MODEL, SERVED))
    assert "no canary: the gate is off" in out
    out = text(release_plan(HOSTS, "local", LOCAL, {**CANARY, "enabled": False}, MODEL, SERVED))
    assert "no canary: the gate is off" in out
    assert "canary step" not in out


def test_stopped_hosts_are_not_the_baseline() -> None:
    hosts = [HOSTS[0], {**HOSTS[1], "running": False}]
    out = text(release_plan(hosts, "local", LOCAL, CANARY, MODEL, SERVED))
    assert "serving now: 1 host(s): app-10" in out
    assert "against the 1 host(s) serving now" in out


def test_aws_blue_green() -> None:
    serving = [{"name": "mf-r1-aaa", "weight": 100, "desired": 3, "image": "ami-1"}]
    settings = {"count": 2, "release_name": "mf-r1-bbb", "deregistration_delay": 30}
    canary = {**CANARY, "steps": [5, 25, 50], "window": 300, "soak": 600}
    out = text(release_plan(serving, "aws", settings, canary, MODEL, SERVED))
    assert "serving now: mf-r1-aaa (weight 100); mf-r1-aaa runs ami-1 with 3 instance(s)" in out
    # Never fewer instances than the live release runs now.
    assert "create mf-r1-bbb: launch template, Auto Scaling Group of 3 instance(s)" in out
    capped = text(release_plan(serving, "aws", {**settings, "max_size": 2}, canary, MODEL, SERVED))
    assert "Auto Scaling Group of 2 instance(s)" in capped
    assert "canary step 2: 25 % of the requests (listener weights: mf-r1-aaa 75, mf-r1-bbb 25)" in out
    assert "soak: the last step held 600 s more" in out
    assert "time: at least 1500 s of canary" in out
    assert "the listener back to mf-r1-aaa alone, mf-r1-bbb deleted" in out
    assert "promote: mf-r1-bbb takes 100 %; mf-r1-aaa stays on the listener at weight 0" in out
    assert "(deregistration delay 30 s)" in out


def test_aws_a_listener_without_a_readable_live_group_gets_no_canary() -> None:
    serving = [{"name": "mf-r1-aaa", "weight": 100}]
    settings = {"count": 2, "release_name": "mf-r1-bbb", "live": {}}
    out = text(release_plan(serving, "aws", settings, CANARY, MODEL, SERVED))
    assert "no Auto Scaling Group of a release behind it" in out
    assert "canary step" not in out
    assert "forward: the listener sends every request to mf-r1-bbb" in out


def test_aws_first_release_and_the_same_release_again() -> None:
    first = text(release_plan([], "aws", {"count": 2, "release_name": "mf-r1-bbb"}, CANARY, MODEL, {}))
    assert "serving now: nothing" in first
    assert "forward: the listener sends every request to mf-r1-bbb (the first release: no canary)" in first
    again = [{"name": "mf-r1-bbb", "weight": 100, "desired": 2, "image": "ami-2"}]
    out = text(release_plan(again, "aws", {"count": 2, "release_name": "mf-r1-bbb"}, CANARY, MODEL, SERVED))
    assert "already served: mf-r1-bbb is this release" in out
    assert "canary step" not in out
    assert "promote" not in out


@pytest.mark.parametrize("steps", [[0], [50, 25], [100], "25"])
def test_bad_canary_steps_are_refused_as_the_release_would(steps: object) -> None:
    with pytest.raises(ValueError, match="modelfleet_canary_steps"):
        release_plan(HOSTS, "local", LOCAL, {**CANARY, "steps": steps}, MODEL, SERVED)


def test_unknown_provider() -> None:
    with pytest.raises(ValueError, match="local or aws"):
        release_plan(HOSTS, "gcp", LOCAL, CANARY, MODEL, SERVED)


def test_a_stopped_host_on_the_target_is_planned_to_be_replaced() -> None:
    # No addresses given: the plan names as many new hosts as the running ones on the target leave to start.
    hosts = [
        {"name": "app-10", "address": "10.0.0.10", "image": "app:r2-bbb", "running": False},
        {"name": "app-11", "address": "10.0.0.11", "image": "app:r2-bbb", "running": True},
    ]
    settings = {"count": 2, "batch_size": 1, "monitoring": True, "image": "app:r2-bbb"}
    out = text(release_plan(hosts, "local", settings, CANARY, MODEL, SERVED))
    assert "keep app-11: already on app:r2-bbb" in out
    assert "start new host 1 from the new image (batch 1 of 1)" in out
    assert "drain and remove app-10" in out

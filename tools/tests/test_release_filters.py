"""The release record's decisions: rollback targets, the image a mixed fleet keeps, contract changes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "release_filters", Path(__file__).parents[2] / "plugins/filter/release.py"
)
assert _SPEC is not None
assert _SPEC.loader is not None
release = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(release)

FEATURES = ["f1", "f2", "f3"]
CONTRACT = {"features": FEATURES, "classes": [1, 2]}


def ok(image: str, **extra: object) -> dict[str, object]:
    return {"image": image, "result": "succeeded", "kind": "release", "release": "r", "model_version": image, **extra}


def rollback(image: str, left: str) -> dict[str, object]:
    return {"image": image, "result": "succeeded", "kind": "rollback", "from": left}


def test_a_rollback_goes_to_the_image_served_before() -> None:
    assert release.rollback_target([ok("a"), ok("b")]) == "a"
    assert release.rollback_target("\n".join(json.dumps(r) for r in [ok("a"), ok("b")]) + "\n") == "a"


def test_a_second_rollback_never_returns_to_the_release_the_first_undid() -> None:
    records = [ok("z"), ok("a"), ok("b"), rollback("a", left="b")]
    assert release.rollback_target(records) == "z"
    with pytest.raises(ValueError, match=r"no good image was served before a \(b rolled back"):
        release.rollback_target(records[1:])


def test_records_without_kind_are_releases_but_a_served_rollback_is_still_found() -> None:
    # Entries written before rollbacks were marked: the old behaviour, never worse.
    records = [{"image": "a", "result": "succeeded"}, {"image": "b", "result": "succeeded"}]
    assert release.rollback_target(records) == "a"


def test_canary_rolled_back_and_failed_images_are_never_targets() -> None:
    records = [ok("a"), ok("b"), {"image": "c", "result": "rolled back"}, {"image": "d", "result": "failed"}]
    assert release.rollback_target(records) == "a"
    assert release.rollback_target(records, serving=["b"]) == "a"


def test_the_fleet_not_the_record_says_what_is_served() -> None:
    # The record's last success is b, but the fleet serves a (b's release was undone by hand): back from a.
    records = [ok("z"), ok("a"), ok("b")]
    assert release.rollback_target(records, serving=["a"]) == "z"


def test_an_interrupted_release_goes_back_to_the_good_image_it_was_leaving() -> None:
    # b was released after a, then c was interrupted half way with a and c both serving (c has no record).
    records = [ok("a"), ok("b"), ok("a", kind="rollback", **{"from": "b"})]
    assert release.rollback_target(records, serving=["a", "c"]) == "a"


def started(image: str, kind: str = "release", left: str = "") -> dict[str, object]:
    return {"image": image, "result": "started", "kind": kind, "from": left}


def test_an_interrupted_rollback_is_finished_never_undone() -> None:
    # b was rolled back towards a; the run was killed with a and b both serving. Without the record of its
    # start, b (the newest good image served) would win: the next rollback would "go back" to the very image
    # the operator was leaving, and site.yml would keep it.
    records = [ok("z"), ok("a"), ok("b"), started("a", "rollback", left="b")]
    assert release.unfinished(records) == records[-1]
    assert release.rollback_target(records, serving=["a", "b"]) == "a"
    assert release.rollback_target(records, serving=["b"]) == "a"  # killed before any host of a started
    assert release.keep_image(records, ["a", "b"]) == "a"
    # Once finished, b stays left: a later rollback goes further back, never to b.
    finished = [*records, rollback("a", left="b")]
    assert release.unfinished(finished) == {}
    assert release.rollback_target(finished, serving=["a"]) == "z"
    # Without the started entry (the old record), the mixed fleet's newest good image was b.
    assert release.keep_image(records[:-1], ["a", "b"]) == "b"


def test_a_rollback_that_failed_leaves_what_it_was_leaving_good() -> None:
    # The rollback from x started and then failed (its hosts never got ready): x still serves, as good as
    # before; an interrupted release y after it goes back to x, not to y (never judged) nor further back.
    records = [
        ok("a"),
        ok("x"),
        started("a", "rollback", left="x"),
        {"image": "a", "result": "failed", "kind": "rollback"},
    ]
    assert release.keep_image([*records, started("y")], ["x", "y"]) == "x"
    assert release.rollback_target([*records, started("y")], serving=["x", "y"]) == "x"
    assert release.rollback_target(records, serving=["x"]) == "a"
    # An image a canary rolled back before the rollback started stays bad.
    before = [ok("a"), ok("x"), {"image": "x", "result": "rolled back"}, ok("b")]
    undone = [*before, started("a", "rollback", left="x,b"), {"image": "a", "result": "failed", "kind": "rollback"}]
    assert release.keep_image([*undone, started("y")], ["x", "y"]) == "x"  # served once: before one never judged
    assert release.rollback_target(undone, serving=["b"]) == "a"


def test_an_interrupted_release_is_undone_and_its_start_judges_nothing() -> None:
    records = [ok("a"), ok("b"), started("c")]
    assert release.unfinished(records)["image"] == "c"
    assert release.rollback_target(records, serving=["b", "c"]) == "b"
    assert release.keep_image(records, ["b", "c"]) == "b"
    assert release.rollback_target(records, serving=["b"]) == "a"  # c never took over: an ordinary rollback
    # On AWS the release the listener favours while another is in flight is where a rollback goes.
    assert release.rollback_target(records, serving=["b"], live="b") == "b"
    assert release.rollback_target([started("c")], live="b") == "b"


def test_the_status_says_a_run_started_and_never_ended() -> None:
    lines = release.status_report([], [ok("a"), started("b", "rollback", left="a")])
    assert "last change: rollback started at None, b" in lines[-1]
    assert "no result recorded yet: in flight if a run holds the lease, else it stopped without one" in lines[-1]


def test_a_deliberate_re_release_makes_an_image_good_again() -> None:
    records = [ok("a"), ok("b"), rollback("a", left="b"), ok("b")]
    assert release.rollback_target(records) == "a"


def test_no_record_no_rollback() -> None:
    with pytest.raises(ValueError, match="no successful release"):
        release.rollback_target([])
    with pytest.raises(ValueError, match="nothing to roll back to"):
        release.rollback_target([ok("a")])


def test_a_mixed_fleet_keeps_the_newest_good_image_by_the_record_not_by_name() -> None:
    records = [ok("app:9"), ok("app:10")]
    assert release.keep_image(records, ["app:9", "app:10"]) == "app:10"  # by name, 9 sorts last
    assert release.keep_image([*records, {"image": "app:10", "result": "rolled back"}], ["app:9", "app:10"]) == "app:9"
    assert release.keep_image([], ["app:1", "app:2"]) == "app:2"
    with pytest.raises(ValueError, match="serves no image"):
        release.keep_image(records, [])


def test_image_facts_come_from_the_release_that_shipped_it() -> None:
    records = [ok("a", contract=CONTRACT), rollback("a", left="b")]
    assert release.image_facts(records, "a") == {"release": "r", "model_version": "a", "contract": CONTRACT}
    assert release.image_facts(records, "x") == {"release": "", "model_version": "", "contract": {}}


def test_served_contract_follows_the_fleet() -> None:
    other = {"features": ["g1"], "classes": [1]}
    records = [ok("a", contract=CONTRACT), ok("b", contract=other)]
    assert release.served_contract(records)["contract"] == other
    assert release.served_contract(records, serving=["a"])["contract"] == CONTRACT
    assert release.served_contract([ok("a")]) == {}
    assert release.served_contract([]) == {}


def test_a_renamed_feature_is_a_contract_change() -> None:
    renamed = {"features": ["f1", "f2", "f3_new"], "classes": [1, 2]}
    assert release.contract_changes(CONTRACT, renamed) == [
        "features no longer accepted: f3",
        "features now required: f3_new",
    ]


def test_order_and_classes_are_the_contract_too() -> None:
    swapped = {"features": ["f2", "f1", "f3"], "classes": [1, 2, 3]}
    assert release.contract_changes(CONTRACT, swapped) == [
        "features in another order (v2 tensors are read by position): f2 (2 -> 1), f1 (1 -> 2)",
        "classes were 1, 2; now 1, 2, 3",
    ]


def test_the_same_contract_or_an_unknown_one_is_no_change() -> None:
    assert release.contract_changes(CONTRACT, {"features": list(FEATURES), "classes": ["1", "2"]}) == []
    assert release.contract_changes({}, CONTRACT) == []
    assert release.contract_changes(CONTRACT, None) == []


def test_the_status_says_what_each_host_serves_who_holds_the_lease_and_the_last_verdict() -> None:
    records = [
        {"image": "app:1-a", "result": "succeeded", "kind": "release", "release": "1", "model_version": "1.0.0"},
        {
            "image": "app:1-b",
            "result": "succeeded",
            "kind": "release",
            "release": "1",
            "model_version": "2.0.0",
            "time": "2026-12-04T10:00:00Z",
            "canary": {
                "verdict": "promote",
                "canary": {"requests": 500.0, "error_ratio": 0.0, "p99_seconds": 0.0042},
                "baseline": {"requests": 1500.0, "error_ratio": 0.001, "p99_seconds": None},
                "steps": [
                    {"step": 10.0, "verdict": "promote"},
                    {"step": 50.0, "verdict": "promote", "soak": False},
                    {"step": 50.0, "verdict": "promote", "soak": True},
                ],
            },
        },
    ]
    hosts = [
        {"name": "app-11", "image": "app:1-b", "state": "ready", "weight": 100, "health": "up"},
        {"name": "app-10", "image": "app:1-a", "state": "drain", "weight": 100, "health": "up"},
    ]
    lease = {"what": "release.yml", "owner": "ops@ctl", "pid": 42, "started": 0, "expires": 7200}
    assert release.status_report(hosts, records, lease) == [
        "app-10: app:1-a (release 1, model 1.0.0); state drain, weight 100, health up",
        "app-11: app:1-b (release 1, model 2.0.0); state ready, weight 100, health up",
        "lease held by release.yml of ops@ctl (pid 42) since 1970-01-01T00:00:00Z, until 1970-01-01T02:00:00Z",
        "last change: release succeeded at 2026-12-04T10:00:00Z, app:1-b; canary promote (steps: 10.0 % promote, "
        "50.0 % promote, 50.0 % soak promote); canary 500 requests, errors 0.00%, p99 4.2 ms; "
        "baseline 1500 requests, errors 0.10%, p99 n/a",
    ]


def test_the_status_of_an_empty_fleet() -> None:
    assert release.status_report([], "", "") == ["no host serves", "no run holds the lease", "no release recorded"]


def test_pruning_keeps_what_is_served_the_rollback_target_and_the_last_good_releases() -> None:
    records = [
        {"image": "a", "result": "succeeded", "kind": "release"},
        {"image": "b", "result": "succeeded", "kind": "release"},
        {"image": "c", "result": "rolled back", "kind": "release"},
        {"image": "d", "result": "rolled back", "kind": "release"},
        {"image": "e", "result": "failed", "kind": "release"},
    ]
    # b serves; its rollback target is a, however many bakes (c, d, e) came since.
    assert release.protected_images(records, ["b"], 1) == ["b", "a"]
    images = [{"Id": f"sha-{n}", "RepoTags": [n], "Created": t} for t, n in enumerate("abcde")]
    pruned = release.prune_candidates(
        images, 2, release.protected_images(records, ["b"], 1), "Id", "Created", "RepoTags"
    )
    # The two newest (e, d) stay by age; b and a by the record; c goes.
    assert [image["RepoTags"] for image in pruned] == [["c"]]


def test_pruning_by_age_alone_without_a_record() -> None:
    images = [{"image_id": f"ami-{n}", "creation_date": f"2026-01-0{n}"} for n in range(1, 6)]
    assert release.protected_images([], [], 3) == []
    pruned = release.prune_candidates(images, 3, ["ami-1"], "image_id", "creation_date")
    assert [image["image_id"] for image in pruned] == ["ami-2"]

"""Filters of the modelfleet.fleet collection: what the release record says, for both providers.

The release record holds one entry per attempt, oldest first (``build/state/releases.jsonl`` locally,
``releases/*.json`` in the model bucket on AWS): ``image``, ``result`` (started, succeeded, failed,
rolled back), ``kind`` (release or rollback), for a rollback the image it left (``from``), and the served model's
contract (``contract``: features in order, classes). These pure functions decide from it which image a
rollback goes to, which image a fleet of mixed images keeps, and whether a new model breaks the
contract of the one served; they are unit-tested in tools/tests/test_release_filters.py.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

Record = dict[str, Any]


def records_of(records: list[Record] | str | None) -> list[Record]:
    """The record as a list, from JSON lines or an already parsed list (oldest first)."""
    if records is None:
        return []
    if isinstance(records, str):
        return [json.loads(line) for line in records.splitlines() if line.strip()]
    return [record for record in records if isinstance(record, dict)]


def _judged(records: list[Record]) -> tuple[list[str], set[str]]:
    """The images served after a successful change, in order, and the images found bad since.

    An image is bad once a canary gate rolled it back or a rollback set out to leave it (from the
    moment it started: an interrupted rollback still says the operator found it bad, unless the same
    rollback then failed and the fleet kept serving it); a later successful release of the same image
    (a deliberate re-release) makes it good again.
    """
    served: list[str] = []
    bad: set[str] = set()
    marked: set[str] = set()  # what the last rollback's start marked, until its result says otherwise
    for record in records:
        image, result = record.get("image") or "", record.get("result")
        left = {name for name in str(record.get("from") or "").split(",") if name}
        if record.get("kind") == "rollback" and result == "started":
            marked = left - bad
            bad |= left
            continue
        if record.get("kind") == "rollback" and result in ("failed", "rolled back"):
            bad -= marked  # the rollback never happened: what it was leaving still serves, as good as before
        marked = set()
        if record.get("kind") == "rollback":
            if result == "succeeded":
                bad |= left
                if image:
                    served.append(image)
        elif result == "succeeded" and image:
            bad.discard(image)
            served.append(image)
        elif result == "rolled back" and image:
            bad.add(image)
    return served, bad


def unfinished(records: list[Record] | str | None) -> Record:
    """The run the record saw start and never end ({} if none): the last entry, when it says "started".

    Every change writes "started" before it touches a host and its result after; the lease keeps two
    from overlapping, so a "started" last entry is a run in flight or one that was interrupted.
    """
    parsed = records_of(records)
    return parsed[-1] if parsed and parsed[-1].get("result") == "started" else {}


def rollback_target(records: list[Record] | str | None, serving: list[str] | None = None, live: str = "") -> str:
    """The image a rollback goes to: the last good image before the one served now.

    ``serving`` are the images the fleet serves now (from the fleet itself, not the record); without it
    the record's last served image stands for it. A fleet serving two images (a release interrupted
    half way) goes back to the newest good image among them; on AWS, ``live`` (the image of the release
    the listener favours while another one is in flight) is that image. Images that a canary rolled
    back or that a rollback left are never a target, so a second rollback goes further back instead of
    returning to the release the first one undid. A rollback that was interrupted is finished: its
    target stays the target, and the image it set out to leave is never returned to.
    """
    parsed = records_of(records)
    served, bad = _judged(parsed)
    pending = unfinished(parsed)
    if pending.get("kind") == "rollback" and pending.get("image"):
        return str(pending["image"])
    if live and live not in bad:
        return live
    if not served:
        raise ValueError("the release record has no successful release: nothing to roll back to")
    now = [image for image in dict.fromkeys([*(serving or []), live]) if image]
    if len(now) > 1:
        for image in reversed(served):
            if image in now and image not in bad:
                return image
    current = set(now) or {served[-1]}
    # Before the last time the current image went live: an image served after it is not "back".
    last = max((i for i, image in enumerate(served) if image in current), default=len(served))
    for image in reversed(served[:last]):
        if image not in current and image not in bad:
            return image
    left = ", ".join(sorted(current))
    skipped = sorted(bad - current)
    why = f" ({', '.join(skipped)} rolled back or left by a rollback)" if skipped else ""
    raise ValueError(f"no good image was served before {left}{why}: nothing to roll back to")


def keep_image(records: list[Record] | str | None, serving: list[str]) -> str:
    """Of the images a fleet serves now, the one a converge keeps: the newest good one by the record.

    Used when a fleet serves more than one image (a release or a rollback was interrupted): the record,
    not the images' names, says which one was released last and not found bad, so an interrupted
    release goes back to the image it was leaving and an interrupted rollback goes on to its target
    (the image it set out to leave is bad from its start); with no record of any of them, the last by
    name.
    """
    images = sorted({image for image in serving if image})
    if not images:
        raise ValueError("the fleet serves no image")
    served, bad = _judged(records_of(records))
    for image in reversed(served):
        if image in images and image not in bad:
            return image
    # None is good: one that was served after a successful change at least, before one never judged.
    for image in reversed(served):
        if image in images:
            return image
    return images[-1]


def protected_images(records: list[Record] | str | None, serving: list[str], keep: int) -> list[str]:
    """Images pruning must keep: the ones served now, the rollback target, and the last ``keep`` good ones.

    Good: served after a successful change and not rolled back or left by a rollback since, newest first.
    """
    served, bad = _judged(records_of(records))
    protected = [image for image in dict.fromkeys(serving) if image]
    with contextlib.suppress(ValueError):  # nothing to roll back to: nothing more to protect for it
        protected.append(rollback_target(records, serving))
    good = [image for image in reversed(list(dict.fromkeys(reversed(served)))) if image not in bad]
    protected += list(reversed(good))[: int(keep)]
    return list(dict.fromkeys(protected))


def prune_candidates(
    images: list[Record], keep: int, protected: list[str], id_key: str, time_key: str, names_key: str = ""
) -> list[Record]:
    """The images to remove: older than the newest ``keep`` and none of ``protected`` (by id or by name)."""
    newest = sorted(images, key=lambda image: str(image.get(time_key, "")), reverse=True)
    wanted = set(protected)

    def kept(image: Record) -> bool:
        names = {str(image.get(id_key, ""))} | set(image.get(names_key) or [] if names_key else [])
        return bool(names & wanted)

    return [image for image in newest[int(keep) :] if not kept(image)]


def image_facts(records: list[Record] | str | None, image: str) -> Record:
    """What the record knows of an image: the release, model version and contract it was shipped with."""
    for record in reversed(records_of(records)):
        if record.get("image") == image and record.get("release"):
            return {
                "release": record.get("release", ""),
                "model_version": record.get("model_version", ""),
                "contract": record.get("contract") or {},
            }
    return {"release": "", "model_version": "", "contract": {}}


def served_contract(records: list[Record] | str | None, serving: list[str] | None = None) -> Record:
    """The contract of the model served now, with the image and version it belongs to ({} if unknown)."""
    parsed = records_of(records)
    served, _ = _judged(parsed)
    now = [image for image in dict.fromkeys(serving or []) if image] or served[-1:]
    for image in now:
        facts = image_facts(parsed, image)
        if facts["contract"]:
            return {"image": image, **facts}
    return {}


def contract_changes(served: Record | None, new: Record | None) -> list[str]:
    """How a new model's contract differs from the served one's, one sentence each (empty: compatible).

    The contract is what clients send and read: the features, by name and in order (v2 clients send a
    tensor by position), and the classes. An unknown contract on either side is no change to report.
    """
    if not served or not new:
        return []
    changes: list[str] = []
    old_features = [str(f) for f in served.get("features") or []]
    new_features = [str(f) for f in new.get("features") or []]
    removed = [f for f in old_features if f not in new_features]
    added = [f for f in new_features if f not in old_features]
    if removed:
        changes.append(f"features no longer accepted: {', '.join(removed)}")
    if added:
        changes.append(f"features now required: {', '.join(added)}")
    if not removed and not added and old_features != new_features:
        moved = [
            f"{f} ({old_features.index(f) + 1} -> {i + 1})" for i, f in enumerate(new_features) if old_features[i] != f
        ]
        changes.append(f"features in another order (v2 tensors are read by position): {', '.join(moved)}")
    old_classes = [str(c) for c in served.get("classes") or []]
    new_classes = [str(c) for c in new.get("classes") or []]
    if old_classes and new_classes and old_classes != new_classes:
        changes.append(f"classes were {', '.join(old_classes)}; now {', '.join(new_classes)}")
    return changes


def _iso(stamp: Any) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(stamp)))
    except (TypeError, ValueError):
        return "?"


def status_report(
    hosts: list[Record], records: list[Record] | str | None, lease: Record | str | None = None
) -> list[str]:
    """What an operator reads first, one line each: every host (or target group) with what it serves and
    its state, the run that holds the lease, and the last change with its canary verdict.

    ``hosts``: ``{name, image, state, weight, health}`` (state and weight at the balancer or listener).
    """
    records = records_of(records)
    lines = []
    for host in sorted(hosts, key=lambda h: str(h.get("name", ""))):
        facts = image_facts(records, str(host.get("image", "")))
        served = f"release {facts['release'] or '?'}, model {facts['model_version'] or '?'}"
        place = ", ".join(
            f"{key} {host[key]}" for key in ("state", "weight", "health", "targets") if host.get(key) not in (None, "")
        )
        lines.append(f"{host.get('name')}: {host.get('image') or '?'} ({served}); {place or 'not at the balancer'}")
    if not hosts:
        lines.append("no host serves")
    if isinstance(lease, str):
        lease = json.loads(lease) if lease.strip() else None
    if lease:
        lines.append(
            f"lease held by {lease.get('what', 'a run')} of {lease.get('owner', '?')} (pid {lease.get('pid', '?')}) "
            f"since {_iso(lease.get('started'))}, until {_iso(lease.get('expires'))}"
        )
    else:
        lines.append("no run holds the lease")
    if records:
        last = records[-1]
        line = (
            f"last change: {last.get('kind', 'release')} {last.get('result')} at {last.get('time')}, "
            f"{last.get('image')}"
        )
        canary = last.get("canary") or {}
        if canary:
            steps = ", ".join(
                f"{step.get('step')} %{' soak' if step.get('soak') else ''} {step.get('verdict')}"
                for step in canary.get("steps", [])
            )
            line += f"; canary {canary.get('verdict')}" + (f" (steps: {steps})" if steps else "")
            for side in ("canary", "baseline"):
                numbers = canary.get(side) or {}
                if numbers:
                    p99 = numbers.get("p99_seconds")
                    line += (
                        f"; {side} {numbers.get('requests', 0):.0f} requests, errors "
                        f"{100 * float(numbers.get('error_ratio', 0)):.2f}%, p99 "
                        + (f"{1000 * p99:.1f} ms" if p99 is not None else "n/a")
                    )
        if last.get("detail"):
            line += f"; {last['detail']}"
        if last.get("result") == "started":
            line += (
                "; no result recorded yet: in flight if a run holds the lease, else it stopped without one "
                "(killed, or failed outside its checks): site.yml settles it (an interrupted release goes back "
                "to the image it was leaving, an interrupted rollback on to its target)"
            )
        lines.append(line)
    else:
        lines.append("no release recorded")
    return lines


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "protected_images": protected_images,
            "prune_candidates": prune_candidates,
            "status_report": status_report,
            "records_of": records_of,
            "rollback_target": rollback_target,
            "keep_image": keep_image,
            "unfinished": unfinished,
            "image_facts": image_facts,
            "served_contract": served_contract,
            "contract_changes": contract_changes,
        }

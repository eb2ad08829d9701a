"""The release engine's plan: what a roll does, computed once from explicit inputs.

Both providers execute the plan these functions return, step by step, and ``make plan`` prints the same
plan (plan.py), so what an operator reads is what a release does:

- ``local_roll``: which hosts are kept, which are started in which batch, which old hosts are drained and
  removed after each batch and at the end, and the canary's steps (the first batch against every running
  host) with the balancer weights of each.
- ``aws_roll``: the release's capacity, whether it goes beside a live release, and the canary's steps with
  the listener weights of each.

A canary step is ``{number, percent, soak, window, share, weights, shift}``: the share of requests asked
(``percent``) and given (``share``, what the weights make of it), the weights to set (locally per host, on
AWS ``{old, new}`` for the live and the new target group), whether the step sets them (``shift``: a local
canary joins at its first step's weights; the soak keeps the last step's) and how long it is judged over.
The soak is the last step again, held ``soak`` seconds and judged over all of them.
"""

from __future__ import annotations

from typing import Any

try:  # as a collection plugin
    from ansible_collections.modelfleet.fleet.plugins.filter.fleet import (
        batches,
        canary_steps,
        canary_weights,
        step_weights,
    )
except ImportError:  # as a module beside them (unit tests)
    from fleet import batches, canary_steps, canary_weights, step_weights  # type: ignore[no-redef]

Step = dict[str, Any]

# The defaults of every provider: a release is judged unless the gate is turned off.
DEFAULT_STEPS = [10]
DEFAULT_WINDOW = 300


def _flag(value: Any, default: bool = True) -> bool:
    """A boolean from a setting that may come as a string ("false") from an inventory or -e."""
    if value is None or value == "":
        return default
    if isinstance(value, str):  # as Ansible's bool filter reads a string
        return value.strip().lower() in ("1", "true", "t", "yes", "y", "on")
    return bool(value)


def canary_enabled(canary: dict[str, Any]) -> bool:
    return _flag(canary.get("enabled"), True)


def canary_plan(
    canary: dict[str, Any], provider: str, baseline: list[str] | None = None, new: list[str] | None = None
) -> list[Step]:
    """The canary's steps, then the soak. Locally ``baseline`` and ``new`` are the hosts' addresses."""
    steps = canary_steps(DEFAULT_STEPS if canary.get("steps") in (None, "") else canary["steps"])
    window, soak = int(canary.get("window") or DEFAULT_WINDOW), int(canary.get("soak") or 0)
    plan: list[Step] = []
    for number, percent in enumerate(steps, start=1):
        if provider == "local":
            baseline, new = list(baseline or []), list(new or [])
            share = canary_weights(percent, len(baseline), len(new))["share"]
            weights: dict[str, int] = step_weights(baseline, new, percent)
            shift = number > 1  # the canary joined the balancer at its first step's weights
        else:
            # Listener weights are whole numbers: the new group's is the step rounded half up, and the share
            # is what the weights give.
            new_weight = max(1, min(99, int(float(percent) + 0.5)))
            share, weights, shift = float(new_weight), {"old": 100 - new_weight, "new": new_weight}, True
        plan.append(
            {
                "number": number,
                "percent": percent,
                "soak": False,
                "window": window,
                "share": share,
                "weights": weights,
                "shift": shift,
            }
        )
    if plan and soak > 0:
        plan.append({**plan[-1], "number": len(plan) + 1, "soak": True, "window": soak, "shift": False})
    return plan


def local_roll(
    hosts: list[Step],
    target: str,
    settings: dict[str, Any],
    canary: dict[str, Any],
) -> dict[str, Any]:
    """The roll of the local fleet onto ``target`` (playbooks/providers/local/fleet_roll.yml executes it).

    ``hosts``: the app hosts (fleet_hosts: name, address, image, running). ``settings``: ``count``,
    ``batch_size``, ``addresses`` (free addresses for new hosts, lowest first), ``monitoring`` (a
    monitoring host exists) and ``changing`` (release.yml or rollback.yml: the served image changes;
    site.yml only grows or shrinks the fleet, unjudged).
    """
    running = [host for host in hosts if host.get("running", True)]
    # A host on the target that is not running serves nothing: it is replaced like an old host, not counted.
    keep = [host for host in running if target and host.get("image") == target]
    old = [host for host in hosts if host not in keep]
    count, size = int(settings.get("count", 2)), int(settings.get("batch_size", 1))
    wanted = max(count - len(keep), 0)
    addresses = list(settings.get("addresses") or [])
    if len(addresses) < wanted:
        raise ValueError(f"{wanted} new host(s) need as many free addresses; {len(addresses)} given")
    new = addresses[:wanted]
    members = sorted(host["address"] for host in running)
    kept = {host["address"] for host in keep}
    # The canary's side is every running host on the target (kept from an earlier run, and the first
    # batch); the baseline is the running hosts on other images.
    baseline = [address for address in members if address not in kept]
    names = {host["address"]: host["name"] for host in hosts}
    olds = [host["address"] for host in old]
    planned = []
    for number, batch in enumerate(batches(new, size), start=1):
        retire, olds = olds[: len(batch)], olds[len(batch) :]
        planned.append({"number": number, "start": batch, "retire": retire})
    end = olds + [host["address"] for host in keep[count:]]
    first = planned[0]["start"] if planned else []
    if not first:
        why = "nothing to start"
    elif not running:
        why = "nothing is served yet"
    elif not old or not baseline:
        why = "no running host serves another image to judge it against"
    elif not _flag(settings.get("changing"), True):
        why = "the fleet only grows: the image it serves does not change"
    elif not canary_enabled(canary) or not _flag(settings.get("monitoring"), True):
        why = "the gate is off (modelfleet_canary_enabled) or there is no monitoring host"
    else:
        why = ""
    return {
        "target": target,
        "keep": [host["address"] for host in keep],
        "old": [host["address"] for host in old],
        "members": members,
        "names": names,
        "previous_images": sorted({host["image"] for host in old if host.get("image") not in ("", None, target)}),
        "batches": planned,
        "retire": end,
        "baseline": baseline,
        # What a failed canary removes: the first batch, and running hosts an earlier run left on the target.
        "canary_hosts": first + [address for address in members if address in kept] if not why else [],
        "canary": [] if why else canary_plan(canary, "local", baseline, first + [a for a in members if a in kept]),
        "no_canary": why,
    }


def aws_roll(live: dict[str, Any], settings: dict[str, Any], canary: dict[str, Any]) -> dict[str, Any]:
    """The release's Auto Scaling Group beside the live one (playbooks/providers/aws/fleet.yml executes it).

    ``live``: the release the listener serves ({} if none: name, desired). ``settings``: ``release_name``,
    ``count`` (desired capacity), ``max_size``.
    """
    name = settings.get("release_name", "")
    # Never fewer instances than the live release runs now (scaled out under load), so that the release can
    # take every request once promoted; at most the group's maximum.
    capacity = max(int(settings.get("count", 2)), int((live or {}).get("desired", 0) or 0))
    if settings.get("max_size") not in (None, ""):
        capacity = min(capacity, int(settings["max_size"]))
    beside = bool(live) and live.get("name") != name
    if not live:
        why = "nothing is served yet"
    elif not beside:
        why = "the release is the one served"
    elif not canary_enabled(canary):
        why = "the gate is off (modelfleet_canary_enabled)"
    else:
        why = ""
    return {
        "release_name": name,
        "capacity": capacity,
        "beside_live": beside,
        "canary": [] if why else canary_plan(canary, "aws"),
        "no_canary": why,
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"local_roll": local_roll, "aws_roll": aws_roll, "canary_plan": canary_plan}

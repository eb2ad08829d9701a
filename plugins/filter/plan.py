"""The plan of a release, said before anything changes (playbooks/plan.yml, ``make plan``).

``release_plan`` lays out what release.yml would do from what is served now and the settings it would
use: the contract guard's verdict, the hosts (or Auto Scaling Group) it would start, each canary step with
the share of requests the balancer's weights or the listener's give it, the soak, the gate's thresholds
and no-data rule, and what goes at the end. It says the plan the release engine computes and both
providers execute (engine.local_roll, engine.aws_roll), so the batches, steps and weights it shows are
the ones the release sets.
"""

from __future__ import annotations

from typing import Any

try:  # as a collection plugin
    from ansible_collections.modelfleet.fleet.plugins.filter.engine import aws_roll, local_roll
    from ansible_collections.modelfleet.fleet.plugins.filter.release import contract_changes
except ImportError:  # as a module beside them (unit tests)
    from engine import aws_roll, local_roll  # type: ignore[no-redef]
    from release import contract_changes  # type: ignore[no-redef]

Step = dict[str, Any]


def _contract(model: dict[str, Any], served: dict[str, Any], declared: bool) -> tuple[list[str], bool]:
    """The contract guard's verdict as lines, and whether the release would stop there."""
    if not served or not served.get("contract"):
        return ["contract: no contract on record for the model served now; the guard cannot compare"], False
    new = {"features": model.get("features", []), "classes": model.get("classes", [])}
    changes = contract_changes(served["contract"], new)
    against = f"{served.get('model_version', '?')} ({served.get('image', '?')})"
    if not changes:
        return [f"contract: the same as the served model's {against}"], False
    lines = [f"contract: changes against {against}: {'; '.join(changes)}"]
    if declared:
        return [*lines, "  declared (modelfleet_release_contract_change=true): the release goes on"], False
    return [
        *lines,
        "  STOP: the release would be refused here, before any builder or host is touched; clients that send "
        "what they send today would be refused. Declare it with -e modelfleet_release_contract_change=true "
        "if they are ready.",
    ], True


def _gate(canary: dict[str, Any]) -> list[str]:
    t = {key: str(value) for key, value in canary.get("thresholds", {}).items()}

    def num(key: str, default: float, scale: float = 1) -> str:
        return f"{scale * float(t.get(key, default)):g}"

    return [
        "gate, at each step: client-visible errors (5xx, and 4xx other than 429, on every prediction route) at "
        f"most {num('max_error_ratio', 0.01, 100)} % and no more than the baseline's + "
        f"{num('max_error_ratio_increase', 0.005, 100)} % ({num('error_confidence', 0.95)} confidence); p99 at "
        f"most {num('max_p99_seconds', 0.5)} s and {num('max_p99_ratio', 1.5)} x the baseline's + "
        f"{num('p99_tolerance_seconds', 0.01, 1000)} ms; CPU per request at most {num('max_cpu_ratio', 1.5)} x the "
        f"baseline's + {num('cpu_tolerance_seconds', 0.0005, 1000)} ms",
        f"  no data: at least {int(float(t.get('min_requests', 500)))} requests on each side, waited for up to "
        f"{int(canary.get('max_wait', 900))} s; then too few requests means "
        f"{t.get('on_too_few_requests', 'rollback').upper()}; a canary that gets far less than its share of "
        "requests is rolled back",
        "  early: a canary whose failed answers already exceed the baseline's plainly (z >= 3.29, each side "
        f"with a fifth of {int(float(t.get('min_requests', 500)))} requests) is rolled back at the first poll "
        "that shows it, before its window ends",
    ]


def _canary_steps(steps: list[Step], share_of: Any, judged_against: str) -> list[str]:
    lines = []
    for step in steps:
        if step["soak"]:
            lines.append(f"soak: the last step held {step['window']} s more and judged again over all of it")
        else:
            lines.append(
                f"canary step {step['number']}: {share_of(step)}; judged over {step['window']} s against "
                f"{judged_against}"
            )
    shifts = [step for step in steps if not step["soak"]]
    soak = sum(step["window"] for step in steps if step["soak"])
    window = shifts[0]["window"] if shifts else 0
    lines.append(
        f"time: at least {len(shifts) * window + soak} s of canary ({len(shifts)} step(s) x {window} s"
        f"{f' + {soak} s soak' if soak else ''}), more while too few requests came"
    )
    return lines


def _local(serving: list[Step], settings: dict[str, Any], canary: dict[str, Any]) -> list[str]:
    """The roll playbooks/providers/local/fleet_roll.yml executes (engine.local_roll), said."""
    target = settings.get("image", "")
    count = int(settings.get("count", 2))
    kept = [host for host in serving if target and host.get("image") == target and host.get("running", True)]
    wanted = max(count - len(kept), 0)
    addresses = list(settings.get("addresses") or [f"new host {n}" for n in range(1, wanted + 1)])
    roll = local_roll(serving, target, {**settings, "addresses": addresses}, canary)
    names = roll["names"]
    running = [host for host in serving if host.get("running", True)]
    lines = [
        f"serving now: {len(running)} host(s): "
        + (", ".join(f"{h['name']} ({h.get('image', '?')})" for h in running) or "none")
    ]
    if roll["keep"]:
        lines.append(f"keep {', '.join(names[a] for a in roll['keep'])}: already on {target}")
    planned = roll["batches"]
    if not planned:
        lines.append("start nothing: the fleet already runs the new image")
    else:
        lines.append(
            f"start {', '.join(planned[0]['start'])} from the new image (batch 1 of {len(planned)}); wait for /ready"
        )
    if roll["canary"]:

        def share(step: Step) -> str:
            old, new = step["weights"][roll["baseline"][0]], step["weights"][roll["canary_hosts"][0]]
            return f"{step['percent']:g} % asked, {step['share']:g} % given (balancer weights: old {old}, new {new})"

        lines += _canary_steps(roll["canary"], share, f"the {len(roll['baseline'])} host(s) serving now")
        lines += _gate(canary)
        lines.append(
            "a failed step: the new hosts go, every request back on the hosts serving now, recorded rolled back"
        )
    elif planned:
        lines.append(f"no canary: {roll['no_canary']}")
    for batch in planned:
        drained = [names.get(address, address) for address in batch["retire"]]
        if batch["number"] > 1:
            lines.append(
                f"batch {batch['number']} of {len(planned)}: start {', '.join(batch['start'])}; wait for /ready; "
                "in service"
            )
        if drained:
            what = f"drain and remove {', '.join(drained)} (no request lost: drained at the balancer)"
            lines.append(f"batch 1 of {len(planned)} done: {what}" if batch["number"] == 1 else f"  then {what}")
    if roll["retire"]:
        lines.append(f"drain and remove the hosts left: {', '.join(names.get(a, a) for a in roll['retire'])}")
    return lines


def _aws(serving: list[Step], settings: dict[str, Any], canary: dict[str, Any]) -> list[str]:
    """The roll playbooks/providers/aws/fleet.yml executes (engine.aws_roll), said."""
    # The live release is the one the listener favours whose Auto Scaling Group could be read.
    live = settings["live"] if "live" in settings else (serving[0] if serving else {})
    roll = aws_roll(live, settings, canary)
    name = settings.get("release_name", "the release's group")
    lines = [
        "serving now: "
        + (
            ", ".join(f"{group['name']} (weight {group.get('weight', '?')})" for group in serving)
            + (
                f"; {live['name']} runs {live.get('image', '?')} with {live.get('desired', '?')} instance(s)"
                if live
                else "; no Auto Scaling Group of a release behind it"
            )
            if serving
            else "nothing"
        ),
        f"create {name}: launch template, Auto Scaling Group of {roll['capacity']} instance(s) from the new AMI, "
        "its target group and alarms; wait until every instance is healthy in the target group (else the play "
        "stops, " + ("and beside the live release it is deleted, recorded failed)" if live else "recorded failed)"),
    ]
    if roll["canary"]:

        def share(step: Step) -> str:
            weights = f"{live['name']} {step['weights']['old']}, {name} {step['weights']['new']}"
            return f"{step['percent']:g} % of the requests (listener weights: {weights})"

        lines += _canary_steps(roll["canary"], share, live["name"])
        lines += _gate(canary)
        lines.append(f"a failed step: the listener back to {live['name']} alone, {name} deleted, recorded rolled back")
    elif roll["beside_live"]:
        lines.append(f"no canary: {roll['no_canary']}")
    if roll["beside_live"]:
        lines.append(
            f"promote: {name} takes 100 %; {live['name']} stays on the listener at weight 0 while its targets drain "
            f"(deregistration delay {int(settings.get('deregistration_delay', 30))} s), then it is deleted"
        )
    elif not live:
        lines.append(f"forward: the listener sends every request to {name} (the first release: no canary)")
    else:
        lines.append(f"already served: {name} is this release; the run converges it (no canary, nothing removed)")
    return lines


def release_plan(
    serving: list[Step],
    provider: str,
    settings: dict[str, Any],
    canary: dict[str, Any],
    model: dict[str, Any],
    served: dict[str, Any] | None = None,
    declared: bool = False,
) -> list[str]:
    """What release.yml would do, step by step; nothing here changes anything.

    ``serving``: locally the app hosts (fleet_hosts), on AWS the target groups the listener forwards to
    (live first, with its ``desired`` capacity and ``image``). ``settings``: ``count`` (hosts or desired
    capacity), ``batch_size``, ``addresses`` (the new hosts' addresses), ``monitoring`` (a monitoring host
    exists), ``image`` (the image the release would bake), ``kept_image`` (modelfleet_release_image: no bake,
    no contract check); on AWS ``live`` (the live release, {} if none), ``max_size``, ``release_name`` and
    ``deregistration_delay``. ``canary``: ``enabled``, ``steps``, ``window``, ``soak``, ``max_wait`` and the
    gate's ``thresholds``. ``model``: ``name``, ``version``, ``release``, ``features``, ``classes``.
    ``served``: the served model's record (served_contract).
    """
    if provider not in ("local", "aws"):
        raise ValueError(f"modelfleet_provider must be local or aws, not {provider!r}")
    lines = [
        f"Release plan ({provider}; nothing was changed): model {model.get('name', '?')} {model.get('version', '?')}"
        f", release {model.get('release', '?')}"
    ]
    if settings.get("kept_image"):
        contract, stops = ["contract: not checked: a kept image ships as it was released"], False
    else:
        contract, stops = _contract(model, served or {}, bool(declared))
    lines += contract
    if stops:
        return lines
    if settings.get("kept_image"):
        lines.append(f"no bake: the kept image {settings['kept_image']} (modelfleet_release_image)")
    else:
        lines.append(
            "bake: the image for this release and model digest (a no-op if it is kept), the artifact validated "
            "and a prediction in the served model's contract made on the builder; a failure stops here, nothing "
            "changed"
        )
    steps = _local(serving, settings, canary) if provider == "local" else _aws(serving, settings, canary)
    lines += steps
    if any(line.startswith("start nothing") for line in steps) and not any("drain" in line for line in steps):
        lines.append("record: nothing, since nothing changes")
    else:
        lines.append("record: the release, its canary's verdicts with their numbers, the image it replaced")
    return [f"{n}. {line}" if n else line for n, line in _numbered(lines)]


def _numbered(lines: list[str]) -> list[tuple[int, str]]:
    """Steps numbered from 1 after the title; continuation lines (indented) and the title are not."""
    out, number = [], 0
    for index, line in enumerate(lines):
        if index == 0 or line.startswith("  "):
            out.append((0, line))
        else:
            number += 1
            out.append((number, line))
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"release_plan": release_plan}

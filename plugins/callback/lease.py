"""Callback plugin: the fleet's lease names the run that holds it, and is given back however the run ends.

A playbook that fails (a canary rolled back, a contract refused, a host unreachable) stops before its
last play, which gives the lease back; on AWS the lease is in the model bucket, where another
controller could not tell that the run is over and would be refused until the lease expired. This
plugin, loaded in the ansible-playbook process itself, does two things:

- it tells the ``release_lease`` module which run it serves: ``MODELFLEET_RUN`` (this process' pid and
  its start time), which every worker and module process inherits;
- when the run ends, it gives back the lease that this run took and did not give back, on a file or
  in the bucket, only if the lease still names this run.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: lease
type: aggregate
short_description: Names the run for the fleet's lease and gives the lease back when the run ends
description:
  - Sets C(MODELFLEET_RUN) (pid and start time of ansible-playbook) for the release_lease module.
  - At the end of the run, gives back a lease this run took with release_lease and still holds.
requirements:
  - enable in ansible.cfg (callbacks_enabled = modelfleet.fleet.lease)
"""

import json
import os
from pathlib import Path
from typing import Any

from ansible.plugins.callback import CallbackBase


def process_start(pid: int) -> str:
    """The process' start time in clock ticks since boot (field 22 of /proc/PID/stat): with the pid, a run's id."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "modelfleet.fleet.lease"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pid = os.getpid()
        os.environ["MODELFLEET_RUN"] = f"{pid}:{process_start(pid)}"
        self._held: dict[str, Any] | None = None

    def v2_runner_on_ok(self, result: Any) -> None:
        if not str(result._task.action).endswith("release_lease"):
            return
        answer = result._result
        location = answer.get("location") or {}
        if answer.get("state") == "acquired" and answer.get("lease"):
            self._held = {"lease": answer["lease"], "location": location}
        elif answer.get("state") == "released":
            self._held = None

    def v2_playbook_on_stats(self, stats: Any) -> None:
        held, self._held = self._held, None
        if not held:
            return
        try:
            given_back = give_back(held["lease"], held["location"])
        except Exception as error:  # the run is over: say it, never fail it here
            self._display.warning(f"The fleet's lease could not be given back: {error}")
            return
        if given_back:
            self._display.display("The fleet's lease was given back (the run ended before its last play).")


def give_back(lease: dict[str, Any], location: dict[str, Any]) -> bool:
    """Remove the lease if it still names this run (pid and start); never another run's."""
    if location.get("path"):
        path = Path(location["path"])
        try:
            current = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if _same_run(current, lease):
            path.unlink(missing_ok=True)
            return True
        return False
    if location.get("bucket"):
        import boto3

        client = boto3.client(
            "s3", region_name=location.get("region") or None, endpoint_url=location.get("endpoint_url") or None
        )
        answer = client.get_object(Bucket=location["bucket"], Key=location["key"])
        current = json.loads(answer["Body"].read())
        if _same_run(current, lease):
            client.delete_object(Bucket=location["bucket"], Key=location["key"])
            return True
    return False


def _same_run(current: dict[str, Any], lease: dict[str, Any]) -> bool:
    keys = ("host", "pid", "pid_start")
    return all(current.get(key) == lease.get(key) for key in keys)

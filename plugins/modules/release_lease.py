"""Ansible module: one run at a time changes a fleet (a lease in a local file or an S3 object)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_lease
short_description: Take or give back the lease that lets one run at a time change a fleet
description:
  - >-
    A lease names the run that holds it (owner, host, the ansible-playbook process, what it runs), when
    it started and when it expires. With O(state=acquired) the run takes the lease, or refuses at once
    naming the holder; the same run taking it again is a no-op, so nested playbooks may each ask for it.
    A lease is stale, and taken over with a warning, when it has expired or when its holder ran on this
    host and its process is gone (a run that failed or was killed). O(break_lease=true) takes it from a
    live holder: for a holder that you know is gone from another host.
  - >-
    Locally the lease is a file (O(path)), created exclusively. On AWS it is an object in the model
    bucket (O(bucket), O(key)) written with S3 conditional writes (If-None-Match to take a free lease,
    If-Match to take over a stale one), so two controllers cannot both hold it.
version_added: "0.7.0"
author: modelfleet
options:
  state:
    description: Whether this run holds the lease.
    type: str
    choices: [acquired, released]
    default: acquired
  path:
    description: The lease file (local fleets). Exclusive with O(bucket).
    type: path
  bucket:
    description: The bucket holding the lease object (AWS). A bucket that does not exist yet means no fleet.
    type: str
  key:
    description: The lease object's key in O(bucket).
    type: str
    default: lease.json
  what:
    description: What the run does (a playbook name), shown to a run that is refused.
    type: str
    default: a run
  owner:
    description: Who runs it (default the user on this host).
    type: str
  ttl:
    description: Seconds after which the lease expires if its holder never gives it back.
    type: int
    default: 7200
  break_lease:
    description: Take the lease from a holder that still looks alive (expired or not).
    type: bool
    default: false
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Take the fleet's lease
  modelfleet.fleet.release_lease:
    path: build/state/lease.json
    what: release.yml
"""

RETURN = r"""
lease:
  description: The lease this run holds (acquired), or the one it gave back (released).
  returned: success
  type: dict
taken_over:
  description: Why a stale lease was taken over (empty when none was).
  returned: success
  type: str
state:
  description: The state asked for (checked in check mode).
  returned: success
  type: str
location:
  description: Where the lease is (path, or bucket, key, region and endpoint), for the lease callback.
  returned: success
  type: dict
"""

import contextlib
import getpass
import json
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

with contextlib.suppress(ImportError):  # AnsibleAWSModule says what is missing
    from botocore.exceptions import ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

Lease = dict[str, Any]


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def playbook_pid(start: int | None = None) -> int:
    """The ansible-playbook process this module runs under: the outermost ancestor named so.

    Task workers are forks of it and end with their task, so the run is the topmost one. Only a fallback
    for runs without the lease callback, which names the run exactly (a wrapper whose command line holds
    "ansible-playbook" would be taken for the run).
    """
    pid, found = start or os.getpid(), 0
    while pid > 1:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        if b"ansible-playbook" in cmdline:
            found = pid
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return found or os.getppid()


def process_start(pid: int) -> str:
    """A process' start time in clock ticks since boot (/proc/PID/stat, field 22): a reused pid differs."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def this_run() -> tuple[int, str]:
    """The run this module serves: MODELFLEET_RUN from the lease callback (pid:start of ansible-playbook),
    or, without the callback, the outermost ansible-playbook process above this one."""
    pid, _, start = os.environ.get("MODELFLEET_RUN", "").partition(":")
    if pid.isdigit():
        return int(pid), start
    found = playbook_pid()
    return found, process_start(found)


def run_alive(holder: Lease) -> bool:
    """Whether the run named by a lease (on this host) is still running: its pid, started when it says."""
    pid = int(holder.get("pid", 0) or 0)
    if pid <= 0 or not pid_alive(pid):
        return False
    return not holder.get("pid_start") or process_start(pid) == holder["pid_start"]


def stale_reason(lease: Lease, host: str, now: float, alive: Callable[[Lease], bool]) -> str:
    """Why a lease no longer holds ('' while its holder may still be running).

    A holder on this host holds while its process runs, however long; a holder on another host, whose
    process cannot be seen from here, until the lease expires.
    """
    if lease.get("host") == host:
        return "" if alive(lease) else f"its process {lease.get('pid')} on {host} is gone"
    if float(lease.get("expires", 0)) <= now:
        return f"it expired at {iso(float(lease.get('expires', 0)))}"
    return ""


def describe(lease: Lease) -> str:
    return (
        f"{lease.get('what', 'a run')} by {lease.get('owner', '?')} on {lease.get('host', '?')} "
        f"(pid {lease.get('pid', '?')}) since {iso(float(lease.get('started', 0)))}, "
        f"until {iso(float(lease.get('expires', 0)))}"
    )


def decide(
    current: Lease | None, me: Lease, now: float, alive: Callable[[Lease], bool], force: bool
) -> tuple[str, str]:
    """What to do about the lease: ('take' | 'keep' | 'take_over' | 'refuse', why)."""
    if current is None:
        return "take", ""
    if same_run(current, me):
        return "keep", ""
    reason = stale_reason(current, me["host"], now, alive)
    if reason:
        return "take_over", f"a stale lease ({describe(current)}) was taken over: {reason}"
    if force:
        return "take_over", f"the lease of {describe(current)} was broken (break_lease)"
    return "refuse", (
        f"Another run is changing this fleet: {describe(current)}. Nothing was changed. Wait for it to end; "
        "if it is gone (another controller that died), break its lease: -e modelfleet_lease_break=true"
    )


class Store(Protocol):
    def read(self) -> tuple[Lease | None, str]: ...
    def create(self, lease: Lease) -> bool: ...
    def replace(self, lease: Lease, version: str) -> bool: ...
    def delete(self) -> None: ...


class FileStore:
    """The lease as a file: created with O_EXCL; replaced only if unchanged since it was read."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def read(self) -> tuple[Lease | None, str]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None, ""
        try:
            return json.loads(text), text
        except ValueError:
            return {"what": "an unreadable lease", "expires": 0}, text

    def create(self, lease: Lease) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(lease))
        return True

    def replace(self, lease: Lease, version: str) -> bool:
        import fcntl

        with open(f"{self.path}.lock", "w") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            if self.read()[1] != version:
                return False
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(lease))
            os.replace(tmp, self.path)
            return True

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class S3Store:
    """The lease as an S3 object, written with conditional requests."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key

    @staticmethod
    def _code(error: Exception) -> str:
        return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))

    def read(self) -> tuple[Lease | None, str]:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as error:
            if self._code(error) in ("NoSuchKey", "404"):
                return None, ""
            raise
        return json.loads(answer["Body"].read()), answer["ETag"]

    def _put(self, lease: Lease, **condition: str) -> bool:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=json.dumps(lease).encode(), **condition)
        except ClientError as error:
            if self._code(error) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise
        return True

    def create(self, lease: Lease) -> bool:
        return self._put(lease, IfNoneMatch="*")

    def replace(self, lease: Lease, version: str) -> bool:
        return self._put(lease, IfMatch=version)

    def delete(self) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key)


def same_run(a: Lease, b: Lease) -> bool:
    return all(a.get(key) == b.get(key) for key in ("host", "pid", "pid_start"))


def acquire(store: Store, me: Lease, now: float, alive: Callable[[Lease], bool], force: bool) -> tuple[bool, str, str]:
    """Take the lease: (changed, taken_over, refusal); a refusal leaves the holder's lease as it was.

    The same run asking again renews it (a later expiry, the first start kept).
    """
    for _ in range(5):  # another run may write between our read and our conditional write
        current, version = store.read()
        action, why = decide(current, me, now, alive, force)
        if action == "keep":
            assert current is not None
            store.replace({**me, "started": current.get("started", me["started"])}, version)
            return False, "", ""
        if action == "refuse":
            return False, "", why
        done = store.create(me) if action == "take" else store.replace(me, version)
        if done:
            return True, why, ""
    return False, "", "the lease changed hands five times while this run tried to take it; try again"


def give_back(store: Store, me: Lease) -> bool:
    """Give the lease back if this run holds it (never another run's)."""
    current, _ = store.read()
    if current is not None and same_run(current, me):
        store.delete()
        return True
    return False


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "state": {"type": "str", "choices": ["acquired", "released"], "default": "acquired"},
            "path": {"type": "path"},
            "bucket": {"type": "str"},
            "key": {"type": "str", "default": "lease.json", "no_log": False},
            "what": {"type": "str", "default": "a run"},
            "owner": {"type": "str"},
            "ttl": {"type": "int", "default": 7200},
            "break_lease": {"type": "bool", "default": False},
        },
        mutually_exclusive=[["path", "bucket"]],
        required_one_of=[["path", "bucket"]],
        supports_check_mode=True,
    )
    p = module.params
    now = time.time()
    host = socket.gethostname()
    pid, pid_start = this_run()
    me: Lease = {
        "owner": p["owner"] or f"{getpass.getuser()}@{host}",
        "host": host,
        "pid": pid,
        "pid_start": pid_start,
        "what": p["what"],
        "started": now,
        "expires": now + p["ttl"],
    }
    # Where the lease is, for the lease callback, which gives it back if the run ends before its last play.
    location: dict[str, Any] = (
        {"path": p["path"]}
        if p["path"]
        else {
            "bucket": p["bucket"],
            "key": p["key"],
            "region": module.region,
            "endpoint_url": p.get("endpoint_url") or "",
        }
    )
    store: Store = FileStore(p["path"]) if p["path"] else S3Store(module.client("s3"), p["bucket"], p["key"])
    done = {"lease": me, "state": p["state"], "location": location}
    try:
        if module.check_mode:
            current, _ = store.read()
            action, why = decide(current, me, now, run_alive, p["break_lease"])
            if p["state"] == "acquired" and action == "refuse":
                module.fail_json(msg=why)
            module.exit_json(changed=action in ("take", "take_over"), taken_over=why, **{**done, "state": "checked"})
        if p["state"] == "released":
            module.exit_json(changed=give_back(store, me), taken_over="", **done)
        changed, taken_over, refusal = acquire(store, me, now, run_alive, p["break_lease"])
    except ClientError as error:
        if S3Store._code(error) == "NoSuchBucket":
            # No model bucket: no fleet was ever built here, and the first site.yml creates the bucket.
            module.exit_json(
                changed=False,
                lease={},
                state=p["state"],
                location={},
                taken_over="",
                msg="no model bucket yet: no fleet to hold",
            )
        module.fail_json_aws(error, msg="the lease object could not be read or written")
    if refusal:
        module.fail_json(msg=refusal, holder=store.read()[0])
    if taken_over:
        module.warn(taken_over)
    module.exit_json(changed=changed, taken_over=taken_over, **done)


if __name__ == "__main__":
    main()

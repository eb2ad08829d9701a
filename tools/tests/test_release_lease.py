"""The fleet's lease: one run at a time, a clear refusal, stale leases taken over, on a file and on S3."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_lease", ROOT / "plugins/modules/release_lease.py")
    assert spec is not None
    assert spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


lease = _module()
NOW = 1_800_000_000.0


def run(pid: int, host: str = "ctl", what: str = "release.yml", ttl: int = 3600, start: str = "1") -> dict[str, Any]:
    lease_ = {"owner": "ops@ctl", "host": host, "pid": pid, "pid_start": start, "what": what}
    return {**lease_, "started": NOW, "expires": NOW + ttl}


def alive(*pids: int):
    return lambda holder: holder["pid"] in pids


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        yield lease.FileStore(str(tmp_path / "state" / "lease.json"))
        return
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket="models", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        # Versioned, as the model bucket is: a given-back lease leaves a delete marker, not nothing.
        s3.put_bucket_versioning(Bucket="models", VersioningConfiguration={"Status": "Enabled"})
        yield lease.S3Store(s3, "models", "lease.json")


def test_a_second_run_is_refused_naming_the_holder(store) -> None:
    assert lease.acquire(store, run(100), NOW, alive(100), False) == (True, "", "")
    changed, _, refusal = lease.acquire(store, run(200, what="rollback.yml"), NOW + 5, alive(100, 200), False)
    assert not changed
    assert refusal.startswith("Another run is changing this fleet: release.yml by ops@ctl on ctl (pid 100) since")
    assert "-e modelfleet_lease_break=true" in refusal
    assert store.read()[0]["pid"] == 100, "the holder's lease is untouched"


def test_the_same_run_may_ask_again_and_renews_it(store) -> None:
    lease.acquire(store, run(100), NOW, alive(100), False)
    later = {**run(100), "started": NOW + 600, "expires": NOW + 4200}
    assert lease.acquire(store, later, NOW + 600, alive(100), False) == (False, "", "")
    held = store.read()[0]
    assert (held["started"], held["expires"]) == (NOW, NOW + 4200)


def test_a_live_holder_on_this_host_holds_past_its_expiry_and_a_reused_pid_is_not_it(store) -> None:
    lease.acquire(store, run(100, ttl=10), NOW, alive(100), False)
    assert lease.acquire(store, run(200), NOW + 60, alive(100, 200), False)[2].startswith("Another run")
    # The same pid, started at another time, is another process: the holder is gone.
    assert lease.run_alive({"pid": os.getpid(), "pid_start": "0"}) is False
    assert lease.run_alive({"pid": os.getpid(), "pid_start": lease.process_start(os.getpid())}) is True


def test_a_lease_whose_process_is_gone_is_taken_over(store) -> None:
    lease.acquire(store, run(100), NOW, alive(100), False)
    changed, taken_over, refusal = lease.acquire(store, run(200), NOW + 5, alive(200), False)
    assert (changed, refusal) == (True, "")
    assert "its process 100 on ctl is gone" in taken_over
    assert store.read()[0]["pid"] == 200


def test_another_hosts_lease_holds_until_it_expires_or_is_broken(store) -> None:
    lease.acquire(store, run(100, host="other"), NOW, alive(), False)
    assert lease.acquire(store, run(200), NOW + 60, alive(200), False)[2].startswith("Another run")
    changed, taken_over, _ = lease.acquire(store, run(200), NOW + 60, alive(200), True)
    assert changed
    assert "was broken (break_lease)" in taken_over
    lease.acquire(store, run(300, host="other"), NOW, alive(), True)
    changed, taken_over, _ = lease.acquire(store, run(200), NOW + 3601, alive(200), False)
    assert changed
    assert "it expired at" in taken_over


def test_only_the_holder_gives_the_lease_back(store) -> None:
    lease.acquire(store, run(100), NOW, alive(100), False)
    assert lease.give_back(store, run(200)) is False
    assert store.read()[0]["pid"] == 100
    assert lease.give_back(store, run(100)) is True
    assert store.read() == (None, "")
    assert lease.give_back(store, run(100)) is False


def test_a_write_between_read_and_take_is_not_overwritten(store) -> None:
    store.create(run(100))
    _, version = store.read()
    store.replace(run(300), version)  # someone else took it over first
    assert store.replace(run(200), version) is False
    assert store.read()[0]["pid"] == 300


def test_the_run_is_the_outermost_ansible_playbook_process(tmp_path) -> None:
    # Without the lease callback: a fake ansible-playbook whose child asks gets the outer process.
    script = tmp_path / "ansible-playbook"
    code = "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1]])"
    script.write_text(f"#!{sys.executable}\n{code}\n")
    script.chmod(0o755)
    probe = (
        "import importlib.util, os; "
        f"s = importlib.util.spec_from_file_location('l', {str(ROOT / 'plugins/modules/release_lease.py')!r}); "
        "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); print(m.playbook_pid(), os.getppid())"
    )
    env = {k: v for k, v in os.environ.items() if k != "MODELFLEET_RUN"}
    proc = subprocess.run([str(script), probe], capture_output=True, text=True, check=True, env=env)
    found, parent = proc.stdout.split()
    assert found == parent


def test_the_callback_names_the_run_and_gives_back_only_its_own_lease(tmp_path, monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("lease_callback", ROOT / "plugins/callback/lease.py")
    assert spec is not None
    assert spec.loader is not None
    callback = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(callback)
    monkeypatch.delenv("MODELFLEET_RUN", raising=False)
    callback.CallbackModule()
    assert os.environ["MODELFLEET_RUN"] == f"{os.getpid()}:{lease.process_start(os.getpid())}"
    assert lease.this_run() == (os.getpid(), lease.process_start(os.getpid()))
    path = tmp_path / "lease.json"
    store = lease.FileStore(str(path))
    mine, other = run(100), run(200)
    store.create(mine)
    assert callback.give_back(other, {"path": str(path)}) is False
    assert path.exists()
    assert callback.give_back(mine, {"path": str(path)}) is True
    assert not path.exists()

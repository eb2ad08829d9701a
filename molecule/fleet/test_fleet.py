"""The local fleet end to end, the way a user drives it: site.yml, releases, failures, scaling, teardown.

The tests share one fleet and run in order (each starts from the state the previous one left). Load
goes through the balancer on 127.0.0.1 only, at a moderate bounded rate, and every request is counted:
one failed request fails the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "bench"))
from load import KEEP_ALIVE, NEW, LoadResult, draw_png, instance_from, run_load, write_csv  # noqa: E402

URL = "http://127.0.0.1:8080"
PROMETHEUS = "http://127.0.0.1:9090"
WORK = ROOT / "build" / "fleet-test"
DEMO = ROOT / "build" / "models" / "demo-classifier"
RATE = 50  # requests per second: enough to see every step, little enough to leave CPU to Ansible
# The canary gate as the local inventory sets it, with a latency margin that a busy 2-core machine (other
# test lanes run beside this one) cannot flip on a healthy canary: more than 3 times the baseline's p99
# and more than 10 ms slower. The slow release below is about 20 times slower (23 ms against 1 ms).
GATE = ["-e", json.dumps({"modelfleet_canary_max_p99_ratio": 3, "modelfleet_canary_p99_tolerance_seconds": 0.01})]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SEQUENCE = True  # each test starts from the state the one before left (molecule/conftest.py)


def playbook(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "inventories/local", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9]+", "-", " ".join(args))[:80]
    (WORK / "logs" / f"{time.strftime('%H%M%S')}-{name}.log").write_text(result.stdout + result.stderr)
    if check:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    return result


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout.strip()


def app_hosts() -> list[str]:
    out = docker("ps", "--filter", "label=modelfleet.role=app", "--filter", "status=running", "--format", "{{.Names}}")
    return sorted(out.split())


def served_versions() -> dict[str, str]:
    """What each running app host serves, asked on the host itself (/model)."""
    versions = {}
    for host in app_hosts():
        model = json.loads(docker("exec", host, "curl", "-fsS", "http://127.0.0.1/model"))
        versions[host] = str(model["version"])
    return versions


def train(name: str, version: str, *extra: str) -> Path:
    out = WORK / "models" / name
    if not (out / "metadata.json").exists():
        cmd = [str(BIN / "model-service"), "train", "--out", str(out), "--model-version", version, *extra]
        subprocess.run(cmd, check=True, capture_output=True)
    return out


@contextmanager
def load(name: str, seconds: float = 900) -> Iterator[LoadResult]:
    """Bounded load through the balancer while the block runs; the result fills in when it ends."""
    result = LoadResult()
    stop = threading.Event()

    def run() -> None:
        done = run_load(URL, instance_from(DEMO), rate=RATE, seconds=seconds, stop=stop)
        result.samples, result.seconds, result.began_at = done.samples, done.seconds, done.began_at

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(2)
    try:
        yield result
    finally:
        time.sleep(2)
        stop.set()
        thread.join(60)
        write_csv(result, WORK / f"{name}.csv")
        draw_png(result, WORK / f"{name}.png", name.replace("-", " "))
        print(f"{name}: {result.summary()}")


def in_service() -> int:
    """App hosts the balancer sends requests to: ready, and passing its health checks."""
    return playbook("playbooks/status.yml").stdout.count("state ready, weight 100, health up")


def assert_clean(result: LoadResult) -> None:
    """Not one failed request, for either kind of client, and both kinds were there all along."""
    clients = result.by_client()
    assert result.failed == 0, f"{result.failures}; by client: {clients}"
    assert set(clients) == {KEEP_ALIVE, NEW}, clients
    assert min(total for total, _ in clients.values()) >= 0.4 * result.total, clients


def wait_for(check, timeout: float, what: str) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        try:
            if check():
                return time.monotonic() - began
        except (subprocess.CalledProcessError, ValueError):
            pass  # a host still starting answers 502 on /model
        time.sleep(1)
    raise AssertionError(f"{what} not within {timeout} s")


def prometheus(query: str) -> list[dict]:
    import requests

    answer = requests.get(f"{PROMETHEUS}/api/v1/query", params={"query": query}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def releases() -> list[dict]:
    return [json.loads(line) for line in (ROOT / "build/state/releases.jsonl").read_text().splitlines()]


def recap_changed(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M)}


def test_site_from_nothing_serves_through_the_balancer() -> None:
    playbook("playbooks/teardown.yml")
    first = playbook("site.yml")
    assert "Predictions: http://127.0.0.1:8080/predict (2 hosts)" in first.stdout
    hosts = app_hosts()
    assert len(hosts) == 2
    images = {docker("inspect", "-f", "{{.Config.Image}}", h).strip() for h in hosts}
    assert len(images) == 1
    assert next(iter(images)).startswith("modelfleet/app:1.0.0-")
    labels = json.loads(docker("image", "inspect", "-f", "{{json .Config.Labels}}", next(iter(images))))
    assert labels["modelfleet.model-version"] == "1.0.0"
    assert labels["modelfleet.model-sha256"]
    from model_service.app import create_app
    from model_service.config import Settings

    instance = instance_from(DEMO)
    expected = create_app(Settings(model_path=DEMO, access_log=False)).test_client().post("/predict", json=instance)
    import requests

    answer = requests.post(URL + "/predict", json=instance, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["predicted_class"] == expected.get_json()["predicted_class"]
    for label, p in expected.get_json()["probabilities"].items():
        assert abs(answer.json()["probabilities"][label] - p) <= 1e-5
    again = playbook("site.yml")
    assert set(recap_changed(again.stdout).values()) == {0}, again.stdout[-3000:]
    # Prometheus found every host by itself, and each target carries the release it serves.
    assert "Prometheus: http://127.0.0.1:9090/alerts   Alertmanager: http://127.0.0.1:9093" in again.stdout
    names = {h.removeprefix("/") for h in hosts}
    wait_for(lambda: len(prometheus('up{job=~"model_service|node|nginx"} == 1')) == 6, 60, "6 app targets up")
    up = prometheus('up{job=~"model_service|node|nginx"}')
    assert {r["metric"]["instance"] for r in up} == names
    assert {r["metric"]["release"] for r in up} == {next(iter(images)).split(":")[1]}
    # Prometheus and Alertmanager are published on the controller's loopback only.
    assert docker("port", "modelfleet-monitoring", "9090/tcp") == "127.0.0.1:9090"
    assert docker("port", "modelfleet-monitoring", "9093/tcp") == "127.0.0.1:9093"


def test_release_under_load_fails_no_request() -> None:
    model = train("v2", "2.0.0", "--rows", "3000", "--rounds", "30", "--seed", "11")
    # Steps of 10 % and 50 %, the last held 20 s more and judged over the whole soak.
    steps = ["-e", json.dumps({"modelfleet_canary_steps": [10, 50], "modelfleet_canary_soak": 20})]
    with load("release-2-hosts") as result:
        released = playbook("playbooks/release.yml", "-e", f"model_service_model_src={model}", *GATE, *steps)
    assert_clean(result)
    # The release said its plan before the canary took a request.
    assert ": 10 % -> 50 % of the requests in turn (balancer weights)" in released.stdout
    assert "the last held 20 s more and judged again; then the rest of the fleet is replaced" in released.stdout
    # The load kept its rate through the whole release (not a count, which depends on how long it took).
    assert result.total >= 0.9 * RATE * result.seconds, result.summary()
    assert set(result.versions) == {"1.0.0", "2.0.0"}
    assert set(served_versions().values()) == {"2.0.0"}
    assert len(app_hosts()) == 2
    gate = releases()[-1]["canary"]
    print(f"canary gate: {gate}")
    assert gate["verdict"] == "promote"
    assert gate["canary"]["requests"] >= 100
    assert gate["canary"]["ready"] is True
    # Each step was judged, and while it lasted the new release took its share of the requests.
    judged = [(step["step"], step["soak"], step["verdict"]) for step in gate["steps"]]
    assert judged == [(10.0, False, "promote"), (50.0, False, "promote"), (50.0, True, "promote")]
    assert gate["steps"][-1]["judged"] - gate["steps"][-1]["began"] >= 20, "the soak lasted its 20 s"
    for step in gate["steps"]:
        first, last = step["began"] - result.began_at + 3, step["judged"] - result.began_at
        during = [s for s in result.samples if first <= s.started <= last and s.outcome == "ok"]
        share = sum(s.version == "2.0.0" for s in during) / len(during)
        print(f"step {step['step']} %: {share:.1%} of {len(during)} requests met 2.0.0")
        assert abs(100 * share - step["step"]) <= 6, (step, share)
    # The operator's view says the same: both hosts on 2.0.0 at full weight, and the steps' verdicts.
    status = playbook("playbooks/status.yml").stdout
    assert status.count("(release 1.0.0, model 2.0.0); state ready, weight 100, health up") == 2, status[-3000:]
    assert "no run holds the lease" in status
    assert "canary promote (steps: 10.0 % promote, 50.0 % promote, 50.0 % soak promote)" in status


def _contract_changed_model() -> Path:
    """The release above's model retrained as it were with its last input feature renamed: a valid artifact."""
    import xgboost
    from model_service.artifact import write_metadata

    out = WORK / "models" / "renamed-valid"
    if not out.exists():
        subprocess.run(["cp", "-r", str(train("v2", "2.0.0")), str(out)], check=True)
        meta = json.loads((out / "metadata.json").read_text())
        meta.pop("files")
        meta["version"] = "2.4.0"
        booster = xgboost.Booster()
        booster.load_model(str(out / "model.ubj"))
        old, new = meta["features"][-1], meta["features"][-1] + "_renamed"
        booster.feature_names = [*meta["features"][:-1], new]
        booster.save_model(str(out / "model.ubj"))
        meta["features"][-1] = new
        for table in ("feature_ranges", "feature_quantiles"):
            if old in meta["training"].get(table, {}):
                meta["training"][table][new] = meta["training"][table].pop(old)
        write_metadata(out, meta)
    return out


def test_release_that_breaks_the_input_contract_is_refused_before_any_host() -> None:
    before, hosts = served_versions(), app_hosts()
    # The plan says so first, and changes nothing; declared, it shows the canary the release would run.
    renamed = f"model_service_model_src={_contract_changed_model()}"
    plan = playbook("playbooks/plan.yml", "-e", renamed).stdout
    assert "Release plan (local; nothing was changed): model demo-classifier 2.4.0" in plan
    assert "features no longer accepted: feat36; features now required: feat36_renamed" in plan
    assert "STOP: the release would be refused here" in plan
    declared = playbook("playbooks/plan.yml", "-e", renamed, "-e", "modelfleet_release_contract_change=true").stdout
    assert "canary step 1: 25 % asked" in declared
    assert f"against the {len(hosts)} host(s) serving now" in declared
    assert "batch 1 of 2 done: drain and remove modelfleet-app-" in declared
    assert "then too few requests means PROMOTE" in declared  # the local inventory's no-data rule
    assert app_hosts() == hosts
    failed = playbook("playbooks/release.yml", "-e", renamed, check=False)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output[-3000:]
    assert "Release stopped: model demo-classifier 2.4.0 changes the contract of the model served now (2.0.0" in output
    assert "features no longer accepted: feat36; features now required: feat36_renamed" in output
    assert "-e modelfleet_release_contract_change=true" in output
    assert "No builder was started" in output
    assert served_versions() == before
    assert app_hosts() == hosts
    assert _left_behind() == ""
    record = releases()[-1]
    assert record["result"] == "failed"
    assert record["detail"].startswith("contract change not declared: features no longer accepted: feat36")


def test_declared_contract_change_is_rolled_back_by_the_gate_on_client_errors() -> None:
    # Declared, the renamed feature passes the contract guard and the bake; the canary answers the clients
    # that still send the old feature 422, and the gate rolls it back on those answers at its first step,
    # without waiting for the step's window to end (the failures are plain from the first polls). What
    # clients feel of it is bounded by the canary's share for those seconds: every failed request is a 422
    # the canary answered before the rollback, none comes after it, and the fleet is as it was.
    before, hosts = served_versions(), app_hosts()
    changed = f"model_service_model_src={_contract_changed_model()}"
    declared = ["-e", "modelfleet_release_contract_change=true"]
    with load("contract-declared") as result:
        failed = playbook("playbooks/release.yml", "-e", changed, *declared, *GATE, check=False)
        undone = time.time()
        time.sleep(5)  # clients go on after the rollback: none of them fails any more
    output = failed.stdout + failed.stderr
    print(result.summary())
    assert failed.returncode != 0, output[-3000:]
    assert "rolled back by the canary gate at 25 % of the requests: rollback: canary" in output, output[-3000:]
    assert re.search(r"error ratio [\d.]+% > baseline 0\.00% \+ 0\.50% \(one-sided z", output), output[-3000:]
    # Plain from the first polls: stopped before the step's window ended, not after it.
    assert "stopped early" in output, output[-3000:]
    assert served_versions() == before
    assert app_hosts() == hosts
    record = releases()[-1]
    assert (record["result"], record["canary"]["verdict"]) == ("rolled back", "rollback"), record
    assert set(result.failures) == {"http 422"}, result.failures
    late = [s for s in result.samples if s.outcome != "ok" and result.began_at + s.started > undone]
    assert not late, late[:5]
    counted = record["canary"]["canary"].get("errors", "?")
    print(f"{result.failed} failed (422) of {result.total}; the gate's canary numbers counted {counted} errors")
    assert result.failed <= 0.5 * result.total, "the canary had its step's share, not the fleet"


def _held_by_a_live(what: str, lease: Path) -> bool:
    """Whether a running process holds the fleet's lease for ``what`` (a failed run leaves a stale one)."""
    try:
        holder = json.loads(lease.read_text())
        os.kill(int(holder["pid"]), 0)
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError):
        return False
    return holder["what"] == what


def test_much_slower_release_is_rolled_back_by_the_canary_gate() -> None:
    # 6,000 trees of depth 10 instead of 30 of depth 6: the same answers' shape, each one slower.
    slow = train("slow", "2.1.0", "--rows", "3000", "--rounds", "6000", "--max-depth", "10", "--seed", "12")
    lease = ROOT / "build" / "state" / "lease.json"
    with load("release-slow-canary") as result, ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            playbook, "playbooks/release.yml", "-e", f"model_service_model_src={slow}", *GATE, check=False
        )
        # While it runs, another run that would change the fleet is refused at once, naming the holder.
        wait_for(lambda: running.done() or _held_by_a_live("release.yml", lease), 300, "the release took the lease")
        assert not running.done(), "the release ended before a second run could be tried beside it"
        began = time.monotonic()
        second = playbook("playbooks/rollback.yml", check=False)
        refused_in = time.monotonic() - began
        holder = playbook("playbooks/status.yml").stdout
        failed = running.result()
    refusal = second.stdout + second.stderr
    assert second.returncode != 0, refusal[-3000:]
    assert "Another run is changing this fleet: release.yml by " in refusal, refusal[-3000:]
    assert "-e modelfleet_lease_break=true" in refusal
    print(f"a second run was refused in {refused_in:.1f} s")
    assert "lease held by release.yml of " in holder, holder[-3000:]
    # The release failed (rolled back) before its last play: the lease callback gave the lease back.
    assert not lease.exists()
    assert "The fleet's lease was given back (the run ended before its last play)." in failed.stdout
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output[-3000:]
    assert "rolled back by the canary gate at 25 % of the requests: rollback: canary" in output
    record = releases()[-1]
    print(f"canary gate: {record['canary']}")
    assert record["result"] == "rolled back"
    assert record["canary"]["verdict"] == "rollback"
    assert any(reason.startswith("p99 ") for reason in record["canary"]["reasons"]), record
    assert record["canary"]["canary"]["p99_seconds"] > record["canary"]["baseline"]["p99_seconds"]
    # It also costs many times the CPU per request: the gate says so from the hosts' own counters.
    assert any(reason.startswith("CPU per request ") for reason in record["canary"]["reasons"]), record
    cpu = record["canary"]["canary"]["cpu_per_request_seconds"], record["canary"]["baseline"]["cpu_per_request_seconds"]
    assert cpu[0] > 3 * cpu[1] > 0, cpu
    # Nothing failed, and only the canary's share of requests (1 host of 3, while it served) met the
    # slow release; the fleet serves what it served before.
    assert_clean(result)
    served = [s.started for s in result.samples if s.outcome == "ok" and s.version == "2.1.0"]
    assert served, "the canary took no traffic"
    during = [s for s in result.samples if served[0] <= s.started <= served[-1]]
    share = len(served) / len(during)
    print(f"while the canary served ({served[-1] - served[0]:.0f} s): {share:.1%} of {len(during)} requests met it")
    assert share < 0.45
    assert set(served_versions().values()) == {"2.0.0"}
    assert len(app_hosts()) == 2


def _broken_artifact() -> Path:
    from model_service.artifact import write_metadata

    out = WORK / "models" / "broken"
    if not out.exists():
        subprocess.run(["cp", "-r", str(train("v2", "2.0.0")), str(out)], check=True)
        (out / "model.ubj").write_bytes(b"not an xgboost model")
        meta = json.loads((out / "metadata.json").read_text())
        meta.pop("files")
        meta["version"] = "3.0.0"
        write_metadata(out, meta)  # checksums match: only validation on the builder can refuse it
    return out


def _left_behind() -> str:
    return docker("ps", "-a", "--filter", "label=modelfleet.role=builder", "--format", "{{.Names}}").strip()


def test_release_of_an_artifact_that_fails_validation_stops_cleanly() -> None:
    before = served_versions()
    with load("release-broken-artifact") as result:
        failed = playbook("playbooks/release.yml", "-e", f"model_service_model_src={_broken_artifact()}", check=False)
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    assert "Release stopped: the bake of modelfleet/app:1.0.0-" in output
    assert "failed validation" in output
    assert_clean(result)
    assert served_versions() == before
    assert _left_behind() == ""


def test_release_whose_hosts_never_get_ready_stops_cleanly() -> None:
    before = served_versions()
    base = os.environ.get("MODELFLEET_BASE_IMAGE", "modelfleet/debian-systemd:bookworm")
    with load("release-never-ready") as result:
        image, timeout = f"modelfleet_release_image={base}", "modelfleet_host_ready_timeout=16"
        failed = playbook("playbooks/rollback.yml", "-e", image, "-e", timeout, check=False)
    assert failed.returncode != 0
    assert "did not answer /ready within 16 s" in failed.stdout + failed.stderr
    assert_clean(result)
    assert served_versions() == before
    assert len(app_hosts()) == 2


def test_killed_host_is_routed_around_and_replaced() -> None:
    victim = app_hosts()[0]
    with load("host-killed") as result:
        docker("kill", victim)
        took = wait_for(lambda: len(served_versions()) == 2, 90, "two hosts serving again")
        # Replaced means back in service at the balancer: its health checks passed (what the next test needs).
        wait_for(lambda: in_service() == 2, 60, "two hosts in service at the balancer")
        time.sleep(3)
    print(f"back to 2 hosts {took:.0f} s after the kill")
    assert_clean(result)


def test_host_whose_service_stopped_is_routed_around_and_healed() -> None:
    victim = app_hosts()[-1]  # not the host the previous test killed: it is still in its start-up grace
    with load("service-stopped") as result:
        # Not waited for: the processes drain for 10 s, and the fleet's healing may restart the host meanwhile.
        docker("exec", victim, "systemctl", "stop", "--no-block", "model-service@8001", "model-service@8002")
        wait_for(
            lambda: docker("exec", victim, "systemctl", "is-active", "model-service@8001", check=False) != "active",
            10,
            "the service stopping",
        )
        # Draining, asked on the host itself: /ready says so (the balancer takes the host out), and a
        # prediction is still answered; a probe's 503 does not take a draining process out of nginx's pool.
        body = json.dumps(instance_from(DEMO))
        ask = "curl -s -o /dev/null -w '%{http_code} ' -H 'Content-Type: application/json'"
        ready, predict = f"{ask} http://127.0.0.1/ready", f"{ask} -d '{body}' http://127.0.0.1/predict"
        answers = docker("exec", victim, "sh", "-c", f"for i in 1 2 3; do {ready}; {predict}; done").split()
        assert answers == ["503", "200"] * 3, answers
        took = wait_for(
            lambda: json.loads(docker("exec", victim, "curl", "-fsS", "http://127.0.0.1/ready"))["status"] == "ready",
            120,
            f"{victim} healed",
        )
        wait_for(lambda: in_service() == 2, 60, "two hosts in service at the balancer")
        time.sleep(3)
    print(f"{victim} serving again {took:.0f} s after its service stopped")
    # A stopped service drains: /ready answers 503 while every request is still answered (each on a
    # connection it then closes), for longer than the balancer takes to take the host out; no request is lost.
    assert_clean(result)


def test_scale_out_and_in_under_load() -> None:
    # site.yml grows and shrinks the fleet and keeps what it serves (the release above: 2.0.0).
    with load("scale-2-3-2") as result:
        playbook("site.yml", "-e", "modelfleet_local_app_count=3")
        assert list(served_versions().values()) == ["2.0.0"] * 3
        playbook("site.yml", "-e", "modelfleet_local_app_count=2")
    assert list(served_versions().values()) == ["2.0.0"] * 2
    assert_clean(result)
    assert set(result.versions) == {"2.0.0"}


def test_release_interrupted_during_its_canary_is_undone_by_site() -> None:
    # A release killed while its canary takes a share leaves the fleet serving two images, and its lease
    # behind. site.yml takes the dead run's lease over, saying so, and goes back to the image the fleet
    # served before the release began (the newest the record says was released and judged good): never to
    # the one no gate judged. Clients lose nothing on the way, and the rollback below still goes to 1.0.0.
    model = train("v2-interrupted", "2.3.0", "--rows", "3000", "--rounds", "30", "--seed", "13")
    hosts = app_hosts()
    assert set(served_versions().values()) == {"2.0.0"}
    long_canary = ["-e", json.dumps({"modelfleet_canary_window": 600, "modelfleet_canary_max_wait": 600})]
    args = ["-i", "inventories/local", "playbooks/release.yml", "-e", f"model_service_model_src={model}"]
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    served_before = next(r["image"] for r in reversed(releases()) if r.get("model_version") == "2.0.0")
    with load("interrupted-release", seconds=1800) as result:
        with (WORK / "logs" / "interrupted-release.log").open("w") as log:
            process = subprocess.Popen(
                [str(BIN / "ansible-playbook"), *args, *GATE, *long_canary],
                cwd=ROOT,
                env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:

                def canary_in_service() -> bool:
                    # The new host serves 2.3.0 and the balancer gives it a share (its status line carries no
                    # release yet: the record has none of an image no gate has judged).
                    assert process.poll() is None, "the release ended before its canary could be interrupted"
                    canaries = [host for host, version in served_versions().items() if version == "2.3.0"]
                    if not canaries:
                        return False
                    status = playbook("playbooks/status.yml").stdout
                    pattern = rf"\b{re.escape(canaries[0])} \(.*state ready, weight [1-9]\d*, health up"
                    return bool(re.search(pattern, status))

                wait_for(canary_in_service, 900, "the canary in service at the balancer")
                time.sleep(5)  # the canary answers its share of the load
            finally:
                os.killpg(process.pid, 9)
                process.wait()
        assert set(served_versions().values()) == {"2.0.0", "2.3.0"}
        site = playbook("site.yml")
    assert_clean(result)
    assert "2.3.0" in result.versions, "the canary answered requests before the release was killed"
    assert "a stale lease (release.yml by " in site.stdout + site.stderr
    assert set(served_versions().values()) == {"2.0.0"}
    assert len(app_hosts()) == len(hosts)
    images = {docker("inspect", "-f", "{{.Config.Image}}", host) for host in app_hosts()}
    assert images == {served_before}, "back on the very image served before the release began"
    last = releases()[-1]
    assert (last["image"], last["result"]) == (served_before, "succeeded"), last
    assert "1 removed" in last["detail"], last


def test_rollback_goes_back_to_the_image_served_before_also_when_interrupted() -> None:
    # The rollback is killed once its first 1.0.0 host is in service, the fleet serving both images; run
    # again, it finishes (back to 1.0.0). By the record's last successes alone the newest good image the
    # fleet serves is 2.0.0, the very image the rollback set out to leave (where the rerun went before
    # the record said when a run starts): its start, recorded before any host changed, marks 2.0.0 as
    # left, so the rerun (and site.yml: tools/tests/test_release_filters.py) goes on to 1.0.0.
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    with load("rollback", seconds=1800) as result:
        with (WORK / "logs" / "interrupted-rollback.log").open("w") as log:
            process = subprocess.Popen(
                [str(BIN / "ansible-playbook"), "-i", "inventories/local", "playbooks/rollback.yml"],
                cwd=ROOT,
                env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:

                def rolled_back_host_in_service() -> bool:
                    assert process.poll() is None, "the rollback ended before it could be interrupted"
                    back = [host for host, version in served_versions().items() if version == "1.0.0"]
                    status = playbook("playbooks/status.yml").stdout if back else ""
                    return any(
                        re.search(rf"\b{re.escape(h)} \(.*state ready, weight [1-9]\d*, health up", status)
                        for h in back
                    )

                wait_for(rolled_back_host_in_service, 600, "the first rolled back host in service")
            finally:
                os.killpg(process.pid, 9)
                process.wait()
        interrupted: dict[str, str] = {}
        # A host the killed run had just started answers once it is up.
        wait_for(lambda: interrupted.update(served_versions()) or True, 120, "every running host answering")
        assert set(interrupted.values()) == {"1.0.0", "2.0.0"}, interrupted
        unfinished = releases()[-1]
        assert (unfinished["kind"], unfinished["result"]) == ("rollback", "started"), unfinished
        assert "no result recorded yet" in playbook("playbooks/status.yml").stdout
        playbook("playbooks/rollback.yml")
    print(f"interrupted with {interrupted}; then finished")
    assert set(served_versions().values()) == {"1.0.0"}
    assert_clean(result)
    # Prometheus scrapes exactly the hosts that run: the removed ones are gone from its targets.
    targets = json.loads(docker("exec", "modelfleet-monitoring", "cat", "/etc/prometheus/targets/app.json"))
    assert sorted(group["labels"]["instance"] for group in targets) == app_hosts()
    record = releases()
    assert [r["result"] for r in record][-1] == "succeeded"
    assert "failed" in [r["result"] for r in record]
    last = record[-1]
    assert last["kind"] == "rollback"
    assert (last["release"], last["model_version"]) == ("1.0.0", "1.0.0")
    released = {r["model_version"]: r["image"] for r in record if r["result"] == "succeeded" and r.get("model_version")}
    assert last["from"] == released["2.0.0"]
    assert last["image"] == released["1.0.0"]
    assert last["contract"]["features"][-1] == "feat36"
    # Who ran it, with which code.
    assert re.fullmatch(r"[^@\s]+@\S+", last["actor"]), last
    assert re.fullmatch(r"[0-9a-f]{12}", last["commit"]), last


def test_a_second_rollback_does_not_bring_back_what_the_first_undid() -> None:
    # Served so far: 1.0.0, then 2.0.0, then the rollback left 2.0.0 for 1.0.0. Nothing good was served
    # before 1.0.0, and 2.0.0 was undone: the second rollback refuses, saying why, and changes nothing.
    before, hosts = served_versions(), app_hosts()
    again = playbook("playbooks/rollback.yml", check=False)
    output = again.stdout + again.stderr
    assert again.returncode != 0, output[-3000:]
    assert "no good image was served before modelfleet/app:1.0.0-" in output
    assert "rolled back or left by a rollback" in output
    assert "nothing to roll back to" in output
    assert served_versions() == before
    assert app_hosts() == hosts


@pytest.mark.standalone
def test_teardown_leaves_nothing() -> None:
    playbook("playbooks/teardown.yml")
    playbook("playbooks/teardown.yml")
    assert docker("ps", "-a", "--filter", "label=modelfleet.project=modelfleet", "-q").strip() == ""
    assert docker("network", "ls", "--filter", "label=modelfleet.project=modelfleet", "-q").strip() == ""
    assert docker("volume", "ls", "--filter", "label=modelfleet.project=modelfleet", "-q").strip() == ""
    assert docker("images", "-q", "modelfleet/app").strip() == ""

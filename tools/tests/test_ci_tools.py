"""The test run's own machinery: stage records and budgets (tools/timed, tools/stage-report), lanes with
their own time limit (tools/lane), and the sequence rule of the end-to-end tests (molecule/conftest.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
pytest_plugins = ["pytester"]


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )


def test_timed_records_each_stage_and_warns_over_its_budget(tmp_path: Path) -> None:
    stages, budgets = tmp_path / "stages.tsv", tmp_path / "budgets"
    budgets.write_text("# stage seconds\nquick 0\nroomy 600\n")
    env = {"MODELFLEET_STAGES": str(stages), "MODELFLEET_BUDGETS": str(budgets)}
    over = _run(TOOLS / "timed", "quick", "sleep", "1.1", env=env)
    within = _run(TOOLS / "timed", "roomy", "true", env=env)
    failed = _run(TOOLS / "timed", "unbudgeted", "bash", "-c", "exit 3", env=env)
    assert over.returncode == 0
    assert re.search(r"^WARNING: stage quick took [12]s, over its budget of 0s", over.stdout, re.M), over.stdout
    assert within.returncode == 0
    assert "budget" not in within.stdout
    assert failed.returncode == 3
    assert re.search(r"^<== unbudgeted: \d+s \(FAILED, exit 3\)$", failed.stdout, re.M), failed.stdout
    rows = [line.split("\t") for line in stages.read_text().splitlines()]
    assert [(row[0], row[2]) for row in rows] == [("quick", "ok"), ("roomy", "ok"), ("unbudgeted", "FAILED, exit 3")]
    assert int(rows[0][1]) >= 1  # whole seconds: the sleep of 1.1 s took 1 or 2 of them
    assert all(row[3].isdigit() for row in rows)  # the start, for the CPU column


def test_stage_report_prints_every_stage_and_fails_a_run_over_its_limit(tmp_path: Path) -> None:
    stages, budgets = tmp_path / "stages.tsv", tmp_path / "budgets"
    budgets.write_text("pytest 300\n")
    stages.write_text("pytest\t301\tok\t1000\nlane:aws\t12\tFAILED, exit 124\t2000\n")
    cpu = tmp_path / "cpu"
    cpu.write_text("1005 50\n1010 100\n1500 0\n")  # 1500 is after pytest ended
    env = {"MODELFLEET_BUDGETS": str(budgets)}
    within = _run(TOOLS / "stage-report", stages, "100", "3600", cpu, env=env)
    over = _run(TOOLS / "stage-report", stages, "3601", "3600", env=env)
    empty = _run(TOOLS / "stage-report", tmp_path / "none.tsv", "5", "3600", env=env)
    assert within.returncode == 0, within.stdout
    assert re.search(r"^pytest +301 +300 +75%  ok  OVER BUDGET$", within.stdout, re.M), within.stdout
    assert re.search(r"^lane:aws +12 +- +-  FAILED, exit 124$", within.stdout, re.M), within.stdout
    assert re.search(r"^total \(wall clock\) +100 +3600 +50%$", within.stdout, re.M), within.stdout
    assert over.returncode == 1
    assert "the run took 3601s, over its limit of 3600s" in over.stdout
    assert empty.returncode == 0
    assert "no stage finished" in empty.stdout


def test_a_lane_over_its_limit_is_stopped_with_what_it_started_and_named(tmp_path: Path) -> None:
    stages, log, child = tmp_path / "stages.tsv", tmp_path / "lane.log", tmp_path / "child.pid"
    # The lane starts a grandchild that would outlive a lane killed on its own.
    script = f"sleep 60 & echo $! > {child}; wait"
    result = _run(TOOLS / "lane", "slow", "2", log, "bash", "-c", script, env={"MODELFLEET_STAGES": str(stages)})
    assert result.returncode == 124
    assert "LANE TIMEOUT: lane slow was stopped at its limit of 2s" in log.read_text()
    pid = int(child.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    (name, _, outcome, _) = stages.read_text().splitlines()[-1].split("\t")
    assert (name, outcome) == ("lane:slow", "FAILED, exit 124")


SEQUENCE_MODULE = """
import pytest

SEQUENCE = True


def test_first():
    pass


def test_second():
    assert False, "broken"


def test_third():
    pass


@pytest.mark.standalone
def test_teardown():
    pass
"""


def test_a_failure_in_a_sequence_skips_the_tests_that_need_its_state(pytester: pytest.Pytester) -> None:
    shutil.copy(ROOT / "molecule" / "conftest.py", pytester.path / "conftest.py")
    pytester.makepyfile(test_ordered=SEQUENCE_MODULE, test_free=SEQUENCE_MODULE.replace("SEQUENCE = True", ""))
    result = pytester.runpytest("-v", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=2, skipped=1)
    result.stdout.fnmatch_lines(["*test_ordered.py::test_third SKIPPED*", "*test_ordered.py::test_teardown PASSED*"])
    result.stdout.fnmatch_lines(["*test_free.py::test_third PASSED*"])
    result.stdout.fnmatch_lines(["*needs the state test_second leaves, and test_second failed*"])

"""Shared helpers for every test below molecule/: the Molecule scenarios' testinfra tests and the fleet
and AWS end-to-end tests.

A test module names the systemd units it checks in a module-level ``UNITS`` list; when one of its
tests fails, the last journal lines of those units on the failing host are attached to the report.

A module whose tests run in order on the state the ones before leave sets ``SEQUENCE = True``: once
one of its tests fails, the later ones are skipped with the failing test named as the reason (one
failure reads as one), except tests marked ``@pytest.mark.standalone`` (they build their own state,
like a teardown).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

_FAILED_IN: dict[str, str] = {}  # module node id -> the first test of a SEQUENCE module that failed


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "standalone: in a SEQUENCE module, runs even when an earlier test failed (builds its own state)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    module = getattr(item, "module", None)
    if not getattr(module, "SEQUENCE", False) or item.get_closest_marker("standalone"):
        return
    failed = _FAILED_IN.get(item.nodeid.split("::")[0])
    if failed:
        pytest.skip(f"needs the state {failed} leaves, and {failed} failed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and getattr(getattr(item, "module", None), "SEQUENCE", False):
        _FAILED_IN.setdefault(item.nodeid.split("::")[0], item.name)
    if report.when != "call" or not report.failed:
        return
    host = getattr(item, "funcargs", {}).get("host")
    if host is None:
        return
    for unit in getattr(item.module, "UNITS", []):
        journal = host.run(f"journalctl -u {unit} -n 40 --no-pager").stdout
        report.sections.append((f"journal of {unit} on {host.backend.get_hostname()}", journal))


@pytest.fixture
def exposure(host: Any) -> Any:
    """``exposure(unit)``: systemd-analyze's exposure score of a unit (0 most locked down, 10 least)."""

    def score(unit: str) -> float:
        out = host.check_output(f"systemd-analyze security {unit} --no-pager")
        match = re.search(r"Overall exposure level for \S+: ([\d.]+)", out)
        assert match, out
        print(f"systemd-analyze security {unit}: {match.group(1)}")
        return float(match.group(1))

    return score

"""Shared testinfra helpers for every Molecule scenario.

A test module names the systemd units it checks in a module-level ``UNITS`` list; when one of its
tests fails, the last journal lines of those units on the failing host are attached to the report.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
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

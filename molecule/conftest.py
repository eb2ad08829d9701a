"""Shared testinfra helpers for every Molecule scenario.

A test module names the systemd units it checks in a module-level ``UNITS`` list; when one of its
tests fails, the last journal lines of those units on the failing host are attached to the report.
"""

from __future__ import annotations

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

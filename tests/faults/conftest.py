"""Prints what the fault suite injected and what it found, at the end of the run."""

from __future__ import annotations

import pytest

from tests.faults.test_faults import FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault injection")
    for row in FIGURES:
        terminalreporter.write_line(", ".join(f"{key}={value}" for key, value in row.items()))

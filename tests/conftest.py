"""Hooks for the whole suite.

The documentation tier lists, at the end of every run that ran it, the examples that do
not run here and why (their `doctest: skip` markers). It lives here, not in tests/docs:
under pytest-xdist the controller that prints the summary collects nothing, so only a
top-level conftest reaches it."""

from __future__ import annotations

from typing import Any

from tests.docs.examples import MarkerError, all_examples


def _ran_the_docs_tier(terminalreporter: Any) -> bool:
    return any(
        str(getattr(report, "nodeid", "")).startswith("tests/docs/")
        for reports in terminalreporter.stats.values()
        for report in reports
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ran_the_docs_tier(terminalreporter):
        return
    try:
        skipped = [e for e in all_examples() if e.kind == "skip"]
    except MarkerError as exc:  # the tests report it; the summary must not crash
        terminalreporter.write_line(f"documentation examples: {exc}")
        return
    if not skipped:
        return
    terminalreporter.section("documentation examples not run here")
    for example in skipped:
        terminalreporter.write_line(f"{example.id}: {example.reason}")

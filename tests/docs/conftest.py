"""The documentation tier lists, at the end of every run that collected it, the examples
that do not run here and why (their `doctest: skip` markers)."""

from __future__ import annotations

from typing import Any

from tests.docs.examples import MarkerError, all_examples


def pytest_terminal_summary(terminalreporter: Any) -> None:
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

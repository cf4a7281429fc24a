"""The chaos tier: the `chaos` marker selects the runs against real clusters."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: fault-injection runs against a real cluster (tests/chaos)"
    )

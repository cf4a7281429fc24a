"""`--rewrite` (or RAFTKV_REWRITE=1) rewrites the transcripts' expected outputs."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--rewrite", action="store_true", default=False,
                     help="rewrite the expected output of Paxos transcript tests")

"""`--rewrite` (or RAFTKV_REWRITE=1) rewrites the transcripts' expected outputs."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    # Only seen when pytest is pointed at this folder (or below); the environment
    # variable works from anywhere.
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="rewrite the expected output of Raft transcript tests",
    )

"""Run every testdata/*.txt transcript against the Raft core.

Rewrite expectations after an intended behaviour change with
`RAFTKV_REWRITE=1 pytest tests/unit/raft` (or `pytest tests/unit/raft --rewrite`),
then review the diff line by line: a transcript that records a bug is worse than none.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.raft.datadriven import run_file
from tests.unit.raft.harness import InteractionEnv

TESTDATA = Path(__file__).parent / "testdata"
TRANSCRIPTS = sorted(TESTDATA.glob("*.txt"))


def rewrite_requested(config: pytest.Config) -> bool:
    return os.environ.get("RAFTKV_REWRITE") == "1" or bool(
        config.getoption("--rewrite", default=False)
    )


def test_there_are_transcripts() -> None:
    assert len(TRANSCRIPTS) >= 10, TRANSCRIPTS


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_transcript(path: Path, request: pytest.FixtureRequest) -> None:
    env = InteractionEnv()
    mismatches = run_file(path, env.handle, rewrite=rewrite_requested(request.config))
    if mismatches and not rewrite_requested(request.config):
        shown = "\n".join(m.describe() for m in mismatches[:3])
        more = f"\n... and {len(mismatches) - 3} more" if len(mismatches) > 3 else ""
        pytest.fail(
            f"{len(mismatches)} transcript mismatch(es); rerun with RAFTKV_REWRITE=1 "
            f"to accept after review:\n{shown}{more}",
            pytrace=False,
        )

"""Run every testdata/*.txt transcript against the Multi-Paxos core.

Rewrite expectations after an intended behaviour change with
`RAFTKV_REWRITE=1 pytest tests/unit/paxos`, then review the diff line by line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.paxos.harness import InteractionEnv
from tests.unit.raft.datadriven import run_file
from tests.unit.raft.test_transcripts import rewrite_requested

TESTDATA = Path(__file__).parent / "testdata"
TRANSCRIPTS = sorted(TESTDATA.glob("*.txt"))


def test_there_are_transcripts() -> None:
    assert len(TRANSCRIPTS) >= 7, TRANSCRIPTS


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_transcript(path: Path, request: pytest.FixtureRequest) -> None:
    env = InteractionEnv()
    mismatches = run_file(path, env.handle, rewrite=rewrite_requested(request.config))
    if mismatches and not rewrite_requested(request.config):
        shown = "\n".join(m.describe() for m in mismatches[:3])
        pytest.fail(
            f"{len(mismatches)} transcript mismatch(es); rerun with RAFTKV_REWRITE=1 "
            f"to accept after review:\n{shown}",
            pytrace=False,
        )

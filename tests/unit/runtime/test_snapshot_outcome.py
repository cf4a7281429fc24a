"""What a pending write is told when a snapshot replaces its entry (issue 15 item 1).

"proposal_lost" says "not applied", so it must only be answered when that is
certain; otherwise the answer is "outcome_unknown" (retry with the same session)."""

from __future__ import annotations

import pytest

from raftkv.raft.types import ConfState, SnapshotMeta
from raftkv.runtime.http.errors import api_error
from raftkv.runtime.node import OutcomeUnknown, ProposalLost, snapshot_outcome

META = SnapshotMeta(100, 5, ConfState(frozenset({1, 2, 3}), frozenset()))


@pytest.mark.parametrize(
    ("index", "term"),
    [
        (100, 4),  # the snapshot's own entry has another term: ours was overwritten
        (100, 6),
        (50, 6),  # a later term than the snapshot's last entry never committed below it
    ],
)
def test_certainly_not_applied_is_proposal_lost(index: int, term: int) -> None:
    exc = snapshot_outcome(index, term, META)
    assert isinstance(exc, ProposalLost)
    error = api_error(exc)
    assert (error.status, error.code) == (503, "proposal_lost")


@pytest.mark.parametrize(
    ("index", "term"),
    [
        (100, 5),  # the snapshot's own entry: ours (applied, but its result is not known here)
        (99, 5),  # may or may not be in the snapshot
        (50, 3),
    ],
)
def test_maybe_applied_is_outcome_unknown(index: int, term: int) -> None:
    exc = snapshot_outcome(index, term, META)
    assert isinstance(exc, OutcomeUnknown)
    error = api_error(exc)
    assert (error.status, error.code) == (503, "outcome_unknown")
    assert "same session" in error.message

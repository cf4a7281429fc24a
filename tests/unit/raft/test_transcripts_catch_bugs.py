"""Proof that the transcripts can fail: each known bug, injected into the core,
changes the output of the transcript written to catch it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from raftkv.raft import Raft, Snapshot
from raftkv.raft.readonly import ReadOnly
from raftkv.raft.types import Message
from tests.unit.raft.datadriven import run_file
from tests.unit.raft.harness import CommandError, InteractionEnv

TESTDATA = Path(__file__).parent / "testdata"


def commit_by_counting_any_term(self: Raft) -> bool:
    index = self._committed_index_by_quorum()
    if index > self.log.committed:
        self.log.commit_to(index)
        self._on_commit_advanced()
        return True
    return False


def learners_count_for_check_quorum(self: Raft, nodes: set[int]) -> bool:
    return len(nodes & self.conf.members()) >= self._quorum()


def read_index_without_waiting_for_the_terms_first_commit(self: Raft) -> bool:
    return True


_original_restore = Raft._restore


def ignore_snapshots_that_predate_us(self: Raft, snap: Snapshot) -> bool:
    if self.id not in snap.meta.conf_state.members():
        return False
    return _original_restore(self, snap)


_original_reject = Raft._handle_append_reject


def treat_hint_zero_as_no_hint(self: Raft, m: Message, pr: object) -> None:
    if m.reject_hint == 0 and m.log_term == 0:
        m.reject_hint = m.index
    _original_reject(self, m, pr)  # type: ignore[arg-type]


def pre_vote_bumps_the_term(self: Raft) -> None:
    self.term += 1
    self.votes = {}
    self.leader = 0
    self.role = type(self.role).PRE_CANDIDATE


def leader_unreachable_about_anyone(self: Raft, leader: int) -> None:
    if self.role == type(self.role).FOLLOWER:  # not checked: is it OUR leader?
        self.election_elapsed = max(
            self.election_elapsed, self.cfg.election_tick, self.randomized_election_timeout - 1
        )


def leader_unreachable_campaigns_at_once(self: Raft, leader: int) -> None:
    if self.role == type(self.role).FOLLOWER and leader == self.leader:
        self._hup(transfer=False)  # every follower at once: they split the vote


def read_round_releases_every_queued_request(
    self: ReadOnly, ctx: bytes
) -> list[tuple[bytes, int, int]]:
    if ctx not in self.pending:  # unsafe: also releases requests queued AFTER ctx's round
        return []
    out = [(c, index, frm) for c, (index, frm, _) in self.pending.items()]
    self.pending.clear()
    return out


def read_round_per_request(self: Raft, ctx: bytes, frm: int) -> None:
    self.read_only.add(self.log.committed, ctx, frm)
    self.read_only.ack(ctx, self.id)
    self._bcast_heartbeat(ctx)  # one heartbeat round per request: not batched


MUTANTS: list[tuple[str, str, Callable[..., object]]] = [
    ("figure8", "_maybe_commit", commit_by_counting_any_term),
    ("learners", "_has_quorum", learners_count_for_check_quorum),
    (
        "read_index",
        "_committed_entry_in_current_term",
        read_index_without_waiting_for_the_terms_first_commit,
    ),
    ("learners", "_restore", ignore_snapshots_that_predate_us),
    ("conflict_hints", "_handle_append_reject", treat_hint_zero_as_no_hint),
    ("prevote_disruptive_rejoin", "become_pre_candidate", pre_vote_bumps_the_term),
    ("leader_unreachable", "leader_unreachable", leader_unreachable_about_anyone),
    ("leader_unreachable", "leader_unreachable", leader_unreachable_campaigns_at_once),
    ("read_index_batching", "ReadOnly.advance", read_round_releases_every_queued_request),
    ("read_index_batching", "_handle_read_index", read_round_per_request),
]


@pytest.mark.parametrize(
    ("transcript", "method", "mutant"), MUTANTS, ids=[f"{t}-{m.__name__}" for t, _, m in MUTANTS]
)
def test_an_injected_bug_changes_the_transcript(
    transcript: str, method: str, mutant: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, _, name = method.rpartition(".")
    monkeypatch.setattr({"": Raft, "ReadOnly": ReadOnly}[owner], name, mutant)
    env = InteractionEnv()
    try:
        mismatches = run_file(TESTDATA / f"{transcript}.txt", env.handle)
    except AssertionError:
        return  # the broken core tripped an invariant check: caught as well
    except CommandError as e:
        assert "did not converge" in str(e), e
        return  # the broken core livelocked (e.g. resends a snapshot forever): caught
    assert mismatches, f"{transcript}.txt did not notice {mutant.__name__}"

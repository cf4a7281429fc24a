"""Deliberately broken cores: each overrides ONE method of Raft with a known bug.

The simulator must report a violation for every one of them within a bounded
number of seeds (tests/sim/test_checker_catches_bugs.py); that is the proof
that its faults and checks can fail.
"""

from __future__ import annotations

from raftkv.raft import NONE, Entry, HardState, Message, MsgType, Raft, ReadState, Snapshot


class CommitsPreviousTerm(Raft):
    """Raft figure 8: commits an entry of an earlier term by counting replicas."""

    def _maybe_commit(self) -> bool:
        index = self._committed_index_by_quorum()
        if index > self.log.committed:
            self.log.commit_to(index)
            self._on_commit_advanced()
            return True
        return False


class ForgetsVote(Raft):
    """The vote is kept in memory but never persisted: a restart forgets it."""

    def _hard_state(self) -> HardState:
        return HardState(self.term, NONE, self.log.committed)


class TruncatesOnAppend(Raft):
    """A follower truncates its log after every AppendEntries, even one that does not
    conflict (a stale, reordered message then erases entries it already acked)."""

    def _maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: list[Entry]
    ) -> int | None:
        log = self.log
        if not log.match_term(prev_index, prev_term):
            return None
        if entries and entries[0].index > log.committed:
            log.append(list(entries))  # drops whatever followed, matching or not
        elif entries:
            log.maybe_append(prev_index, prev_term, 0, entries)
        last_new = prev_index + len(entries)
        log.commit_to(min(commit, last_new, log.last_index()))
        return last_new


class VotesWithoutLogCheck(Raft):
    """Grants votes without checking that the candidate's log is up to date (§5.4.1)."""

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.leader == NONE)
            or (m.type == MsgType.PRE_VOTE and m.term > self.term)
        )
        resp_type = MsgType.VOTE_RESP if m.type == MsgType.VOTE else MsgType.PRE_VOTE_RESP
        if can_vote:
            self._send(Message(resp_type, to=m.frm, frm=self.id, term=m.term))
            if m.type == MsgType.VOTE:
                self.election_elapsed = 0
                self._record_vote(m.frm)
        else:
            self._send(Message(resp_type, to=m.frm, frm=self.id, term=self.term, reject=True))


class VotesTwice(Raft):
    """Grants a (pre-)vote to every up-to-date candidate, even after voting in the term."""

    def _handle_vote_request(self, m: Message) -> None:
        resp_type = MsgType.VOTE_RESP if m.type == MsgType.VOTE else MsgType.PRE_VOTE_RESP
        if self.log.is_up_to_date(m.index, m.log_term):
            self._send(Message(resp_type, to=m.frm, frm=self.id, term=m.term))
            if m.type == MsgType.VOTE:
                self.election_elapsed = 0
                self._record_vote(m.frm)
        else:
            self._send(Message(resp_type, to=m.frm, frm=self.id, term=self.term, reject=True))


class ReadsWithoutQuorum(Raft):
    """ReadIndex answered at once from the leader's commit index, with no heartbeat
    round: a deposed leader that does not know it yet serves stale reads."""

    def _handle_read_index(self, ctx: bytes, frm: int) -> None:
        self._respond_read(ctx, self.log.committed, frm)


class ReadsBeforeTermCommit(Raft):
    """Treats the leader as having committed an entry of its term from the start: a
    new leader's commit index may lag what its predecessor acknowledged."""

    def _committed_entry_in_current_term(self) -> bool:
        return True


class HeartbeatCommitUnclamped(Raft):
    """Heartbeats carry the leader's commit index even to followers whose logs are
    not known to match that far, so they commit their own divergent entries."""

    def _bcast_heartbeat(self, ctx: bytes = b"") -> None:
        for node in self.prs:
            if node != self.id:
                self._send(
                    Message(
                        MsgType.HEARTBEAT,
                        to=node,
                        frm=self.id,
                        commit=self.log.committed,
                        context=ctx,
                    )
                )


class RestoresStaleSnapshot(Raft):
    """Installs any snapshot it is sent, even one older than its commit index."""

    def _restore(self, snap: Snapshot) -> bool:
        meta = snap.meta
        if meta.index > self.log.committed and self.log.match_term(meta.index, meta.term):
            self.log.commit_to(meta.index)
            return False
        self.log.restore(meta)
        self.conf = meta.conf_state
        self._conf_applied = meta.index
        self._pending_snapshot = snap
        return True


class ReadStateBeforeApply(Raft):
    """Hands a follower's read state over as the leader's commit index at once, but
    computed from the follower's own (possibly stale) commit index."""

    def _step_follower(self, m: Message) -> None:
        if m.type == MsgType.READ_INDEX_RESP:
            self.read_states.append(ReadState(self.log.committed, m.context))
            return
        super()._step_follower(m)


VARIANTS: dict[str, type[Raft]] = {
    "figure8": CommitsPreviousTerm,
    "forgets_vote": ForgetsVote,
    "truncates_on_append": TruncatesOnAppend,
    "votes_without_log_check": VotesWithoutLogCheck,
    "votes_twice": VotesTwice,
    "reads_without_quorum": ReadsWithoutQuorum,
    "reads_before_term_commit": ReadsBeforeTermCommit,
    "heartbeat_commit_unclamped": HeartbeatCommitUnclamped,
    "restores_stale_snapshot": RestoresStaleSnapshot,
    "follower_read_own_commit": ReadStateBeforeApply,
}

"""Safety invariants, checked incrementally as the simulation runs.

Each check costs O(1) per event or per entry: the checker remembers the first
node to hold each (index, term), the term committed at each index, the entry
applied at each index, and so on, and compares every later observation with
that record instead of comparing whole logs.
"""

from __future__ import annotations

from raftkv.raft import Entry, HardState, Message, Raft
from raftkv.raft.log import CompactedError


class Violation(Exception):
    """A safety or liveness property failed."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


class Checker:
    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}  # term -> the node that led it
        # (index, term) -> (entry type, data, term of index-1), as first seen on any node
        self.entries: dict[tuple[int, int], tuple[int, bytes, int]] = {}
        self.committed: dict[int, int] = {}  # index -> term of the entry committed there
        self.max_committed = 0
        # term -> highest index first seen committed by a node in that term. An entry
        # is committed "in" the term of the first node seen committing it: the leader,
        # or a node that already adopted a later term, never an earlier one.
        self.committed_in_term: dict[int, int] = {}
        self.applied: dict[int, tuple[int, int, bytes]] = {}  # index -> (term, type, data)
        self.applied_at: dict[bytes, int] = {}  # write payload -> index it was applied at
        self.sm_len: dict[int, int] = {}  # index -> state-machine length once it is applied
        self.acked: dict[bytes, int] = {}  # acknowledged write -> its index
        self.failed: set[bytes] = set()  # writes whose client was told they failed
        self.max_acked_index = 0
        self.lin_floor = 0  # state-machine length every later read must reach
        self.reads_checked = 0
        self.writes_acked = 0

    # --- election safety, leader completeness ----------------------------------
    def on_leader(self, node: int, core: Raft) -> None:
        term = core.term
        other = self.leaders.setdefault(term, node)
        if other != node:
            raise Violation("election safety", f"nodes {other} and {node} both lead term {term}")
        # Leader completeness: the leader of term T holds every entry committed in a
        # term before T (a stale term may be won after later terms committed more).
        c = max((i for t, i in self.committed_in_term.items() if t < term), default=0)
        if c and c > core.log.offset:
            have = core.log.term_or_zero(c)
            if have != self.committed[c]:
                raise Violation(
                    "leader completeness",
                    f"node {node} leads term {term} but holds term {have} at "
                    f"committed index {c} (committed term {self.committed[c]}, "
                    f"its last index {core.last_index()})",
                )

    # --- log matching ------------------------------------------------------------
    def on_entries(self, node: int, core: Raft, entries: list[Entry]) -> None:
        """`entries` just entered node's log (a Ready's entries, contiguous)."""
        if not entries:
            return
        try:
            prev_term = core.log.term(entries[0].index - 1)
        except CompactedError:
            prev_term = -1  # not knowable here; the rest of the batch is still checked
        known = self.entries
        for e in entries:
            key = (e.index, e.term)
            rec = known.get(key)
            if rec is None:
                known[key] = (int(e.type), e.data, prev_term)
            elif (
                rec[1] != e.data
                or rec[0] != e.type
                or (prev_term >= 0 and rec[2] >= 0 and rec[2] != prev_term)
            ):
                raise Violation(
                    "log matching",
                    f"node {node} holds ({e.index}, term {e.term}) with data "
                    f"{e.data[:24]!r}/prev term {prev_term}, first seen as "
                    f"{rec[1][:24]!r}/prev term {rec[2]}",
                )
            prev_term = e.term

    # --- commit ------------------------------------------------------------------
    def on_commit(self, node: int, core: Raft, old: int, new: int) -> None:
        """node's commit index moved from old to new (its log holds (old, new])."""
        if new < old:
            raise Violation("commit index decreased", f"node {node}: {old} -> {new}")
        log = core.log
        committed = self.committed
        for i in range(max(old + 1, log.offset), new + 1):
            t = log.term(i)
            have = committed.setdefault(i, t)
            if have != t:
                raise Violation(
                    "committed entry changed",
                    f"node {node} commits term {t} at index {i}, "
                    f"term {have} was committed there before",
                )
        if new > self.max_committed:
            self.max_committed = new
            if self.committed_in_term.get(core.term, 0) < new:
                self.committed_in_term[core.term] = new

    # --- state machine safety, exactly once --------------------------------------
    def on_apply(self, node: int, e: Entry) -> None:
        rec = (e.term, int(e.type), e.data)
        have = self.applied.setdefault(e.index, rec)
        if have != rec:
            raise Violation(
                "state machine safety",
                f"node {node} applies (term {e.term}, {e.data[:24]!r}) at index "
                f"{e.index}; another node applied (term {have[0]}, "
                f"{have[2][:24]!r})",
            )
        if e.data and e.type == 0:
            if e.data in self.failed:
                raise Violation(
                    "failed write applied",
                    f"write {e.data!r} was reported failed (its index got another entry) "
                    f"but is applied at {e.index}",
                )
            at = self.applied_at.setdefault(e.data, e.index)
            if at != e.index:
                raise Violation(
                    "exactly once", f"write {e.data!r} applied at index {at} and again at {e.index}"
                )

    def on_state(self, node: int, index: int, length: int) -> None:
        """Node's state machine holds `length` writes after applying `index` (or after
        restoring a snapshot at `index`): the same on every node."""
        have = self.sm_len.setdefault(index, length)
        if have != length:
            raise Violation(
                "state machine safety",
                f"node {node} holds {length} writes at index {index}, another node {have}",
            )

    def on_snapshot_installed(self, node: int, index: int, term: int) -> None:
        have = self.committed.get(index)
        if have is not None and have != term:
            raise Violation(
                "snapshot safety",
                f"node {node} installs a snapshot at ({index}, term {term}) but "
                f"term {have} is committed there",
            )

    # --- durability before replies ------------------------------------------------
    def on_vote_sent(self, node: int, m: Message, persisted: HardState) -> None:
        """A granted vote leaves only once (term, vote) for it is on disk, or a later
        term (which forbids voting again in this one) is."""
        if persisted.term < m.term or (persisted.term == m.term and persisted.vote != m.to):
            raise Violation(
                "vote persisted before reply",
                f"node {node} grants its term-{m.term} vote to {m.to} with (term "
                f"{persisted.term}, vote {persisted.vote}) on disk",
            )

    def on_ack_sent(self, node: int, m: Message, persisted_last: int, persisted_term: int) -> None:
        """An AppendEntries ack for index i leaves only once the log up to i is on disk.
        Unless the node has since moved to a later term: a later leader may truncate an
        acked tail at any time (the ack could as well have been sent just before), so
        an ack answered in the same Ready as that truncation is no different."""
        if m.index > persisted_last and persisted_term == m.term:
            raise Violation(
                "entries persisted before ack",
                f"node {node} acks index {m.index} to {m.to} with only {persisted_last} on disk",
            )

    # --- client-visible behaviour ------------------------------------------------
    def on_write_acked(self, data: bytes, index: int, position: int) -> None:
        self.acked[data] = index
        self.writes_acked += 1
        if index > self.max_acked_index:
            self.max_acked_index = index
        if position > self.lin_floor:
            self.lin_floor = position

    def on_write_failed(self, data: bytes) -> None:
        """Another entry was applied where the write was proposed: it can never apply."""
        if data in self.applied_at:
            raise Violation(
                "failed write applied",
                f"write {data!r} was reported failed but is applied at {self.applied_at[data]}",
            )
        self.failed.add(data)

    def on_read_served(self, node: int, floor: int, length: int, index: int) -> None:
        """A ReadIndex read served the state-machine prefix of `length` writes."""
        self.reads_checked += 1
        if length < floor:
            raise Violation(
                "linearizable read",
                f"read at node {node} (read index {index}) saw {length} writes, "
                f"but {floor} were acknowledged or observed before it began",
            )
        if length > self.lin_floor:
            self.lin_floor = length

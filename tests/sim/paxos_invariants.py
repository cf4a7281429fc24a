"""Safety invariants of the Multi-Paxos engine, checked as the simulation runs.

- at most one value is chosen per slot, by the acceptors' own record: when a
  majority of the slot's configuration has durably accepted (slot, ballot,
  value) (it sent ACCEPTED), that value is chosen; a second value chosen there
  is a violation, whatever any node believes;
- chosen values never change: every node that learns a slot (its commit index
  passes it) learns that value, and applies it;
- applied prefixes agree: the state machine after slot s is the same everywhere;
- promises and accepts are durable before the reply that depends on them leaves;
- linearizable client history: an acknowledged write is applied exactly once at
  its slot, a write reported failed never applies, and a read sees every write
  acknowledged (and everything an earlier read saw) before it began.
"""

from __future__ import annotations

from raftkv.paxos import Message, conf_after
from raftkv.raft import ConfChange, ConfState, Entry, EntryType
from tests.sim.invariants import Violation


class PaxosChecker:
    def __init__(self, founders: ConfState) -> None:
        self.founders = founders
        # (slot, ballot) -> (value, acceptors that durably accepted it)
        self.accepts: dict[tuple[int, int], tuple[tuple[int, bytes], set[int]]] = {}
        self.chosen: dict[int, tuple[int, bytes]] = {}  # by the acceptors' record
        self.learned: dict[int, tuple[int, bytes]] = {}  # as first learnt by any node
        self.prefix = 0  # slots 1..prefix are learnt somewhere
        self.confs: dict[int, ConfState] = {0: founders}  # conf after slot (learnt changes)
        self.deferred: dict[int, list[tuple[int, int]]] = {}  # slot -> (slot, ballot) to recheck
        self.sm_len: dict[int, int] = {}
        self.applied_at: dict[bytes, int] = {}
        self.failed: set[bytes] = set()
        self.lin_floor = 0
        self.reads_checked = 0
        self.writes_acked = 0
        self.max_chosen = 0

    # --- chosen, by the acceptors ------------------------------------------------
    def _conf_for(self, slot: int) -> ConfState | None:
        """The configuration deciding `slot`: after every learnt change before it (None
        while slot - 1 is not learnt anywhere yet)."""
        if slot - 1 > self.prefix:
            return None
        conf = self.founders
        for s in sorted(self.confs):
            if s < slot:
                conf = self.confs[s]
        return conf

    def on_accepted_sent(
        self, node: int, m: Message, durable_entries: dict[int, Entry], durable_base: int
    ) -> None:
        for s in range(m.index, m.last + 1):
            if s <= durable_base:
                continue  # compacted: chosen long ago, the same value by Paxos
            e = durable_entries.get(s)
            if e is None or e.term < m.ballot:
                raise Violation(
                    "accept persisted before reply",
                    f"node {node} acks slot {s} at ballot {m.ballot} with "
                    f"{'nothing' if e is None else f'ballot {e.term}'} on disk",
                )
            if e.term != m.ballot:
                continue  # a higher ballot overwrote it in the same batch: unknown now
            key = (s, m.ballot)
            rec = self.accepts.get(key)
            value = (int(e.type), e.data)
            if rec is None:
                rec = (value, set())
                self.accepts[key] = rec
            elif rec[0] != value:
                raise Violation(
                    "one value per ballot", f"slot {s} ballot {m.ballot}: {rec[0]!r} and {value!r}"
                )
            rec[1].add(node)
            self._check_chosen(s, m.ballot)

    def _check_chosen(self, s: int, b: int) -> None:
        conf = self._conf_for(s)
        if conf is None:
            self.deferred.setdefault(s, []).append((s, b))
            return
        value, acceptors = self.accepts[(s, b)]
        if len(acceptors & conf.voters) * 2 <= len(conf.voters):
            return
        have = self.chosen.setdefault(s, value)
        if have != value:
            raise Violation(
                "at most one value chosen per slot",
                f"slot {s}: {have[1][:24]!r} was chosen, then {value[1][:24]!r} "
                f"by a majority of {sorted(conf.voters)} at ballot {b}",
            )
        learnt = self.learned.get(s)
        if learnt is not None and learnt != value:
            raise Violation(
                "chosen value changed",
                f"slot {s}: nodes learnt {learnt[1][:24]!r}, acceptors chose {value[1][:24]!r}",
            )

    def on_promise_sent(self, node: int, m: Message, durable_promise: int) -> None:
        if durable_promise < m.ballot:
            raise Violation(
                "promise persisted before reply",
                f"node {node} promises ballot {m.ballot} with {durable_promise} on disk",
            )

    # --- learnt and applied --------------------------------------------------------
    def on_learn(self, node: int, slot: int, e: Entry) -> None:
        value = (int(e.type), e.data)
        have = self.learned.setdefault(slot, value)
        if have != value:
            raise Violation(
                "chosen value changed",
                f"node {node} learns {e.data[:24]!r} at slot {slot}; "
                f"{have[1][:24]!r} was learnt there before",
            )
        chosen = self.chosen.get(slot)
        if chosen is not None and chosen != value:
            raise Violation(
                "chosen value changed",
                f"node {node} learns {e.data[:24]!r} at slot {slot}; the "
                f"acceptors chose {chosen[1][:24]!r}",
            )
        self.max_chosen = max(self.max_chosen, slot)
        while self.prefix + 1 in self.learned:
            self.prefix += 1
            t, data = self.learned[self.prefix]
            if t == EntryType.CONF_CHANGE:
                prev = self._conf_for(self.prefix)
                assert prev is not None
                self.confs[self.prefix] = conf_after(prev, ConfChange.decode(data))
            for s, b in self.deferred.pop(self.prefix + 1, []):
                self._check_chosen(s, b)

    def on_apply(self, node: int, e: Entry) -> None:
        self.on_learn(node, e.index, e)
        if e.type == EntryType.NORMAL and e.data:
            if e.data in self.failed:
                raise Violation(
                    "failed write applied",
                    f"write {e.data!r} was reported failed but applies at {e.index}",
                )
            at = self.applied_at.setdefault(e.data, e.index)
            if at != e.index:
                raise Violation(
                    "exactly once", f"write {e.data!r} applied at slot {at} and again at {e.index}"
                )

    def on_state(self, node: int, slot: int, length: int) -> None:
        have = self.sm_len.setdefault(slot, length)
        if have != length:
            raise Violation(
                "applied prefixes agree",
                f"node {node} holds {length} writes after slot {slot}, another node {have}",
            )

    # --- clients ---------------------------------------------------------------------
    def on_write_acked(self, position: int) -> None:
        self.writes_acked += 1
        self.lin_floor = max(self.lin_floor, position)

    def on_write_failed(self, data: bytes) -> None:
        if data in self.applied_at:
            raise Violation(
                "failed write applied",
                f"write {data!r} reported failed but applied at {self.applied_at[data]}",
            )
        self.failed.add(data)

    def on_read_served(self, node: int, floor: int, length: int, index: int) -> None:
        self.reads_checked += 1
        if length < floor:
            raise Violation(
                "linearizable read",
                f"read at node {node} (read index {index}) saw {length} writes, "
                f"but {floor} were acknowledged or observed before it began",
            )
        self.lin_floor = max(self.lin_floor, length)

"""Committed entries into the state machine, and what each apply sets off.

For every entry: apply it (a membership change or a command), answer the
proposal waiting for its index (if the entry is still the one proposed: same
term), and act on the result's typed side effects (`fsm.ApplyResult`): watch
events, lock grants and cancelled lock waits, a lease's deadline started or
forgotten, a checkpoint to write. A duplicate (session replay) has none.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from raftkv.consensus import ConfChange, Entry, EntryType
from raftkv.fsm import ApplyResult, StateMachine
from raftkv.runtime.leases import LeaseClock
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.outcomes import ProposalLost
from raftkv.runtime.waiters import Waiters
from raftkv.runtime.watch import WatchHub


class Applier:
    def __init__(
        self,
        fsm: StateMachine,
        watch: WatchHub,
        waiters: Waiters,
        leases: LeaseClock,
        metrics: NodeMetrics,
        *,
        is_leader: Callable[[], bool],
        on_conf_change: Callable[[ConfChange], None],
        on_checkpoint: Callable[[str, int, int], None],
    ) -> None:
        self.fsm = fsm
        self.watch = watch
        self.waiters = waiters
        self.leases = leases
        self.metrics = metrics
        self._is_leader = is_leader  # only the leader keeps lease deadlines
        self._on_conf_change = on_conf_change
        self._on_checkpoint = on_checkpoint  # (id, index, term): write it now

    def apply(self, entries: list[Entry]) -> None:
        fsm = self.fsm
        waiters = self.waiters.proposals
        committed = failed = 0
        now = time.monotonic()
        for e in entries:
            if e.index <= fsm.applied_index:
                continue  # covered by a restored snapshot
            if e.type == EntryType.CONF_CHANGE:
                cc = ConfChange.decode(e.data)
                res = fsm.apply_conf_change(e.index, cc)
                self._on_conf_change(cc)
            else:
                res = fsm.apply(e.index, e.term, e.data)
                if res.events:
                    self.watch.publish(res.events)
                if not res.duplicate:
                    self._side_effects(e, res, now)
            w = waiters.pop(e.index, None) if waiters else None
            if w is not None:
                if w.answered_by(e):
                    committed += 1
                    self.metrics.proposal_duration.observe(now - w.started)
                    if not w.future.done():
                        w.future.set_result(res)
                else:
                    failed += 1
                    if not w.future.done():
                        w.future.set_exception(
                            ProposalLost(f"entry {e.index} was replaced by another leader's; retry")
                        )
        if committed:
            self.metrics.proposals_committed.inc(committed)
        if failed:
            self.metrics.proposals_failed.inc(failed)

    def _side_effects(self, e: Entry, res: ApplyResult, now: float) -> None:
        if res.lock_grants:
            for grant in res.lock_grants:
                self.waiters.lock_answered(grant.name, grant.lease, grant.token)
        if res.lock_waits_cancelled:
            for c in res.lock_waits_cancelled:
                self.waiters.lock_answered(c.name, c.lease, None)
        if res.revoked_leases:
            for lease_id in res.revoked_leases:
                self.leases.forget(lease_id)
        granted = res.lease_granted
        if granted is not None and self._is_leader():
            self.leases.granted(granted.id, granted.ttl, now)  # a grant starts its clock
        if res.checkpoint is not None:
            self._on_checkpoint(res.checkpoint, e.index, e.term)

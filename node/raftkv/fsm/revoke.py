"""Revoking leases as one change at one revision: the leases leave every lock
queue first, their keys go, and the locks they held pass to the next live waiter."""

from __future__ import annotations

from typing import NamedTuple

from raftkv.fsm import keyspace
from raftkv.fsm.kv import KVStore
from raftkv.fsm.leases import LeaseTable
from raftkv.fsm.locks import HOLDER, LockTable
from raftkv.fsm.results import LockGrant, LockWaitCancelled, WatchEvent


class Revoked(NamedTuple):
    events: list[WatchEvent]
    grants: list[LockGrant]
    cancelled: list[LockWaitCancelled]
    held: list[tuple[str, int]]  # (lock, lease) the revoked leases held

    @property
    def changed(self) -> bool:
        return bool(self.events or self.cancelled or self.held)


def revoke(
    kv: KVStore, leases: LeaseTable, locks: LockTable, ids: list[int], revision: int
) -> Revoked:
    """Revoke granted leases `ids` (sorted) at `revision`."""
    # 1. Every doomed lease leaves every queue before any lock changes hands,
    #    so none of them can be promoted below (etcd #11408).
    cancelled: list[LockWaitCancelled] = []
    held: list[tuple[str, int]] = []
    for lease_id in ids:
        for name in locks.names_for(lease_id):
            if locks.role(name, lease_id) == HOLDER:
                held.append((name, lease_id))
            else:
                locks.dequeue(name, lease_id)
                cancelled.append(LockWaitCancelled(name, lease_id))
    # 2. Attached keys go, in key order.
    events: list[WatchEvent] = []
    for lease_id in ids:
        lease = leases.pop(lease_id)
        for key in sorted(lease.keys):
            keyspace.remove(kv, leases, key, revision, events)
    # 3. Held locks pass to their next (live) waiter.
    grants: list[LockGrant] = []
    for name, lease_id in held:
        grant = locks.release(name, lease_id, revision)
        if grant is not None:
            grants.append(grant)
    return Revoked(events, grants, cancelled, held)

"""Distributed locks: a holder with a fencing token and a FIFO queue of waiters.

Holders and waiters are leases. The machine keeps the invariant that every
lease here is granted: revoking a lease first takes it out of every queue, then
releases what it held, so a waiter whose lease is gone is never promoted (the
etcd #11408 failure). A lock with no holder does not exist (no empty entries).
"""

from __future__ import annotations

from raftkv.fsm.results import LockGrant

HOLDER = "holder"
WAITER = "waiter"


class Lock:
    __slots__ = ("holder", "token", "waiters")

    def __init__(self, holder: int, token: int, waiters: list[int] | None = None) -> None:
        self.holder = holder
        self.token = token
        self.waiters: list[int] = waiters if waiters is not None else []


_LOCK_BYTES = 32  # a lock row's holder, token and headers in a snapshot
_WAITER_BYTES = 9  # one waiting lease id


class LockTable:
    __slots__ = ("_locks", "_by_lease", "_name_bytes", "_waiters")

    def __init__(self) -> None:
        self._locks: dict[str, Lock] = {}
        # lease -> names of the locks it holds or waits for (an index, not state)
        self._by_lease: dict[int, set[str]] = {}
        # sizes for `size_bytes`, kept as locks change (no scan per question)
        self._name_bytes = 0
        self._waiters = 0

    def __len__(self) -> int:
        return len(self._locks)

    def get(self, name: str) -> Lock | None:
        return self._locks.get(name)

    def waiter_count(self) -> int:
        return self._waiters

    def waiters_of(self, name: str) -> int:
        lock = self._locks.get(name)
        return 0 if lock is None else len(lock.waiters)

    def size_bytes(self) -> int:
        """Estimated snapshot size of the locks section (kept as locks change)."""
        return self._name_bytes + _LOCK_BYTES * len(self._locks) + _WAITER_BYTES * self._waiters

    def role(self, name: str, lease: int) -> str | None:
        lock = self._locks.get(name)
        if lock is None:
            return None
        if lock.holder == lease:
            return HOLDER
        return WAITER if lease in lock.waiters else None

    def position(self, name: str, lease: int) -> int:
        """1-based place of a waiting `lease` in the queue of `name` (1 = next)."""
        return self._locks[name].waiters.index(lease) + 1

    def names_for(self, lease: int) -> list[str]:
        """Locks `lease` holds or waits for, sorted (deterministic order)."""
        return sorted(self._by_lease.get(lease, ()))

    def acquire(self, name: str, lease: int, revision: int) -> tuple[bool, int, bool]:
        """-> (acquired, token if acquired else queue position, changed anything)."""
        lock = self._locks.get(name)
        if lock is None:
            self._locks[name] = Lock(lease, revision)
            self._name_bytes += len(name)
            self._link(lease, name)
            return True, revision, True
        if lock.holder == lease:
            return True, lock.token, False
        if lease in lock.waiters:
            return False, lock.waiters.index(lease) + 1, False
        lock.waiters.append(lease)
        self._waiters += 1
        self._link(lease, name)
        return False, len(lock.waiters), True

    def release(self, name: str, lease: int, revision: int) -> LockGrant | None:
        """`lease` (the holder) lets go; the first waiter, if any, takes the lock
        with token `revision` and is returned."""
        lock = self._locks[name]
        if lock.holder != lease:
            raise ValueError(f"lease {lease} does not hold lock {name!r}")
        self._unlink(lease, name)
        if not lock.waiters:
            del self._locks[name]
            self._name_bytes -= len(name)
            return None
        lock.holder = lock.waiters.pop(0)
        self._waiters -= 1
        lock.token = revision
        return LockGrant(name, lock.holder, revision)

    def dequeue(self, name: str, lease: int) -> None:
        """Remove waiting `lease` from the queue of `name`."""
        self._locks[name].waiters.remove(lease)
        self._waiters -= 1
        self._unlink(lease, name)

    def _link(self, lease: int, name: str) -> None:
        names = self._by_lease.get(lease)
        if names is None:
            self._by_lease[lease] = {name}
        else:
            names.add(name)

    def _unlink(self, lease: int, name: str) -> None:
        names = self._by_lease[lease]
        names.discard(name)
        if not names:
            del self._by_lease[lease]

    def info(self, name: str) -> dict[str, object] | None:
        lock = self._locks.get(name)
        if lock is None:
            return None
        return {
            "name": name,
            "holder": lock.holder,
            "token": lock.token,
            "waiters": list(lock.waiters),
        }

    def names(self) -> list[str]:
        return sorted(self._locks)

    def leases(self) -> set[int]:
        """Every lease that holds or waits for a lock."""
        return set(self._by_lease)

    def dump(self) -> list[tuple[str, int, int, list[int]]]:
        """(name, holder, token, waiters) sorted by name: the canonical section."""
        locks = self._locks
        return [
            (name, locks[name].holder, locks[name].token, list(locks[name].waiters))
            for name in sorted(locks)
        ]

    @classmethod
    def load(cls, rows: list[tuple[str, int, int, list[int]]]) -> LockTable:
        table = cls()
        for name, holder, token, waiters in rows:
            if type(name) is not str or name in table._locks or type(holder) is not int:
                raise ValueError(f"bad lock row {name!r}")
            members = [holder, *waiters]
            if len(set(members)) != len(members) or any(type(w) is not int for w in waiters):
                raise ValueError(f"bad waiters of lock {name!r}")
            table._locks[name] = Lock(holder, token, list(waiters))
            table._name_bytes += len(name)
            table._waiters += len(waiters)
            for lease in members:
                table._link(lease, name)
        return table

"""Lease deadlines, kept by the leader only (wall-clock time never enters the log).

Like etcd: a new leader gives every lease a full TTL from the moment it took
over (keep-alives sent to the old leader are not in the log), grants and
keep-alives push a lease's deadline to now + ttl, and expired leases are
revoked by proposing one `LeaseExpire` command through the log.
"""

from __future__ import annotations


class LeaseClock:
    """Deadlines on a monotonic clock; the caller passes `now` (testable)."""

    RETRY_AFTER = 3.0  # re-propose an expiry that has not applied after this long

    def __init__(self) -> None:
        self.deadlines: dict[int, float] = {}
        self.ttls: dict[int, int] = {}
        self._expiring: dict[int, float] = {}  # id -> when its expiry was proposed

    def reset(self, leases: list[tuple[int, int]], now: float) -> None:
        """Became leader: every known lease gets a full TTL from now."""
        self.deadlines = {lease_id: now + ttl for lease_id, ttl in leases}
        self.ttls = dict(leases)
        self._expiring.clear()

    def clear(self) -> None:
        self.deadlines.clear()
        self.ttls.clear()
        self._expiring.clear()

    def granted(self, lease_id: int, ttl: int, now: float) -> None:
        self.deadlines[lease_id] = now + ttl
        self.ttls[lease_id] = ttl

    def keepalive(self, lease_id: int, ttl: int, now: float) -> None:
        self.granted(lease_id, ttl, now)
        self._expiring.pop(lease_id, None)

    def forget(self, lease_id: int) -> None:
        self.deadlines.pop(lease_id, None)
        self.ttls.pop(lease_id, None)
        self._expiring.pop(lease_id, None)

    def remaining(self, lease_id: int, now: float) -> float | None:
        deadline = self.deadlines.get(lease_id)
        return None if deadline is None else max(0.0, deadline - now)

    def due(self, now: float) -> list[int]:
        """Expired leases whose expiry is not already on its way through the log."""
        out = []
        for lease_id, deadline in self.deadlines.items():
            if deadline > now:
                continue
            proposed = self._expiring.get(lease_id)
            if proposed is not None and now - proposed < self.RETRY_AFTER:
                continue
            out.append(lease_id)
        for lease_id in out:
            self._expiring[lease_id] = now
        return sorted(out)

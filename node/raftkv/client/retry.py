"""Retry policy and client sessions (pure: the caller sleeps and sends).

A call is retried on connection errors, timeouts and `503`s until it succeeds,
`max_attempts` is reached or its `deadline` passes. Writes carry a session
(`X-Raftkv-Client-Id` / `X-Raftkv-Seq`); a retry resends the same pair, so a
write whose answer was lost applies once (the server answers the recorded
result).
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass

# 503 codes that mean "the leader moved or is being elected": find it again
# rather than wait for Retry-After (the server's floor of 1 s is coarse).
LEADER_CHANGE_CODES = frozenset({"no_leader", "not_leader", "leader_unreachable", "shutting_down"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`deadline`: seconds for a whole call, all attempts included (long-polls such
    as lock waits add their own wait to it). `max_attempts` 0: until the deadline."""

    max_attempts: int = 0
    deadline: float = 30.0
    base_delay: float = 0.05
    max_delay: float = 2.0
    honor_retry_after: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 0 or self.deadline <= 0:
            raise ValueError("max_attempts must be >= 0 and deadline > 0")
        if not 0 < self.base_delay <= self.max_delay:
            raise ValueError("need 0 < base_delay <= max_delay")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with "equal jitter" for retry number `attempt` (0-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(attempt, 30)))
        return (rng or random).uniform(ceiling / 2, ceiling)

    def delay(
        self,
        attempt: int,
        code: str = "",
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """How long to wait before retry number `attempt` after an error `code`."""
        wait = self.backoff(attempt, rng)
        if retry_after is not None and self.honor_retry_after and code not in LEADER_CHANGE_CODES:
            wait = max(wait, retry_after)
        return wait

    def may_retry(self, attempt: int) -> bool:
        """May attempt number `attempt + 1` (0-based `attempt` just failed) be made?"""
        return self.max_attempts == 0 or attempt + 1 < self.max_attempts


NO_RETRY = RetryPolicy(max_attempts=1)


class Session:
    """One client id and its last used sequence number."""

    __slots__ = ("client_id", "seq")

    def __init__(self, client_id: str, seq: int = 0) -> None:
        self.client_id = client_id
        self.seq = seq

    def next(self) -> int:
        self.seq += 1
        return self.seq


class SessionPool:
    """Client ids for concurrent writers.

    The server allows one write in flight per client id, so every in-flight write
    takes a session of its own; ids are reused afterwards (seq keeps growing), so
    a long-lived client uses as many ids as its peak write concurrency.
    """

    def __init__(self, prefix: str | None = None) -> None:
        if prefix is not None and (not prefix or len(prefix) > 100):
            raise ValueError("client id prefix must be 1..100 characters")
        self.prefix = prefix or secrets.token_hex(8)
        self._free: list[Session] = []
        self._created = 0

    def acquire(self) -> tuple[Session, int]:
        """A free session and the seq for the next write on it."""
        if self._free:
            session = self._free.pop()
        else:
            self._created += 1
            session = Session(
                self.prefix if self._created == 1 else f"{self.prefix}-{self._created}"
            )
        return session, session.next()

    def release(self, session: Session) -> None:
        self._free.append(session)

    @property
    def size(self) -> int:
        return self._created

"""A seeded fake network: per-message loss, duplication, delay (hence reordering)
and directed partitions that the nemesis changes over time.

The network only decides *when* (and how many times) a message arrives; the
cluster schedules the deliveries. A link cut while a message is in flight also
drops it on arrival, like a real partition would.
"""

from __future__ import annotations

import random
from collections.abc import Iterable


class Network:
    __slots__ = ("rng", "loss", "dup", "min_delay", "max_delay", "blocked", "slow")

    def __init__(self, rng: random.Random, min_delay: int = 1, max_delay: int = 8) -> None:
        self.rng = rng
        self.loss = 0.0  # probability a message is lost
        self.dup = 0.0  # probability a message is delivered twice
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.blocked: set[tuple[int, int]] = set()  # directed links (frm, to) that are cut
        self.slow: dict[int, int] = {}  # node -> extra delay on everything it sends/receives

    # --- faults ----------------------------------------------------------------
    def heal(self) -> None:
        self.blocked.clear()
        self.slow.clear()
        self.loss = 0.0
        self.dup = 0.0

    def partition(self, groups: list[list[int]], nodes: Iterable[int]) -> None:
        """Cut every link between different groups; nodes in no group are isolated."""
        side: dict[int, int] = {}
        for g, members in enumerate(groups):
            for n in members:
                side[n] = g
        everyone = sorted(set(nodes))
        self.blocked = {
            (a, b)
            for a in everyone
            for b in everyone
            if a != b and side.get(a, -1 - a) != side.get(b, -1 - b)
        }

    def cut(self, frm: int, to: int) -> None:
        self.blocked.add((frm, to))

    def link_ok(self, frm: int, to: int) -> bool:
        return (frm, to) not in self.blocked

    # --- delivery plan ---------------------------------------------------------
    def delays(self, frm: int, to: int) -> list[int]:
        """Delays of each copy of one message from frm to to; empty if it is lost."""
        if (frm, to) in self.blocked:
            return []
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            return []
        extra = self.slow.get(frm, 0) + self.slow.get(to, 0)
        d = rng.randint(self.min_delay, self.max_delay) + extra
        if self.dup and rng.random() < self.dup:
            return [d, rng.randint(self.min_delay, self.max_delay * 4) + extra]
        return [d]

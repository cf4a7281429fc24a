"""Watch streams: a bounded in-memory history of changes and the open watchers.

Every member fills the history as it applies entries, so any member can serve
a watch. A watcher starting at revision r gets every event with mod_revision
>= r, then live events; a start revision older than the history answers 410
(compacted), like etcd.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

from raftkv.fsm import WatchEvent


class Compacted(Exception):
    def __init__(self, oldest: int) -> None:
        super().__init__(f"revisions before {oldest} are no longer in the watch history")
        self.oldest = oldest


class Watcher:
    __slots__ = ("match", "queue", "closed_reason", "max_queue")

    def __init__(self, match: Callable[[bytes], bool], max_queue: int) -> None:
        self.match = match
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self.closed_reason = ""
        self.max_queue = max_queue

    def close(self, reason: str) -> None:
        if not self.closed_reason:
            self.closed_reason = reason
            self.queue.put_nowait(None)


class WatchHub:
    def __init__(self, capacity: int = 10000, max_queue: int = 10000) -> None:
        self.history: deque[WatchEvent] = deque(maxlen=capacity)
        # Every revision > compacted is in `history` (or has not happened yet).
        self.compacted = 0
        self.watchers: set[Watcher] = set()
        self.max_queue = max_queue

    def reset(self, revision: int) -> None:
        """The state was replaced (snapshot install): history before it is gone."""
        self.history.clear()
        self.compacted = revision
        for w in list(self.watchers):
            w.close("compacted")
        self.watchers.clear()

    def publish(self, events: Sequence[WatchEvent]) -> None:
        history = self.history
        for ev in events:
            if len(history) == history.maxlen:
                self.compacted = history[0].mod_revision
            history.append(ev)
        if not self.watchers:
            return
        for w in list(self.watchers):
            for ev in events:
                if w.match(ev.key):
                    if w.queue.qsize() >= w.max_queue:
                        w.close("too slow")  # a stuck reader must not grow memory forever
                        self.watchers.discard(w)
                        break
                    w.queue.put_nowait(ev)

    def subscribe(self, match: Callable[[bytes], bool], start_revision: int,
                  current_revision: int) -> Watcher:
        """Events with mod_revision >= start_revision (0: only future ones)."""
        w = Watcher(match, self.max_queue)
        if start_revision:
            if start_revision <= self.compacted:
                raise Compacted(self.compacted + 1)
            for ev in self.history:
                if ev.mod_revision >= start_revision and match(ev.key):
                    w.queue.put_nowait(ev)
        self.watchers.add(w)
        return w

    def unsubscribe(self, w: Watcher) -> None:
        self.watchers.discard(w)

    def close_all(self, reason: str) -> None:
        """End every stream (each gets an error line; clients re-watch elsewhere)."""
        for w in list(self.watchers):
            w.close(reason)
        self.watchers.clear()

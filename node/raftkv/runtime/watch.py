"""Watch streams: a bounded in-memory history of changes and the open watchers.

Every member fills the history as it applies entries, so any member can serve
a watch. A watcher starting at revision r gets every event with mod_revision
>= r, then live events; a start revision older than the history answers 410
(compacted), like etcd.

Caps (--max-watches, --max-watches-per-client): a watch stream holds a queue
of up to `max_queue` events, so open streams are bounded per node and per
client address; one more is refused (429) rather than let one client hold every
stream a node can afford. An HTTP/1.1 connection carries one watch stream at a
time (the stream is the connection's answer until it ends), so the cap per
connection is one by construction; a client opening many connections is what
the per-client cap bounds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from raftkv.fsm import WatchEvent
from raftkv.runtime.limits import LimitExceeded

_KEY = WatchEvent._fields.index("key")
_MOD_REVISION = WatchEvent._fields.index("mod_revision")


class Compacted(Exception):
    def __init__(self, oldest: int) -> None:
        super().__init__(f"revisions before {oldest} are no longer in the watch history")
        self.oldest = oldest


class Watcher:
    __slots__ = ("match", "queue", "closed_reason", "max_queue", "client")

    def __init__(self, match: Callable[[bytes], bool], max_queue: int, client: str = "") -> None:
        self.match = match
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self.closed_reason = ""
        self.max_queue = max_queue
        self.client = client

    def close(self, reason: str) -> None:
        if not self.closed_reason:
            self.closed_reason = reason
            self.queue.put_nowait(None)


class WatchHub:
    def __init__(
        self,
        capacity: int = 10000,
        max_queue: int = 10000,
        *,
        max_watchers: int = 0,
        max_per_client: int = 0,
    ) -> None:
        # Plain tuples, not WatchEvents: the collector stops tracking a tuple of
        # strings, bytes and ints (not a subclass of tuple), so a full history is not
        # rescanned by every collection (10000 objects: most of a gen-2 pause).
        self.history: deque[tuple[Any, ...]] = deque(maxlen=capacity)
        # Every revision > compacted is in `history` (or has not happened yet).
        self.compacted = 0
        self.watchers: set[Watcher] = set()
        self.max_queue = max_queue
        self.max_watchers = max_watchers  # 0: no cap
        self.max_per_client = max_per_client  # 0: no cap
        self._per_client: dict[str, int] = {}

    def reset(self, revision: int) -> None:
        """The state was replaced (snapshot install): history before it is gone."""
        self.history.clear()
        self.compacted = revision
        for w in list(self.watchers):
            w.close("compacted")
            self._discard(w)

    def publish(self, events: Sequence[WatchEvent]) -> None:
        history = self.history
        for ev in events:
            if len(history) == history.maxlen:
                self.compacted = history[0][_MOD_REVISION]
            history.append(tuple(ev))
        if not self.watchers:
            return
        for w in list(self.watchers):
            for ev in events:
                if w.match(ev.key):
                    if w.queue.qsize() >= w.max_queue:
                        w.close("too slow")  # a stuck reader must not grow memory forever
                        self._discard(w)
                        break
                    w.queue.put_nowait(ev)

    def subscribe(
        self,
        match: Callable[[bytes], bool],
        start_revision: int,
        current_revision: int,
        client: str = "",
    ) -> Watcher:
        """Events with mod_revision >= start_revision (0: only future ones).
        Raises LimitExceeded (429) past --max-watches or, for `client` (its
        address), past --max-watches-per-client."""
        if self.max_watchers and len(self.watchers) >= self.max_watchers:
            raise LimitExceeded(
                429,
                "too_many_watches",
                "watches",
                (
                    f"this node serves {len(self.watchers)} watch streams, --max-watches is "
                    f"{self.max_watchers}: close some, or watch through another member"
                ),
            )
        mine = self._per_client.get(client, 0)
        if self.max_per_client and mine >= self.max_per_client:
            raise LimitExceeded(
                429,
                "too_many_watches_per_client",
                "watches_per_client",
                (
                    f"{client or 'this client'} has {mine} watch streams open on this node, "
                    f"--max-watches-per-client is {self.max_per_client}: watch a prefix "
                    "with one stream instead of many keys with many"
                ),
            )
        w = Watcher(match, self.max_queue, client)
        if start_revision:
            if start_revision <= self.compacted:
                raise Compacted(self.compacted + 1)
            for item in self.history:
                if item[_MOD_REVISION] >= start_revision and match(item[_KEY]):
                    w.queue.put_nowait(WatchEvent._make(item))
        self.watchers.add(w)
        self._per_client[client] = mine + 1
        return w

    def unsubscribe(self, w: Watcher) -> None:
        self._discard(w)

    def _discard(self, w: Watcher) -> None:
        """Forget `w` (once: a closed watcher is also unsubscribed by its stream)."""
        if w not in self.watchers:
            return
        self.watchers.discard(w)
        left = self._per_client.get(w.client, 1) - 1
        if left > 0:
            self._per_client[w.client] = left
        else:
            self._per_client.pop(w.client, None)

    def client_count(self, client: str) -> int:
        return self._per_client.get(client, 0)

    def close_all(self, reason: str) -> None:
        """End every stream (each gets an error line; clients re-watch elsewhere)."""
        for w in list(self.watchers):
            w.close(reason)
            self._discard(w)

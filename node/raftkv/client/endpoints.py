"""Which node a request goes to (pure: no IO, no clock).

Writes always go to the leader: the client learns it from `/v1/status`
(`leader.client_url`) and from `307` redirects, and falls back to any
configured endpoint (which forwards to the leader) when the leader's
advertised URL cannot be reached from here (e.g. in-cluster DNS names).

Reads go where the strategy says (the seed's load-balancing algorithms):
- `leader`: the leader, like writes;
- `random`: a uniformly random endpoint per request;
- `round-robin`: the endpoints in turn.
Any member serves a serializable read locally, and a linearizable one after a
ReadIndex round with the leader, so spreading reads is always correct.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from urllib.parse import urlsplit

STRATEGIES = ("leader", "random", "round-robin")
DEFAULT_ENDPOINT = "http://127.0.0.1:7379"


def normalize_endpoint(raw: str) -> str:
    """`host:port`, `http://host:port/` -> `http://host:port`; ValueError if unusable."""
    text = raw.strip()
    if not text:
        raise ValueError("empty endpoint")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"bad endpoint {raw!r}: expected http://host:port")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"bad endpoint {raw!r}: bad port") from None
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"bad endpoint {raw!r}: give only scheme://host:port")
    return f"{parts.scheme}://{parts.netloc}"


def parse_endpoints(value: str | Sequence[str]) -> list[str]:
    """A comma-separated string or a list -> distinct normalized URLs, in order."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if not item.strip():
            continue
        url = normalize_endpoint(item)
        if url not in out:
            out.append(url)
    if not out:
        raise ValueError("no endpoints given")
    return out


class EndpointSelector:
    """Remembers the leader and picks endpoints for reads and writes."""

    def __init__(
        self, endpoints: Sequence[str], strategy: str = "leader", rng: random.Random | None = None
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
        self.endpoints = parse_endpoints(endpoints)
        self.strategy = strategy
        self._rng = rng or random.Random()
        self._next = 0
        self.leader_url: str | None = None
        self.leader_id: int | None = None
        self._unreachable_leader_urls: set[str] = set()

    # --- what we know about the leader -------------------------------------------------
    def set_leader(self, leader_id: int | None, client_url: str | None) -> None:
        if leader_id != self.leader_id:
            self._unreachable_leader_urls.clear()  # a new leader: worth one more try
        self.leader_id = leader_id
        url = None
        if client_url:
            try:
                url = normalize_endpoint(client_url)
            except ValueError:
                url = None
        self.leader_url = url

    def forget_leader(self) -> None:
        self.leader_id = None
        self.leader_url = None

    def leader_unreachable(self, url: str) -> None:
        """The leader's advertised URL does not answer from here: use the endpoints."""
        self._unreachable_leader_urls.add(url)
        if self.leader_url == url:
            self.leader_url = None

    def usable_leader(self) -> str | None:
        url = self.leader_url
        if url is None or (url in self._unreachable_leader_urls and url not in self.endpoints):
            return None
        return url

    # --- choosing ------------------------------------------------------------------------
    def for_write(self) -> str:
        """The leader if known and reachable, else the configured endpoints in turn
        (any member forwards a write to the leader)."""
        leader = self.usable_leader()
        return leader if leader is not None else self.any()

    def for_read(self) -> str:
        if self.strategy == "leader":
            return self.for_write()
        if self.strategy == "random":
            return self._rng.choice(self.endpoints)
        return self.any()

    def any(self) -> str:
        """An endpoint in turn (status, membership listings...)."""
        n = self._next
        self._next = (n + 1) % len(self.endpoints)
        return self.endpoints[n]

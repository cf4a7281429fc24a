"""What a request waiting on the node loop learns: its result slot (`Pending`) and
the failures the loop resolves it with. The HTTP layer maps these to answers
(runtime/http/errors.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from raftkv.consensus import SnapshotMeta

log = logging.getLogger("raftkv.node")


class ProposalLost(Exception):
    """The entry was overwritten by another leader's: it did not apply. Retry."""


class OutcomeUnknown(Exception):
    """The proposal's fate cannot be learnt here any more (a snapshot installed over
    its index): it may or may not have applied. A retry with the same session
    headers applies it at most once (the session table answers a duplicate)."""


class NodeStopped(Exception):
    """The node is shutting down."""


class WaitInterrupted(NodeStopped):
    """The node shuts down while a request waits (for a lock grant): what the
    request proposed may have applied (the lease stays queued). Retry elsewhere."""


class NodeFailed(NodeStopped):
    """The node loop died (a WAL write or fsync failed: a full disk, a failing
    device) and the process exits. A pending write was NOT acknowledged, but its
    outcome is unknown: its entry may have reached the followers (a leader sends
    before its own fsync) and commit there. Retry elsewhere, same session."""


class RequestTimeout(TimeoutError):
    """A proposal or read did not complete within --request-timeout (its outcome,
    for a proposal, is unknown)."""


class Completion:
    """A result slot like an asyncio Future, but its callback runs at once, inside
    the node loop, when it resolves (a Future's callbacks run a loop turn later,
    after whatever else this Ready does, such as sending to the followers). The
    fast HTTP path answers with it in the same turn as the apply. The callback
    must not call back into the node; its errors are logged, never raised here."""

    __slots__ = ("_callback", "_done")

    def __init__(self, callback: Callable[[Any, BaseException | None], None]) -> None:
        self._callback = callback
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any) -> None:
        self._resolve(result, None)

    def set_exception(self, exc: BaseException) -> None:
        self._resolve(None, exc)

    def _resolve(self, result: Any, exc: BaseException | None) -> None:
        if self._done:
            raise asyncio.InvalidStateError("already resolved")
        self._done = True
        # Let go of the callback: a resolved slot may still sit in the deadline queue
        # (until the sweep reaches it), and the callback's closure holds the request,
        # its connection and its answer slot; kept alive that long, they outlive the
        # collector's young generations and make its older ones bigger.
        callback, self._callback = self._callback, _resolved
        try:
            callback(result, exc)
        except Exception:
            log.exception("a completion callback failed")


def _resolved(result: Any, exc: BaseException | None) -> None:
    """A resolved Completion's callback: it never runs (resolving twice raises)."""


Pending = asyncio.Future[Any] | Completion  # what the loop resolves


def snapshot_outcome(
    index: int, term: int, meta: SnapshotMeta, *, certain: bool = True
) -> Exception:
    """What a proposal at (index, term) learns when a snapshot at `meta` replaces it.

    Only two cases are certain. The snapshot's own entry is at (meta.index,
    meta.term); a different term there means ours was overwritten. And a log's terms
    never decrease, so no committed entry at or below meta.index has a term above
    meta.term: ours, of a later term, never committed. Either way it did not apply.
    Otherwise the snapshot may well contain it: outcome unknown. `certain=False`
    (Multi-Paxos, where slot ballots say nothing of a prefix): always unknown."""
    if certain and (term > meta.term or (index == meta.index and term != meta.term)):
        return ProposalLost(
            f"entry {index} was replaced by another leader's "
            f"(snapshot at {meta.index}, term {meta.term}); retry"
        )
    return OutcomeUnknown(
        f"a snapshot (index {meta.index}) was installed over entry {index}: "
        "the write may or may not have applied; retry with the same "
        "session headers to apply it at most once"
    )

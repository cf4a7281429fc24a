"""The pure Multi-Paxos core: no IO, no clock, no event loop.

Same contract as `raftkv.raft`: drive it with `tick()`, `step(msg)`,
`propose(data)`, `read_index(ctx)`; collect work with `ready()`; persist, send,
apply, then `advance(ready)`. Every message waits for the persist
(`Paxos.SENDS_BEFORE_PERSIST`).
"""

from raftkv.paxos.core import Config, Paxos, bootstrap_entries
from raftkv.paxos.types import (
    Message,
    MsgType,
    Ready,
    ballot,
    ballot_node,
    ballot_round,
    fmt_ballot,
)
from raftkv.raft.types import conf_after

__all__ = [
    "Config",
    "Message",
    "MsgType",
    "Paxos",
    "Ready",
    "ballot",
    "ballot_node",
    "ballot_round",
    "bootstrap_entries",
    "conf_after",
    "fmt_ballot",
]

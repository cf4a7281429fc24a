"""raftkv: a strongly consistent, Raft-replicated key-value and lock service."""

__version__ = "0.1.0"

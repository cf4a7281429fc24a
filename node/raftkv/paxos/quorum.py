"""Majorities: every decision (a promise quorum, a chosen slot, a read round, the
leader's liveness check) is a majority of some configuration's voters."""

from __future__ import annotations

from raftkv.raft.types import ConfState


def majority(acks: set[int], conf: ConfState) -> bool:
    return len(acks & conf.voters) > len(conf.voters) // 2

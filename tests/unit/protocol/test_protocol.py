"""What node, client and operator agree on has one definition (raftkv.protocol),
and every part that checks it gives the same answer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from raftkv.fsm import Checkpoint, InvalidCommand
from raftkv.protocol import is_checkpoint_id, member_id
from raftkv.runtime import identity
from raftkv.storage import CheckpointStore
from raftkv_operator import members as operator_members
from raftkv_operator.models import CHECKPOINT_ID_PATTERN

IDS = [
    "a",
    "A_b.c-9",
    "x" * 63,
    "x" * 64,
    "x" * 128,
    "x" * 129,
    "",
    ".",
    "..",
    ".hidden",
    "-lead",
    "_lead",
    "a/b",
    "a b",
    "new\nline",
    "trailing\n",
    "café",
]


@pytest.mark.parametrize("checkpoint_id", IDS)
def test_the_log_the_disk_and_the_operator_accept_the_same_checkpoint_ids(
    tmp_path: Path, checkpoint_id: str
) -> None:
    valid = is_checkpoint_id(checkpoint_id)
    try:
        Checkpoint(checkpoint_id)
        in_log = True
    except InvalidCommand:
        in_log = False
    store = CheckpointStore(tmp_path)
    try:
        store.get(checkpoint_id)
        on_disk = True
    except ValueError:
        on_disk = False
    # The operator's CRD field is the same rule within a Kubernetes name's 63 characters.
    in_crd = re.fullmatch(CHECKPOINT_ID_PATTERN, checkpoint_id) is not None
    assert (in_log, on_disk, in_crd) == (valid, valid, valid and len(checkpoint_id) <= 63)


def test_node_and_operator_compute_founder_ids_with_the_one_function() -> None:
    assert identity.member_id is member_id
    assert operator_members.member_id is member_id
    # The first 6 bytes of sha256("node1"): pinned, since ids on disk depend on it.
    assert member_id("node1") == 222182736891071

"""The checkpoint id rule: one safe directory name, the same for the command in
the log, the checkpoint store on disk and the operator's RaftCheckpoint."""

from __future__ import annotations

import re

CHECKPOINT_ID_MAX = 128  # characters


def checkpoint_id_pattern(max_length: int = CHECKPOINT_ID_MAX) -> str:
    """1..max_length of [A-Za-z0-9._-], starting with a letter or digit: no
    separators, never ".", ".." or a hidden (temporary) name. A caller with a
    tighter limit (a Kubernetes name) passes its own `max_length`."""
    return rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{max_length - 1}}}$"


_CHECKPOINT_ID = re.compile(checkpoint_id_pattern())


class InvalidCheckpointId(ValueError):
    pass


def is_checkpoint_id(value: object) -> bool:
    return type(value) is str and _CHECKPOINT_ID.fullmatch(value) is not None


def validate_checkpoint_id(value: object) -> str:
    """`value` if it is a valid checkpoint id, else InvalidCheckpointId."""
    if not is_checkpoint_id(value):
        raise InvalidCheckpointId(
            f"invalid checkpoint id {value!r}: use 1-{CHECKPOINT_ID_MAX} characters from "
            "[A-Za-z0-9._-], starting with a letter or digit"
        )
    assert isinstance(value, str)
    return value

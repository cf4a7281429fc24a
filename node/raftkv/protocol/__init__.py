"""What the node, the client and the operator must agree on, in one place: how a
founding member's id follows from its name, the names of the HTTP headers they
exchange, which checkpoint ids are valid, and the `/v1/status` document. A leaf:
it imports no other part of raftkv (an import-linter contract), so every part may
import it.

- `ids`: `member_id(name)`, a founder's Raft id;
- `headers`: the `X-Raftkv-*` header names;
- `checkpoints`: the checkpoint id rule;
- `status`: the `/v1/status` document, one typed model for client and operator;
- `kubernetes`: the role label and its term annotation on member pods.
"""

from raftkv.protocol.checkpoints import (
    CHECKPOINT_ID_MAX,
    InvalidCheckpointId,
    checkpoint_id_pattern,
    is_checkpoint_id,
    validate_checkpoint_id,
)
from raftkv.protocol.headers import (
    CHECKPOINT_INDEX,
    CHECKPOINT_SHA256,
    CLIENT_ID,
    LEADER_HINT,
    REVISION,
    SEQ,
)
from raftkv.protocol.ids import MAX_ID, member_id

__all__ = [
    "CHECKPOINT_ID_MAX",
    "CHECKPOINT_INDEX",
    "CHECKPOINT_SHA256",
    "CLIENT_ID",
    "LEADER_HINT",
    "MAX_ID",
    "REVISION",
    "SEQ",
    "InvalidCheckpointId",
    "checkpoint_id_pattern",
    "is_checkpoint_id",
    "member_id",
    "validate_checkpoint_id",
]

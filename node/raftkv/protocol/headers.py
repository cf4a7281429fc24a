"""The HTTP headers of the client API beyond standard HTTP (docs/api.md)."""

from __future__ import annotations

# A write's session: the same (client id, seq) applies at most once.
CLIENT_ID = "X-Raftkv-Client-Id"
SEQ = "X-Raftkv-Seq"
# On a 503 from a follower's forward path: the client URL of the leader it knows now.
LEADER_HINT = "X-Raftkv-Leader"
# On a request one member forwards to the leader on a client's behalf.
FORWARDED = "X-Raftkv-Forwarded"
# The store's revision an answer was read at (or a watch starts after).
REVISION = "X-Raftkv-Revision"
# A single key's record, beside its value as the body.
CREATE_REVISION = "X-Raftkv-Create-Revision"
MOD_REVISION = "X-Raftkv-Mod-Revision"
VERSION = "X-Raftkv-Version"
LEASE = "X-Raftkv-Lease"
# On a checkpoint's data: what its manifest says of it.
CHECKPOINT_SHA256 = "X-Raftkv-Checkpoint-Sha256"
CHECKPOINT_INDEX = "X-Raftkv-Checkpoint-Index"

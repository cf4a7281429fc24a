"""Names on member pods that the node and the operator both write: the role label the
client Service selects on, and the Raft term a member wrote it at."""

ROLE_LABEL = "raftkv.dev/role"
"""`leader`, `follower` or `learner`: kept by each member on its own pod, corrected by the
operator as a second line; the `<name>` Service selects `leader`."""
ROLE_TERM_ANNOTATION = "raftkv.dev/role-term"
"""The Raft term a member wrote its label at: the operator, whose view may lag, leaves a
label written at a newer term than it knows alone."""

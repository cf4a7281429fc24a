"""The `/v1/status` document has one typed model (raftkv.protocol.status), which the
client and the operator both read: it covers everything a node sends, tolerates a
newer node's extra fields and an older node's missing ones, and refuses the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from raftkv.client import ServerError, Status
from raftkv.protocol.status import NodeStatus, StatusFormatError, StatusLeader, StatusMember
from raftkv_operator.nodestatus import NodeStatus as OperatorNodeStatus
from tests.unit.runtime.solo import solo_node

READERS = [Status, OperatorNodeStatus]

DOCUMENT: dict[str, Any] = {
    "name": "n-0",
    "id": 7,
    "cluster_id": "c1",
    "role": "leader",
    "term": 3,
    "leader": {"id": 7, "name": "n-0", "client_url": "http://n-0:7379"},
    "commit_index": 10,
    "applied_index": 9,
    "last_index": 11,
    "last_term": 3,
    "ready": True,
    "revision": 5,
    "members": [
        {
            "id": 7,
            "name": "n-0",
            "peer_url": "n-0:7380",
            "client_url": "http://n-0:7379",
            "role": "voter",
            "match_index": 11,
        },
        {"id": 8, "name": "n-1", "peer_url": "n-1:7380", "client_url": "", "role": "learner"},
    ],
}


def test_the_client_and_the_operator_read_the_one_model() -> None:
    for reader in READERS:
        assert issubclass(reader, NodeStatus)
        assert reader.model_fields["members"].annotation == tuple[StatusMember, ...]
    # What each adds is only its own: the client which endpoint answered, the
    # operator the planner's questions; neither redefines a field of the document.
    assert set(Status.model_fields) - set(NodeStatus.model_fields) == {"endpoint"}
    assert set(OperatorNodeStatus.model_fields) == set(NodeStatus.model_fields)


async def test_a_real_nodes_status_fits_the_model_field_for_field(tmp_path: Path) -> None:
    async with solo_node(tmp_path) as server, aiohttp.ClientSession() as session:
        url = server.node.cfg.advertise_client_url
        async with session.get(url + "/v1/status") as resp:
            assert resp.status == 200
            document = await resp.json()
    # Nothing the node sends is dropped: every field has a home in the model.
    assert set(document) <= set(NodeStatus.model_fields), set(document) - set(
        NodeStatus.model_fields
    )
    assert set(document["leader"]) <= set(StatusLeader.model_fields)
    for member in document["members"]:
        assert set(member) <= set(StatusMember.model_fields)
    for reader in READERS:
        status = reader.parse(document)
        dumped = status.model_dump(exclude={"endpoint"})
        assert {**dumped, "members": list(dumped["members"])} == {
            **{k: None for k in ("cluster_id", "last_term")},
            **document,
        }
        assert status.is_leader and status.members[0].voter


@pytest.mark.parametrize("reader", READERS)
def test_a_newer_nodes_extra_fields_are_ignored_at_every_level(reader: type[NodeStatus]) -> None:
    newer = json.loads(json.dumps(DOCUMENT))
    newer["shard_map"] = {"a": 1}
    newer["leader"]["lease_until"] = 12
    newer["members"][0]["zone"] = "eu-1"
    assert reader.parse(newer) == reader.parse(DOCUMENT)


@pytest.mark.parametrize("reader", READERS)
def test_an_older_nodes_missing_fields_take_their_defaults(reader: type[NodeStatus]) -> None:
    older = {k: v for k, v in DOCUMENT.items() if k not in ("cluster_id", "last_term", "revision")}
    status = reader.parse(older)
    assert (status.cluster_id, status.last_term, status.revision) == (None, None, 0)
    assert status.term == 3 and status.members[1].role == "learner"
    assert not status.members[1].voter and status.members[1].match_index is None


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ([], "expected an object"),
        ({**DOCUMENT, "id": "seven"}, "id:"),
        ({k: v for k, v in DOCUMENT.items() if k != "name"}, "name:"),
        ({**DOCUMENT, "leader": {"name": "n-0"}}, "leader.id:"),
        ({**DOCUMENT, "members": [{"id": 1}, {"id": None}]}, "members.1.id:"),
        ({**DOCUMENT, "members": "all"}, "members:"),
        ({**DOCUMENT, "term": [3]}, "term:"),
        ({**DOCUMENT, "tls": {"client": {"cert_sha256": "ABC"}}}, "tls.client.cert_sha256:"),
    ],
)
def test_a_malformed_status_is_a_clear_error_naming_the_field(document: Any, where: str) -> None:
    for reader in READERS:
        with pytest.raises(StatusFormatError, match=where):
            reader.parse(document)
    # The client turns it into one of its own errors, with the endpoint that said it.
    with pytest.raises(ServerError, match=where) as caught:
        Status.from_json(document, "http://x:1")
    assert caught.value.code == "malformed_answer" and caught.value.endpoint == "http://x:1"


def test_code_that_builds_a_status_may_not_misspell_a_field() -> None:
    # Tolerance is for the wire only: in code an unknown name is a bug, not a newer node.
    with pytest.raises(ValidationError):
        NodeStatus(name="n", id=1, leader_id=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        StatusMember(id=1, voter=False)  # type: ignore[call-arg]
    assert NodeStatus(name="n", id=1).members == ()


def test_the_operator_adds_only_the_planners_questions() -> None:
    status = OperatorNodeStatus.parse(DOCUMENT)
    assert (status.leader_id, status.leader_name) == (7, "n-0")
    assert status.is_member and status.member("n-1") == status.members[1]
    blank = OperatorNodeStatus.parse({"name": "n-9", "id": 99, "role": "none"})
    assert not blank.is_member and blank.leader_id is None and blank.member("n-0") is None


def test_the_client_records_which_endpoint_answered() -> None:
    status = Status.from_json(DOCUMENT, "http://n-0:7379")
    assert status.endpoint == "http://n-0:7379"
    # A node cannot claim to be another endpoint: the reader's value wins.
    assert Status.from_json(
        {**DOCUMENT, "endpoint": "http://evil"}, "http://n-0:7379"
    ).endpoint == ("http://n-0:7379")


def test_an_engine_mismatch_is_read_as_the_node_says_it() -> None:
    mismatch = {
        "member": 7,
        "name": "n-0",
        "engine": "multipaxos",
        "message": "member 7 ('n-0') runs multipaxos; this node runs raft",
        "seconds_ago": 0.4,
    }
    status = NodeStatus.parse({**DOCUMENT, "consensus": "raft", "engine_mismatch": mismatch})
    assert status.consensus == "raft" and status.engine_mismatch is not None
    assert status.engine_mismatch.model_dump() == mismatch
    assert NodeStatus.parse(DOCUMENT).engine_mismatch is None  # an older node says nothing

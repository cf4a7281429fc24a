"""Fuzz every route of docs/openapi.yaml with malformed and random input
(hypothesis): the node must answer every request with a documented status and
the error shape, keep serving, and lose nothing it acknowledged."""

from __future__ import annotations

import http.client
import json
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
import pytest_asyncio
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.harness import Cluster

pytestmark = pytest.mark.slow

SPEC = yaml.safe_load((Path(__file__).parents[2] / "docs" / "openapi.yaml").read_text())
OPERATIONS = [
    (method.upper(), path, op)
    for path, item in SPEC["paths"].items()
    for method, op in item.items()
    if method in ("get", "put", "post", "delete")
]
# Keys the fuzzer writes start with "fz"; the sentinel sorts before anything a
# prefix or range starting at "fz" can reach.
SENTINEL = {f"a-sentinel-{i}": f"keep-{i}".encode() for i in range(5)}
LIMIT_ARGS = [
    "--max-key-bytes",
    "64",
    "--max-value-bytes",
    "512",
    "--max-request-bytes",
    "2048",
    "--max-txn-ops",
    "8",
]

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
header_texts = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=20,
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2**64), texts, st.floats(allow_nan=True)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
FIELDS = [
    "key",
    "key_b64",
    "value",
    "value_b64",
    "op",
    "target",
    "prefix",
    "range_end",
    "lease",
    "ttl",
    "id",
    "name",
    "peer_url",
    "client_url",
    "to",
    "compare",
    "success",
    "failure",
    "limit",
    "prev_kv",
    "all",
]


@st.composite
def txn_like(draw: st.DrawFn) -> Any:
    def op() -> Any:
        return draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "op": st.sampled_from(["put", "delete", "range", "bogus"]),
                    "key": st.one_of(texts.map(lambda t: "fz" + t), json_values),
                    "value": st.one_of(texts, json_values),
                    "value_b64": st.one_of(texts, st.just("AAEC")),
                    "target": st.sampled_from(["value", "version", "exists", "lease", "x"]),
                    "prefix": st.one_of(st.booleans(), json_values),
                    "all": st.booleans(),
                    "lease": json_values,
                    "limit": json_values,
                },
            )
        )

    return {
        "compare": [op() for _ in range(draw(st.integers(0, 3)))],
        "success": [op() for _ in range(draw(st.integers(0, 3)))],
        "failure": [op() for _ in range(draw(st.integers(0, 10)))],
    }


bodies = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=2000, max_size=3000),  # over --max-request-bytes
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6).map(
        lambda v: json.dumps(v).encode()
    ),
    txn_like().map(lambda v: json.dumps(v).encode()),
)


def _param_value(schema: dict[str, Any], draw: st.DrawFn) -> str:
    kind = schema.get("type") or ("flag" if "$ref" in schema else "string")
    valid = {
        "integer": st.integers(0, 5).map(str),
        "number": st.sampled_from(["0", "0.2"]),
        "flag": st.sampled_from(["1", "0", "true", "no"]),
    }.get(kind, texts)
    return draw(st.one_of(valid, texts, st.sampled_from(["-1", "1e309", "nan", "", "%"])))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, str]]:
    method, template, op = draw(st.sampled_from(OPERATIONS))
    segment = st.one_of(
        texts.map(lambda t: "fz" + t),
        st.integers(-3, 2**64).map(str),
        st.sampled_from(["", "..", "%2F", "x" * 80]),
    )
    path = re.sub(r"\{[a-z_]+\}", lambda _: quote(draw(segment), safe=""), template)
    params: dict[str, str] = {}
    for p in op.get("parameters", []):
        if "$ref" in p:
            p = SPEC["components"]["parameters"][p["$ref"].split("/")[-1]]
        if p["in"] == "query" and draw(st.booleans()):
            params[p["name"]] = _param_value(p.get("schema", {}), draw)
    for junk in draw(st.lists(texts, max_size=2)):
        params[junk or "x"] = draw(texts)
    # Nothing may block the fuzzer: bounded waits only, and no watch streams.
    params["timeout"] = "0.2"
    if "wait" in params:
        params["wait"] = "0"
    if template == "/v1/kv/{key}" and method != "PUT" and params.get("prefix"):
        path = "/v1/kv/fz" + path[len("/v1/kv/") :]
    headers = {}
    # Mostly the admin's token (so every route is exercised); sometimes none or a
    # wrong one, which must get a 401 whatever else the request holds.
    headers["Authorization"] = draw(st.sampled_from(["ADMIN"] * 8 + ["", "Bearer nope"]))
    if draw(st.booleans()):
        headers["X-Raftkv-Client-Id"] = draw(header_texts) or "c"
        headers["X-Raftkv-Seq"] = draw(st.one_of(st.integers(-1, 2**65).map(str), header_texts))
    body = draw(bodies) if method in ("PUT", "POST", "DELETE") else b""
    return method, path + ("?" + urlencode(params) if params else ""), body, headers


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    # TLS and authentication on: the fuzzer speaks https with a token (issue 11).
    cluster = Cluster(tmp_path_factory.mktemp("fuzz"), None, secure=True)  # type: ignore[arg-type]
    session = cluster.session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=cluster.ssl_context() or True),
        headers=cluster.auth_headers(),
    )
    try:
        cluster.create(1, extra_args=LIMIT_ARGS)
        cluster.start_all()
        leader = await cluster.wait_leader()
        for key, value in SENTINEL.items():
            assert (await cluster.put(leader, key, value))[0] == 200
        yield cluster
    finally:
        cluster.close()
        await session.close()


DOCUMENTED = {200, 307, 400, 401, 403, 404, 405, 409, 410, 413, 503}


def _send(
    cluster: Cluster, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes, dict[str, str]]:
    target = cluster.initial[0]
    token = headers.get("Authorization", "ADMIN")
    headers = {k: v for k, v in headers.items() if k != "Authorization"}
    if token == "ADMIN":
        headers.update(cluster.auth_headers())
    elif token:
        headers["Authorization"] = token
    context = cluster.ssl_context()
    assert isinstance(context, ssl.SSLContext)
    conn = http.client.HTTPSConnection(target.host, target.client_port, timeout=10, context=context)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        if resp.getheader("Content-Type", "").startswith("application/x-ndjson"):
            return resp.status, b"", dict(resp.getheaders())  # a live watch: don't read it
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def test_fuzzed_requests_get_documented_answers_and_lose_nothing(node: Cluster) -> None:

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests())
    def one(request: tuple[str, str, bytes, dict[str, str]]) -> None:
        method, path, body, headers = request
        try:
            status, raw, reply_headers = _send(node, method, path, body, headers)
        except (TimeoutError, ConnectionError) as exc:
            raise AssertionError(f"{method} {path}: no answer ({exc!r})") from None
        assert status in DOCUMENTED, (method, path, status, raw[:300])
        if headers.get("Authorization", "ADMIN") != "ADMIN" and not path.startswith(
            ("/healthz", "/readyz", "/metrics")
        ):  # the open routes
            assert status == 401, (method, path, status, raw[:300])  # no valid token
            assert reply_headers["WWW-Authenticate"].startswith("Bearer")
        if status >= 400:
            error = json.loads(raw)
            assert isinstance(error.get("error"), str) and isinstance(error.get("message"), str)
            if status == 503:
                assert "Retry-After" in reply_headers

    one()
    # Still serving, and nothing acknowledged was lost.
    for key, value in SENTINEL.items():
        status, raw, _ = _send(node, "GET", f"/v1/kv/{key}", b"", {})
        assert (status, raw) == (200, value)
    status, raw, _ = _send(node, "GET", "/v1/status", b"", {})
    assert status == 200 and json.loads(raw)["role"] == "leader"

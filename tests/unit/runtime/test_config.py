"""`raftkv serve` flags, their RAFTKV_* environment twins, and validation."""

from __future__ import annotations

import argparse

import pytest

from raftkv.runtime.config import (
    NodeConfig,
    add_serve_arguments,
    config_from_args,
    parse_initial_cluster,
    parse_resolve,
    split_host_port,
)
from raftkv.runtime.identity import member_id


def _parse(
    argv: list[str],
    env: dict[str, str] | None = None,
    *,
    insecure: bool = True,
    peer_insecure: bool = True,
) -> NodeConfig:
    """`insecure`: add --client-insecure; `peer_insecure`: RAFTKV_PEER_INSECURE=1 (these
    tests are not about the client or the peer plane unless they say so)."""
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    env = dict(env or {})
    if peer_insecure:
        env.setdefault("RAFTKV_PEER_INSECURE", "1")
    return config_from_args(parser, [*argv, *(["--client-insecure"] if insecure else [])], env)


def test_no_peer_tls_must_be_asked_for() -> None:
    with pytest.raises(ValueError, match="--peer-insecure"):
        _parse(["--name", "a"], peer_insecure=False)
    assert _parse(["--name", "a", "--peer-insecure"], peer_insecure=False).peer_insecure
    tls = [
        "--peer-cert-file",
        "c.pem",
        "--peer-key-file",
        "k.pem",
        "--peer-trusted-ca-file",
        "ca.pem",
    ]
    cfg = _parse(["--name", "a", *tls], peer_insecure=False)
    assert cfg.peer_tls and str(cfg.peer_trusted_ca_file) == "ca.pem"
    env = {
        "RAFTKV_PEER_CERT_FILE": "c.pem",
        "RAFTKV_PEER_KEY_FILE": "k.pem",
        "RAFTKV_PEER_TRUSTED_CA_FILE": "ca.pem",
    }
    assert _parse(["--name", "a"], env, peer_insecure=False).peer_tls
    with pytest.raises(ValueError, match="all of"):
        _parse(["--name", "a", *tls[:2]], peer_insecure=False)
    with pytest.raises(ValueError, match="contradicts"):
        _parse(["--name", "a", *tls, "--peer-insecure"], peer_insecure=False)


def test_a_peer_tls_migration_stage_needs_the_tls_files() -> None:
    tls = ["--peer-cert-file", "c", "--peer-key-file", "k", "--peer-trusted-ca-file", "ca"]
    with pytest.raises(ValueError, match="needs the peer TLS files"):
        _parse(["--name", "a", "--peer-tls-migration", "accept-both"])
    one = _parse(["--name", "a", *tls, "--peer-tls-migration", "accept-both"], peer_insecure=False)
    assert one.peer_accepts_plain and not one.peer_dials_tls
    two = _parse(
        ["--name", "a", *tls],
        {"RAFTKV_PEER_TLS_MIGRATION": "dial-tls"},
        peer_insecure=False,
    )
    assert two.peer_accepts_plain and two.peer_dials_tls
    done = _parse(["--name", "a", *tls], peer_insecure=False)
    assert not done.peer_accepts_plain and done.peer_dials_tls
    with pytest.raises(SystemExit):  # argparse: not a stage
        _parse(["--name", "a", *tls, "--peer-tls-migration", "plain"], peer_insecure=False)


def test_member_id_is_stable_and_json_safe() -> None:
    assert member_id("demo-0") == member_id("demo-0")
    assert member_id("demo-0") != member_id("demo-1")
    assert 0 < member_id("demo-0") < 2**48


def test_env_fills_in_and_flags_win() -> None:
    cfg = _parse(
        ["--name", "a", "--tick-ms", "20"],
        {
            "RAFTKV_TICK_MS": "70",
            "RAFTKV_PEER_PORT": "9000",
            "RAFTKV_UNSAFE_NO_FSYNC": "true",
            "RAFTKV_INITIAL_CLUSTER": "a=h1:1,b=h2:2",
        },
    )
    assert cfg.tick_ms == 20  # the flag beats the environment
    assert cfg.peer_port == 9000
    assert cfg.unsafe_no_fsync is True
    assert [(m.name, m.peer_url) for m in cfg.initial_cluster] == [("a", "h1:1"), ("b", "h2:2")]
    assert cfg.advertise_peer_url == "h1:1"  # its own entry of the initial cluster


def test_name_comes_from_env_too() -> None:
    cfg = _parse([], {"RAFTKV_NAME": "envnode", "RAFTKV_DATA_DIR": "/tmp/x"})
    assert cfg.name == "envnode" and str(cfg.data_dir) == "/tmp/x"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--name", "a", "--election-ticks", "1", "--heartbeat-ticks", "1"],
        ["--name", "a", "--initial-cluster", "a=h:1,a=h:2"],
        ["--name", "a", "--initial-cluster", "nonsense"],
        ["--name", "a", "--resolve", "justhost"],
        ["--name", "a", "--restore-from", "/x", "--initial-cluster-state", "existing"],
        ["--name", "a", "--max-value-bytes", "0"],
        ["--name", "a", "--quota-backend-bytes", "-1"],
        ["--name", "a", "--max-leases", "-1"],
        ["--name", "a", "--max-json-depth", "0"],
        ["--name", "a", "--max-json-depth", "501"],
    ],
)
def test_bad_configuration_is_refused(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        _parse(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "needs TLS"),  # secure by default: no silent plain-HTTP port
        (["--client-cert-file", "c.pem"], "needs TLS"),
        (["--client-cert-file", "c.pem", "--client-key-file", "k.pem"], "--auth-file"),
        (["--client-insecure", "--client-cert-file", "c.pem"], "plain HTTP"),
        (["--client-insecure", "--client-trusted-ca-file", "ca.pem"], "plain HTTP"),
    ],
)
def test_the_client_plane_is_secure_unless_explicitly_not(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _parse(["--name", "a", *argv], insecure=False)


def test_client_plane_flags_and_env() -> None:
    cfg = _parse(
        ["--name", "a", "--client-cert-file", "c.pem", "--client-key-file", "k.pem"],
        {
            "RAFTKV_AUTH_FILE": "/etc/raftkv/auth.json",
            "RAFTKV_CLIENT_TRUSTED_CA_FILE": "ca.pem",
            "RAFTKV_METRICS_ACCESS": "authenticated",
        },
        insecure=False,
    )
    assert str(cfg.auth_file) == "/etc/raftkv/auth.json"
    assert str(cfg.client_trusted_ca_file) == "ca.pem"
    assert cfg.metrics_access == "authenticated" and not cfg.client_insecure
    assert cfg.advertise_client_url.startswith("https://")
    insecure = _parse(["--name", "b"], {"RAFTKV_CLIENT_INSECURE": "1"}, insecure=False)
    assert insecure.client_insecure and insecure.advertise_client_url.startswith("http://")


LIMIT_FLAGS = {  # flag -> (NodeConfig field, default)
    "--quota-backend-bytes": ("quota_backend_bytes", 128 << 20),
    "--max-leases": ("max_leases", 100_000),
    "--max-lock-waiters": ("max_lock_waiters", 1000),
    "--max-watches": ("max_watches", 10_000),
    "--max-watches-per-client": ("max_watches_per_client", 1000),
    "--max-json-depth": ("max_json_depth", 64),
}


@pytest.mark.parametrize("flag", sorted(LIMIT_FLAGS))
def test_each_limit_has_a_default_a_flag_and_an_env_twin(flag: str) -> None:
    field, default = LIMIT_FLAGS[flag]
    assert getattr(_parse(["--name", "a"]), field) == default
    assert getattr(NodeConfig("a", "/x"), field) == default  # type: ignore[arg-type]
    assert getattr(_parse(["--name", "a", flag, "7"]), field) == 7
    env = "RAFTKV_" + flag[2:].upper().replace("-", "_")
    assert getattr(_parse(["--name", "a"], {env: "9"}), field) == 9
    assert getattr(_parse(["--name", "a", flag, "7"], {env: "9"}), field) == 7


def test_parsers() -> None:
    assert parse_resolve("a=1.2.3.4, b=5.6.7.8") == {"a": "1.2.3.4", "b": "5.6.7.8"}
    assert split_host_port("http://x.y:7379/") == ("x.y", 7379)
    assert split_host_port("[::1]:80") == ("::1", 80)
    assert parse_initial_cluster("") == []
    with pytest.raises(ValueError):
        split_host_port("nohost")

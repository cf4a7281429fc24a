"""The pure rules of runtime/http/auth.py: the auth file, roles, prefixes on fsm
commands, token checks and the reload of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.fsm import Compare, Delete, Put, Range, Txn
from raftkv.runtime.credentials import new_token, token_entry, write_auth_file
from raftkv.runtime.errors import ApiError
from raftkv.runtime.http.auth import (
    Authenticator,
    AuthFileError,
    Identity,
    check_command,
    parse_auth_file,
)


def _no_cert() -> None:
    return None


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"users": []}',
        '{"tokens": [{"name": "a", "role": "root", "sha256": "' + "0" * 64 + '"}]}',
        '{"tokens": [{"name": "", "role": "read", "sha256": "' + "0" * 64 + '"}]}',
        '{"tokens": [{"name": "a", "role": "read", "sha256": "short"}]}',
        '{"tokens": [{"name": "a", "role": "read", "sha256": "' + "A" * 64 + '"}]}',
        '{"tokens": [{"name": "a", "role": "read", "sha256": "' + "0" * 64 + '", '
        '"prefixes": "app/"}]}',
        '{"tokens": [{"name": "a", "role": "read", "sha256": "' + "0" * 64 + '"}, '
        '{"name": "b", "role": "read", "sha256": "' + "0" * 64 + '"}]}',
        '{"certificates": [{"name": "a"}]}',
    ],
)
def test_a_bad_auth_file_is_refused(text: str) -> None:
    with pytest.raises(AuthFileError):
        parse_auth_file(text)


def test_roles_nest() -> None:
    allowed = {
        role: [
            a
            for a in ("read", "readwrite", "admin", "metrics", "open")
            if Identity("x", role).may(a)
        ]
        for role in ("read", "readwrite", "admin")
    }
    assert allowed == {
        "read": ["read", "metrics", "open"],
        "readwrite": ["read", "readwrite", "metrics", "open"],
        "admin": ["read", "readwrite", "admin", "metrics", "open"],
    }


SCOPED = Identity("ci", "readwrite", (b"app/",))


@pytest.mark.parametrize(
    ("command", "allowed"),
    [
        (Put(b"app/x", b"v"), True),
        (Put(b"apq", b"v"), False),
        (Put(b"app", b"v"), False),
        (Range.prefix(b"app/"), True),
        (Range.prefix(b"app/sub/"), True),
        (Range.prefix(b"ap"), False),
        (Range.all(), False),
        (Range(b"app/a", b"app/z"), True),
        (Range(b"app/a", b"b"), False),
        (Delete.prefix(b"app/"), True),
        (Delete(b"app/a", b"\0"), False),  # unbounded: past the prefix (and an admin's)
        (Txn([Compare(b"app/a", "version", "==", 0)], [Put(b"app/a", b"1")], []), True),
        (Txn([Compare(b"other", "version", "==", 0)], [Put(b"app/a", b"1")], []), False),
        (Txn([], [Put(b"app/a", b"1")], [Range(b"zzz")]), False),
    ],
)
def test_prefixes_bound_every_key_of_a_command(command: object, allowed: bool) -> None:
    if allowed:
        check_command(SCOPED, command)
    else:
        with pytest.raises(ApiError) as info:
            check_command(SCOPED, command)
        assert info.value.status == 403


def test_deleting_everything_is_an_admins() -> None:
    for command in (Delete.prefix(b""), Txn([], [], [Delete(b"a", b"\0")])):
        with pytest.raises(ApiError):
            check_command(Identity("w", "readwrite"), command)
        check_command(Identity("root", "admin"), command)
    check_command(Identity("w", "readwrite"), Delete.prefix(b"a"))


def test_tokens_are_checked_against_their_digest(tmp_path: Path) -> None:
    good, other = new_token(), new_token()
    path = tmp_path / "auth.json"
    write_auth_file(path, [token_entry("ci", "readwrite", good)])
    assert good not in path.read_text()  # only the digest is stored
    auth = Authenticator(path)
    assert auth.check("readwrite", f"Bearer {good}", _no_cert).name == "ci"
    assert auth.check("read", f"bearer  {good} ", _no_cert).name == "ci"
    for header in (None, f"Bearer {other}", good, "Basic eDp5", "Bearer", "Bearer "):
        with pytest.raises(ApiError) as info:
            auth.check("read", header, _no_cert)
        assert info.value.status == 401
        assert info.value.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(ApiError) as info:
        auth.check("admin", f"Bearer {good}", _no_cert)
    assert info.value.status == 403
    assert auth.check("open", None, _no_cert).role == "read"  # health probes
    assert auth.check("metrics", None, _no_cert)  # open by default


def test_certificate_names_map_to_identities(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    write_auth_file(path, [], [{"name": "backup.example.com", "role": "admin"}])
    auth = Authenticator(path, metrics_open=False)
    cert = {
        "subject": ((("commonName", "someone"),),),
        "subjectAltName": (("DNS", "backup.example.com"),),
    }
    assert auth.check("admin", None, lambda: cert).name == "backup.example.com"
    stranger = {"subject": ((("commonName", "stranger"),),)}
    with pytest.raises(ApiError) as info:
        auth.check("read", None, lambda: stranger)
    assert info.value.status == 403
    with pytest.raises(ApiError) as info:
        auth.check("metrics", None, _no_cert)
    assert info.value.status == 401


def test_the_file_is_reloaded_and_a_bad_one_keeps_the_last(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "auth.json"
    first, second = new_token(), new_token()
    write_auth_file(path, [token_entry("one", "read", first)])
    auth = Authenticator(path, clock=lambda: now[0])
    assert auth.check("read", f"Bearer {first}", _no_cert).name == "one"
    write_auth_file(path, [token_entry("two", "read", second)])
    # Not looked at again within the check interval (a stat per request is too much).
    assert auth.check("read", f"Bearer {first}", _no_cert).name == "one"
    now[0] = 2.0
    assert auth.check("read", f"Bearer {second}", _no_cert).name == "two"
    with pytest.raises(ApiError):
        auth.check("read", f"Bearer {first}", _no_cert)  # the cache went with the file
    assert auth.reloads == 1
    path.write_text("{broken")
    now[0] = 4.0
    assert auth.check("read", f"Bearer {second}", _no_cert).name == "two"
    assert auth.reload_failures == 1


async def test_a_secure_follower_never_forwards_credentials_in_clear() -> None:
    from types import SimpleNamespace

    from raftkv.runtime.http.forward import LeaderForwarder

    service = SimpleNamespace(node=None, cfg=None)
    forwarder = LeaderForwarder(service, tls=object())  # type: ignore[arg-type]
    forwarder.session = object()  # type: ignore[assignment]
    with pytest.raises(ApiError) as info:
        await forwarder._forward(None, "http://leader:7379/v1/kv/x", 1)  # type: ignore[arg-type]
    assert info.value.status == 503 and "in clear" in info.value.message


def test_raftkv_auth_token_adds_a_digest_and_prints_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from raftkv.cli import main

    path = tmp_path / "auth.json"
    assert (
        main(
            [
                "auth",
                "token",
                "ci",
                "--role",
                "readwrite",
                "--prefix",
                "ci/",
                "--auth-file",
                str(path),
            ]
        )
        == 0
    )
    first = capsys.readouterr().out.strip()
    assert main(["auth", "token", "ops", "--role", "admin", "--auth-file", str(path)]) == 0
    second = capsys.readouterr().out.strip()
    text = path.read_text()
    assert first not in text and second not in text  # digests only
    assert path.stat().st_mode & 0o077 == 0
    auth = Authenticator(path)
    ci = auth.check("readwrite", f"Bearer {first}", _no_cert)
    assert (ci.name, ci.prefixes) == ("ci", (b"ci/",))
    assert auth.check("admin", f"Bearer {second}", _no_cert).name == "ops"
    path.write_text("{broken")
    assert main(["auth", "token", "x", "--role", "read", "--auth-file", str(path)]) == 2
    assert path.read_text() == "{broken"  # a file the nodes cannot load is left alone
    assert main(["auth", "token", "y", "--role", "read"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("rkv_") and '"sha256"' in err

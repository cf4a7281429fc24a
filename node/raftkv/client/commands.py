"""What each client subcommand of `raftkv` does (argument parsing is in cli.py).

Each command is `async def (client, args, out) -> exit code`. Errors are raised
as `RaftkvError`s (or `UsageError`) and turned into one line on stderr and an
exit code by `cli.run_command`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from raftkv.client import render
from raftkv.client.aio import AsyncClient
from raftkv.client.errors import (
    CheckpointNotFoundError,
    ConflictError,
    ConnectError,
    KeyNotFoundError,
    LeaseNotFoundError,
    LockNotFoundError,
    NoLeaderError,
    RaftkvError,
)
from raftkv.client.models import Compare, TxnOp, compare_from_json, txn_op_from_json
from raftkv.client.progress import ProgressBar
from raftkv.client.txnparse import TxnSyntaxError, parse_compare, parse_op

# Exit codes (documented in docs/cli.md and `raftkv --help`).
EXIT_OK = 0
EXIT_FAILED = 1  # not found, condition/compare failed, conflict (lock held, ...)
EXIT_USAGE = 2  # bad arguments, or a request the server rejects as invalid
EXIT_UNAVAILABLE = 3  # no leader, unreachable, timed out, server error
EXIT_VERIFY = 4  # a downloaded checkpoint does not match its manifest
EXIT_DENIED = 5  # 401/403: not authenticated or not permitted
EXIT_UNKNOWN = 6  # a write failed with an unknown outcome: it may or may not have applied
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad command-line input found after parsing (exit 2)."""


class Output:
    """stdout for results, in the chosen format."""

    def __init__(self, fmt: str, stream: TextIO | None = None) -> None:
        self.json = fmt == "json"
        self.stream = stream or sys.stdout

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def obj(self, obj: Any) -> None:
        self.line(render.dumps(obj))

    def raw(self, data: bytes) -> None:
        self.stream.flush()
        binary: BinaryIO | None = getattr(self.stream, "buffer", None)
        if binary is None:
            self.stream.write(render.text(data))
        else:
            binary.write(data)
            binary.flush()


Command = Callable[[AsyncClient, argparse.Namespace, Output], Awaitable[int]]


def _read_value(args: argparse.Namespace) -> bytes:
    if args.value is None or args.value == "-":
        if sys.stdin is None or sys.stdin.isatty() and args.value is None:
            raise UsageError("give a VALUE, or '-' to read it from stdin")
        return sys.stdin.buffer.read()
    return os.fsencode(args.value)


def _conditions(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.if_version is not None:
        out["if_version"] = args.if_version
    if args.if_mod_revision is not None:
        out["if_mod_revision"] = args.if_mod_revision
    if args.if_exists is not None:
        out["if_exists"] = args.if_exists
    if args.if_value is not None:
        out["if_value"] = args.if_value
    return out


def _key(raw: str) -> bytes:
    # os.fsencode keeps bytes that the shell passed undecodable (surrogateescape).
    return os.fsencode(raw)


# --- key-value ----------------------------------------------------------------------
async def cmd_put(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    result = await client.put(
        _key(args.key),
        _read_value(args),
        lease=args.lease,
        prev_kv=args.prev_kv,
        **_conditions(args),
    )
    if out.json:
        obj: dict[str, Any] = {"revision": result.revision}
        if args.prev_kv:
            obj["prev_kv"] = None if result.prev_kv is None else render.kv_json(result.prev_kv)
        out.obj(obj)
    else:
        out.line(f"OK revision {result.revision}")
        if args.prev_kv and result.prev_kv is not None:
            out.line(render.kv_line(result.prev_kv))
    return EXIT_OK


async def cmd_get(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    if args.prefix or args.limit or args.keys_only or args.count_only:
        result = await client.get_prefix(
            _key(args.key),
            limit=args.limit,
            keys_only=args.keys_only,
            count_only=args.count_only,
            serializable=args.serializable,
        )
        if out.json:
            out.obj(
                {
                    "revision": result.revision,
                    "count": result.count,
                    "more": result.more,
                    "kvs": [render.kv_json(kv) for kv in result.kvs],
                }
            )
        elif args.count_only:
            out.line(str(result.count))
        else:
            for item in result.kvs:
                out.line(render.kv_line(item, args.keys_only))
        return EXIT_OK
    kv = await client.get(_key(args.key), serializable=args.serializable)
    if kv is None:
        raise KeyNotFoundError(f"key {args.key!r} not found", code="key_not_found")
    if out.json:
        out.obj(render.kv_json(kv))
    elif args.raw:
        out.raw(kv.value)
    else:
        out.raw(kv.value + b"\n")
    return EXIT_OK


async def cmd_del(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    if args.prefix:
        result = await client.delete_prefix(_key(args.key), prev_kv=args.prev_kv)
    else:
        result = await client.delete(_key(args.key), prev_kv=args.prev_kv, **_conditions(args))
        if result.deleted == 0:
            raise KeyNotFoundError(f"key {args.key!r} not found", code="key_not_found")
    if out.json:
        obj: dict[str, Any] = {"revision": result.revision, "deleted": result.deleted}
        if args.prev_kv:
            obj["prev_kvs"] = [render.kv_json(kv) for kv in result.prev_kvs]
        out.obj(obj)
    else:
        out.line(f"deleted {result.deleted}")
        for kv in result.prev_kvs:
            out.line(render.kv_line(kv))
    return EXIT_OK


async def cmd_txn(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    compares, success, failure = _txn_request(args)
    result = await client.txn(compares, success, failure)
    if out.json:
        out.obj(render.txn_json(result))
    else:
        for line in render.txn_lines(result):
            out.line(line)
    return EXIT_OK if result.succeeded else EXIT_FAILED


def _txn_request(args: argparse.Namespace) -> tuple[list[Compare], list[TxnOp], list[TxnOp]]:
    if args.file is not None:
        if args.compare or args.success or args.failure:
            raise UsageError("give --file or --if/--then/--else, not both")
        raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the txn must be a JSON object")
            return (
                [compare_from_json(c) for c in body.get("compare", [])],
                [txn_op_from_json(o) for o in body.get("success", [])],
                [txn_op_from_json(o) for o in body.get("failure", [])],
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UsageError(f"bad txn file: {exc}") from None
    if not (args.compare or args.success or args.failure):
        raise UsageError("give --if/--then/--else, or --file (JSON as in docs/api.md)")
    try:
        return (
            [parse_compare(c) for c in args.compare],
            [parse_op(o) for o in args.success],
            [parse_op(o) for o in args.failure],
        )
    except TxnSyntaxError as exc:
        raise UsageError(str(exc)) from None


# --- leases -------------------------------------------------------------------------
async def cmd_lease_grant(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    lease = await client.grant_lease(args.ttl, lease_id=args.id)
    if out.json:
        out.obj({"id": lease.id, "ttl": lease.ttl})
    else:
        out.line(f"lease {lease.id} granted with TTL {lease.ttl}s")
    return EXIT_OK


async def cmd_lease_revoke(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    result = await client.revoke_lease(args.id)
    if out.json:
        out.obj(
            {
                "id": result.id,
                "revision": result.revision,
                "deleted": result.deleted,
                "locks_released": result.locks_released,
            }
        )
    else:
        released = ", ".join(result.locks_released) or "none"
        out.line(
            f"lease {args.id} revoked ({result.deleted} keys deleted; locks released: {released})"
        )
    return EXIT_OK


async def cmd_lease_keepalive(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    while True:
        lease = await client.keepalive(args.id)
        if out.json:
            out.obj({"id": lease.id, "ttl": lease.ttl})
        else:
            out.line(f"lease {lease.id} kept alive with TTL {lease.ttl}s")
        if args.once:
            return EXIT_OK
        await asyncio.sleep(max(0.5, lease.ttl / 3))


async def cmd_lease_show(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    info = await client.lease(args.id)
    if info is None:
        raise LeaseNotFoundError(f"lease {args.id} is not granted", code="lease_not_found")
    if out.json:
        out.obj(render.lease_json(info))
    else:
        remaining = "-" if info.remaining is None else f"{info.remaining:.1f}s"
        out.line(f"lease {info.id}: TTL {info.ttl}s, remaining {remaining}")
        out.line("keys: " + (", ".join(render.text(k) for k in info.keys) or "none"))
        out.line("locks: " + (", ".join(info.locks) or "none"))
    return EXIT_OK


async def cmd_lease_list(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    leases = await client.leases()
    if out.json:
        out.obj({"leases": [render.lease_json(i) for i in leases]})
    else:
        rows = [["ID", "TTL", "REMAINING"]] + [
            [str(i.id), str(i.ttl), "-" if i.remaining is None else f"{i.remaining:.1f}"]
            for i in leases
        ]
        for line in render.table(rows):
            out.line(line)
    return EXIT_OK


# --- locks --------------------------------------------------------------------------
def _lock_obj(lock: Any) -> dict[str, Any]:
    return {"name": lock.name, "lease": lock.lease, "token": lock.token, "revision": lock.revision}


async def cmd_lock_acquire(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    command = list(args.exec_command or [])
    if args.lease:
        if command:
            raise UsageError(
                "a command runs only under a lock the CLI holds itself (leave out --lease)"
            )
        lock = await client.lock(
            args.name, args.lease, timeout=args.wait_timeout, wait=not args.no_wait
        )
        _print_lock(out, lock)
        return EXIT_OK
    if command:
        return await _run_under_lock(client, args, out, command)
    async with client.hold_lock(
        args.name, ttl=args.ttl, timeout=args.wait_timeout, wait=not args.no_wait
    ) as lock:
        _print_lock(out, lock)
        await _wait_for_signal()
        return EXIT_OK


def _print_lock(out: Output, lock: Any) -> None:
    if out.json:
        out.obj(_lock_obj(lock))
    else:
        out.line(f"acquired lock {lock.name}: lease {lock.lease}, fencing token {lock.token}")


# Signals the CLI passes on to the command it runs under a lock: the command stops,
# then the CLI releases the lock (rather than dying and leaving the command running
# unprotected while the lease lives on).
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
# A command that lost its lock gets SIGTERM, then SIGKILL after this long.
LOST_LOCK_GRACE_SECONDS = 10.0


async def _run_under_lock(
    client: AsyncClient, args: argparse.Namespace, out: Output, command: list[str]
) -> int:
    """Grant a lease, keep it alive, acquire the lock, run `command`; release the lock
    and revoke the lease when it exits, however it exits. If the lease is lost while
    the command runs (the cluster expired it), the command is stopped: it no longer
    holds the lock."""
    lease = await client.grant_lease(args.ttl)
    lost = asyncio.Event()
    keeper = asyncio.ensure_future(_keep_lease(client, lease.id, args.ttl, lost))
    try:
        lock = await client.lock(
            args.name, lease.id, timeout=args.wait_timeout, wait=not args.no_wait
        )
        try:
            _print_lock(out, lock)
            return await _run_locked(command, lock, lost)
        finally:
            with contextlib.suppress(RaftkvError):
                await client.unlock(args.name, lease.id)
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await keeper
        with contextlib.suppress(RaftkvError):
            await client.revoke_lease(lease.id)


async def _keep_lease(client: AsyncClient, lease_id: int, ttl: int, lost: asyncio.Event) -> None:
    """Keep-alive every ttl/3 s; set `lost` once the lease is gone, or may be gone: no
    keep-alive succeeded for a whole TTL, counted from when the last good one was
    sent (the cluster restarted the TTL no earlier than that)."""
    loop = asyncio.get_running_loop()
    interval = max(0.2, ttl / 3)
    alive_since = loop.time()
    while True:
        await asyncio.sleep(interval)
        sent = loop.time()
        try:
            # A slow answer is waited for as long as the lease may still be alive.
            budget = max(interval, alive_since + ttl - sent)
            await asyncio.wait_for(client.keepalive(lease_id), budget)
            alive_since = sent
        except LeaseNotFoundError:
            lost.set()
            return
        except (RaftkvError, TimeoutError):
            if loop.time() - alive_since >= ttl:
                lost.set()
                return


def _exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: 128+N when killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


async def _run_locked(command: list[str], lock: Any, lost: asyncio.Event) -> int:
    env = dict(
        os.environ,
        RAFTKV_LOCK_NAME=lock.name,
        RAFTKV_LOCK_LEASE=str(lock.lease),
        RAFTKV_LOCK_TOKEN=str(lock.token),
    )
    try:
        proc = await asyncio.create_subprocess_exec(*command, env=env)
    except OSError as exc:
        raise UsageError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
    loop = asyncio.get_running_loop()

    def forward(sig: signal.Signals) -> None:
        # A terminal's Ctrl-C already reached the command (same foreground process
        # group): sending it again could cut the command's own cleanup short.
        if sig == signal.SIGINT and _terminal_signals_us():
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)

    for sig in FORWARDED_SIGNALS:
        loop.add_signal_handler(sig, forward, sig)
    try:
        exited = asyncio.ensure_future(proc.wait())
        lease_lost = asyncio.ensure_future(lost.wait())
        await asyncio.wait((exited, lease_lost), return_when=asyncio.FIRST_COMPLETED)
        lease_lost.cancel()
        if not exited.done():
            print(
                f"raftkv lock acquire: lost lock {lock.name} (lease {lock.lease} expired "
                f"or unreachable for its TTL); stopping {command[0]}",
                file=sys.stderr,
            )
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(exited), LOST_LOCK_GRACE_SECONDS)
            except TimeoutError:  # it must not go on without the lock
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await exited
            return EXIT_UNAVAILABLE
        return _exit_status(exited.result())
    finally:
        for sig in FORWARDED_SIGNALS:
            loop.remove_signal_handler(sig)
        if proc.returncode is None:  # cancelled (not by a signal we forward)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _terminal_signals_us() -> bool:
    """Is our process group the foreground group of our controlling terminal?"""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


async def _wait_for_signal() -> None:
    """Hold until SIGINT or SIGTERM (then the caller releases the lock)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def cmd_lock_release(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    result = await client.unlock(args.name, args.lease)
    if out.json:
        out.obj(
            {
                "name": result.name,
                "lease": result.lease,
                "revision": result.revision,
                "released": result.released,
                "dequeued": result.dequeued,
            }
        )
    else:
        what = "released" if result.released else "left the queue of"
        out.line(f"lease {args.lease} {what} lock {args.name}")
    return EXIT_OK


async def cmd_lock_show(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    info = await client.lock_info(args.name)
    if info is None:
        raise LockNotFoundError(f"lock {args.name!r} is free", code="lock_not_found")
    if out.json:
        out.obj(render.lock_json(info))
    else:
        waiters = ", ".join(str(w) for w in info.waiters) or "none"
        out.line(
            f"lock {info.name}: held by lease {info.holder}, fencing token {info.token}, "
            f"waiters: {waiters}"
        )
    return EXIT_OK


async def cmd_lock_list(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    locks = await client.locks()
    if out.json:
        out.obj({"locks": [render.lock_json(i) for i in locks]})
    else:
        rows = [["NAME", "HOLDER", "TOKEN", "WAITERS"]] + [
            [i.name, str(i.holder), str(i.token), str(len(i.waiters))] for i in locks
        ]
        for line in render.table(rows):
            out.line(line)
    return EXIT_OK


# --- watch --------------------------------------------------------------------------
async def cmd_watch(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    seen = 0
    async for event in client.watch(
        _key(args.key),
        prefix=args.prefix,
        start_revision=args.start_revision,
        progress=args.progress,
        give_up_after=args.timeout,
    ):
        if out.json:
            out.obj(render.event_json(event))
        else:
            out.line(render.event_line(event))
        if event.kv is not None:
            seen += 1
            if args.count and seen >= args.count:
                break
    return EXIT_OK


# --- cluster ------------------------------------------------------------------------
async def cmd_status(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    results = await client.statuses()
    statuses = [r for r in results if not isinstance(r, RaftkvError)]
    leaders = {st.leader.id for st in statuses if st.leader is not None}
    healthy = len(statuses) == len(results) and len(leaders) == 1
    if out.json:
        out.obj(
            {
                "endpoints": [
                    render.status_json(r)
                    if not isinstance(r, RaftkvError)
                    else {"endpoint": r.endpoint, "error": str(r)}
                    for r in results
                ],
                "healthy": healthy,
            }
        )
    else:
        rows = [["ENDPOINT", "NAME", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "READY"]]
        for r in results:
            if isinstance(r, RaftkvError):
                rows.append([r.endpoint, "-", f"error: {r}", "-", "-", "-", "-", "-"])
            else:
                rows.append(
                    [
                        r.endpoint,
                        r.name,
                        r.role,
                        str(r.term),
                        r.leader.name if r.leader else "-",
                        str(r.commit_index),
                        str(r.applied_index),
                        "yes" if r.ready else "no",
                    ]
                )
        for line in render.table(rows):
            out.line(line)
    if not statuses:
        raise ConnectError("no endpoint answered: " + "; ".join(str(r) for r in results))
    if not leaders:
        raise NoLeaderError("no endpoint knows a leader", code="no_leader")
    return EXIT_OK if healthy else EXIT_UNAVAILABLE


async def cmd_members_list(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    result = await client.members()
    if out.json:
        out.obj(
            {"leader": result.leader, "members": [render.member_json(m) for m in result.members]}
        )
    else:
        rows = [["ID", "NAME", "ROLE", "PEER URL", "CLIENT URL", "MATCH", "LEADER"]]
        for m in result.members:
            rows.append(
                [
                    str(m.id),
                    m.name,
                    m.role,
                    m.peer_url,
                    m.client_url or "-",
                    "-" if m.match_index is None else str(m.match_index),
                    "*" if m.id == result.leader else "",
                ]
            )
        for line in render.table(rows):
            out.line(line)
    return EXIT_OK


async def _member_id(client: AsyncClient, ref: str) -> int:
    """A member id, or the id of the member named `ref`."""
    if ref.isdigit():
        return int(ref)
    members = await client.members()
    for m in members.members:
        if m.name == ref:
            return m.id
    raise UsageError(f"no member named {ref!r} (give a name or a numeric id)")


async def _refuse_another_engine(client: AsyncClient, name: str, joiner: str | None) -> None:
    """Stop before the change is proposed if the joiner runs another consensus engine:
    added, it would refuse every member's HELLO and stay a learner that never catches
    up (docs/contracts.md "wrong_consensus"). A node that does not say is let through."""
    cluster = (await client.status()).consensus
    if joiner is None or cluster is None or joiner == cluster:
        return
    raise ConflictError(
        f"{name} runs {joiner} but the cluster runs {cluster}: it could not join; "
        f"nothing was changed. Start it with --consensus {cluster} on an empty data "
        "directory, then add it again",
        code="wrong_consensus",
    )


async def cmd_members_add(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    member_id = args.id
    if args.client_url:
        # A joining node draws its own id (docs/contracts.md "Node identity"): ask it,
        # and check its engine, with or without --id.
        joiner = await client.status(args.client_url)
        if member_id is not None and member_id != joiner.id:
            raise UsageError(
                f"the node at {args.client_url} has id {joiner.id}, not {member_id}; "
                "nothing was changed (leave out --id to use the node's own)"
            )
        member_id = joiner.id
        await _refuse_another_engine(client, args.name, joiner.consensus)
    member = await client.add_member(args.name, args.peer_url, args.client_url or "", member_id)
    if out.json:
        out.obj(render.member_json(member))
    else:
        out.line(f"added {member.name} (id {member.id}) as a {member.role}")
    return EXIT_OK


async def cmd_members_promote(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    member_id = await _member_id(client, args.member)
    await client.promote_member(member_id)
    if out.json:
        out.obj({"id": member_id, "role": "voter"})
    else:
        out.line(f"member {args.member} (id {member_id}) is a voter")
    return EXIT_OK


async def cmd_members_remove(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    member_id = await _member_id(client, args.member)
    await client.remove_member(member_id)
    if out.json:
        out.obj({"id": member_id, "removed": True})
    else:
        out.line(f"member {args.member} (id {member_id}) removed")
    return EXIT_OK


async def cmd_leader_transfer(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    to = None if args.to is None else await _member_id(client, args.to)
    leader = await client.transfer_leader(to)
    if out.json:
        out.obj({"leader": leader})
    else:
        out.line(f"leader is now {leader}")
    return EXIT_OK


# --- checkpoints --------------------------------------------------------------------
async def cmd_checkpoint_create(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    manifest = await client.create_checkpoint(args.id)
    if out.json:
        out.obj(render.manifest_json(manifest))
    else:
        out.line(
            f"checkpoint {manifest.id} at index {manifest.index} "
            f"({render.human_size(manifest.size)}, sha256 {manifest.sha256[:12]}...)"
        )
    return EXIT_OK


async def cmd_checkpoint_list(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    manifests = await client.checkpoints()
    if out.json:
        out.obj({"checkpoints": [render.manifest_json(m) for m in manifests]})
    else:
        rows = [["ID", "INDEX", "TERM", "SIZE", "TIME", "SHA256"]] + [
            [m.id, str(m.index), str(m.term), render.human_size(m.size), m.time, m.sha256[:12]]
            for m in manifests
        ]
        for line in render.table(rows):
            out.line(line)
    return EXIT_OK


async def cmd_checkpoint_show(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    manifest = await client.checkpoint(args.id)
    if manifest is None:
        raise CheckpointNotFoundError(
            f"checkpoint {args.id!r} not found", code="checkpoint_not_found"
        )
    if out.json:
        out.obj(render.manifest_json(manifest))
    else:
        for name, value in render.manifest_json(manifest).items():
            out.line(f"{name}: {value}")
    return EXIT_OK


async def cmd_checkpoint_download(
    client: AsyncClient, args: argparse.Namespace, out: Output
) -> int:
    bar = ProgressBar(f"{args.id}", enabled=True if args.progress else None)
    if args.no_progress:
        bar.enabled = False
    try:
        manifest = await client.download_checkpoint(args.id, args.out, progress=bar)
    finally:
        bar.finish()
    if out.json:
        out.obj({**render.manifest_json(manifest), "out": str(Path(args.out).resolve())})
    else:
        out.line(
            f"checkpoint {manifest.id} ({render.human_size(manifest.size)}, index "
            f"{manifest.index}) written to {args.out} and verified (sha256 "
            f"{manifest.sha256[:12]}...)"
        )
    return EXIT_OK

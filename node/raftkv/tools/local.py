"""`raftkv local up|status|down`: a real cluster of `raftkv serve` processes on
127.0.0.1, for trying things out and for tools.

`up` prints each node's client URL, one per line, and nothing else on stdout
(tools parse it); it returns once the cluster has a leader. The cluster lives
in a directory (default `./.raftkv-local`, or `--dir`/`RAFTKV_LOCAL_DIR`):
`cluster.json` records names, ports and pids; `<name>/` is each node's data
dir and `<name>.log` its log.

Secure by default: `up` makes a CA, a certificate per node and an admin token
in `<dir>/credentials/` (runtime/credentials.py) and serves https with
authentication; `raftkv local env` prints the `export` lines a shell needs to
use it (RAFTKV_ENDPOINTS, RAFTKV_CACERT, RAFTKV_TOKEN). `up --insecure`
serves plain HTTP without authentication instead (said so on stderr). `down` stops only the processes recorded there
(SIGTERM, then SIGKILL after a grace period) and keeps the data, so a later
`up` restarts the same cluster on the same ports; `down --purge` deletes it.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from raftkv.consensus import ENGINES
from raftkv.runtime.credentials import ClientCredentials
from raftkv.tools.ports import free_ports

DEFAULT_DIR = ".raftkv-local"
STATE_FILE = "cluster.json"
CREDENTIALS_DIR = "credentials"


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    local = sub.add_parser(
        "local",
        help="run a throw-away cluster on 127.0.0.1",
        description="Run a throw-away cluster on 127.0.0.1.",
        epilog=_examples(
            "raftkv local up --nodes 3 --dir ./my-cluster",
            'eval "$(raftkv local env --dir ./my-cluster)"',
            "raftkv local status --dir ./my-cluster",
            "raftkv local down --purge --dir ./my-cluster",
        ),
        formatter_class=raw,
    )
    actions = local.add_subparsers(dest="local_command", metavar="ACTION", required=True)
    default_dir = os.environ.get("RAFTKV_LOCAL_DIR", DEFAULT_DIR)

    up = actions.add_parser(
        "up",
        help="start N nodes, print their client URLs",
        description="Start N nodes (or the stopped nodes of --dir), "
        "wait for a leader, print the client URLs.",
        epilog=_examples(
            "raftkv local up --nodes 3 --dir ./my-cluster",
            'eval "$(raftkv local env --dir ./my-cluster)"',
            "raftkv local up --nodes 1 --insecure --dir ./plain",
        ),
        formatter_class=raw,
    )
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--dir", default=default_dir)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a leader")
    up.add_argument("--snapshot-entries", type=int, default=None)
    up.add_argument("--unsafe-no-fsync", action="store_true")
    up.add_argument(
        "--consensus",
        choices=ENGINES,
        default=None,
        help="consensus engine of a new cluster (default raft; docs/consensus.md)",
    )
    up.add_argument(
        "--insecure",
        action="store_true",
        help="INSECURE: no TLS anywhere and no authentication (client port: "
        "plain HTTP, every caller an admin; peer port: --peer-insecure); by "
        "default clients need TLS and a token (DIR/credentials) and the "
        "members talk mutual TLS (DIR/pki). A new cluster only",
    )
    up.set_defaults(func=cmd_up)

    env = actions.add_parser(
        "env",
        help="print the export lines a shell needs to use the cluster",
        epilog=_examples(
            "raftkv local env --dir ./my-cluster", 'eval "$(raftkv local env --dir ./my-cluster)"'
        ),
        formatter_class=raw,
    )
    env.add_argument("--dir", default=default_dir)
    env.set_defaults(func=cmd_env)

    status = actions.add_parser(
        "status",
        help="one line per node: name url role term leader",
        epilog=_examples("raftkv local status --dir ./my-cluster"),
        formatter_class=raw,
    )
    status.add_argument("--dir", default=default_dir)
    status.set_defaults(func=cmd_status)

    down = actions.add_parser(
        "down",
        help="stop the nodes this directory started",
        epilog=_examples(
            "raftkv local down --dir ./my-cluster",
            "raftkv local down --purge --dir ./my-cluster   # and delete the data",
        ),
        formatter_class=raw,
    )
    down.add_argument("--dir", default=default_dir)
    down.add_argument("--purge", action="store_true", help="also delete the data")
    down.set_defaults(func=cmd_down)


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join("  " + line for line in lines)


def _err(message: str) -> None:
    print(f"raftkv local: {message}", file=sys.stderr)


def _out(line: str) -> bool:
    """Print a line of output; False once the reader has gone away (`... | head`).

    Then stdout points at /dev/null, so the interpreter's final flush cannot raise a
    second BrokenPipeError, and the command stops quietly like any Unix tool."""
    try:
        print(line, flush=True)
        return True
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False


def load_state(directory: Path) -> dict[str, Any] | None:
    path = directory / STATE_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def save_state(directory: Path, state: dict[str, Any]) -> None:
    tmp = directory / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, directory / STATE_FILE)


def pid_alive(pid: int | None, data_dir: str) -> bool:
    """Is `pid` still one of our nodes (and not a recycled pid)?"""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return data_dir.encode() in cmdline


def credentials(directory: Path) -> ClientCredentials:
    return ClientCredentials(directory / CREDENTIALS_DIR)


class Access:
    """How this tool reaches the cluster's status: TLS + the admin token, or plain."""

    def __init__(self, directory: Path, state: dict[str, Any]) -> None:
        self.context: ssl.SSLContext | None = None
        self.headers: dict[str, str] = {}
        if state.get("secure"):
            creds = credentials(directory)
            self.context = ssl.create_default_context(cafile=str(creds.ca_file))
            self.headers = {"Authorization": f"Bearer {creds.admin_token()}"}


def get_status(
    url: str, access: Access | None = None, timeout: float = 1.0
) -> dict[str, Any] | None:
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/status", headers=access.headers if access else {}
    )
    try:
        with urllib.request.urlopen(
            request, timeout=timeout, context=access.context if access else None
        ) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


PKI_DIR = "pki"


def peer_tls_args(node: dict[str, Any], state: dict[str, Any], directory: Path) -> list[str]:
    """The peer-port flags of one node: mutual TLS with a CA made for this cluster
    (created on first use, kept in DIR/pki), or --peer-insecure when asked for."""
    if not state.get("peer_tls", True):
        return ["--peer-insecure"]
    from raftkv.security.pki import CertKey, issue_cert, make_ca, write_file_atomic

    pki = directory / PKI_DIR
    ca_cert, ca_key = pki / "ca.pem", pki / "ca-key.pem"
    if not ca_cert.exists():
        ca = make_ca("raftkv local peer CA")
        write_file_atomic(ca_key, ca.key_pem, mode=0o600)
        write_file_atomic(ca_cert, ca.cert_pem)
    cert, key = pki / f"{node['name']}-peer.pem", pki / f"{node['name']}-peer-key.pem"
    if not cert.exists():
        ca = CertKey(ca_cert.read_bytes(), ca_key.read_bytes())
        host = state["host"]
        try:
            ipaddress.ip_address(host)
            dns, ips = [node["name"]], [host]
        except ValueError:
            dns, ips = [node["name"], host], []
        issue_cert(ca, node["name"], dns_names=dns, ip_addresses=ips).write(cert, key)
    return [
        "--peer-cert-file",
        str(cert),
        "--peer-key-file",
        str(key),
        "--peer-trusted-ca-file",
        str(ca_cert),
    ]


def _engine_of(state: dict[str, Any]) -> str:
    extra = state.get("extra_args", [])
    if "--consensus" in extra:
        return str(extra[extra.index("--consensus") + 1])
    return "raft"  # made before the choice existed


def serve_command(node: dict[str, Any], state: dict[str, Any]) -> list[str]:
    initial = ",".join(f"{n['name']}={n['peer_url']}" for n in state["nodes"])
    # -P: the working directory is not put on sys.path, so a `raftkv/` folder where
    # `local up` runs (the parent of a checkout...) cannot shadow the installed package.
    cmd = [
        sys.executable,
        "-P",
        "-m",
        "raftkv.cli",
        "serve",
        "--name",
        node["name"],
        "--data-dir",
        node["data_dir"],
        "--listen-host",
        state["host"],
        "--client-port",
        str(node["client_port"]),
        "--peer-port",
        str(node["peer_port"]),
        "--advertise-client-url",
        node["client_url"],
        "--advertise-peer-url",
        node["peer_url"],
        "--initial-cluster",
        initial,
        "--initial-cluster-state",
        "new",
    ]
    if state.get("secure"):
        creds = ClientCredentials(Path(state["credentials_dir"]))
        cert, key = creds.cert_files(node["name"])
        cmd += [
            "--client-cert-file",
            str(cert),
            "--client-key-file",
            str(key),
            "--client-trusted-ca-file",
            str(creds.ca_file),
            "--auth-file",
            str(creds.auth_file),
        ]
    else:
        cmd.append("--client-insecure")
    cmd += state.get("extra_args", [])
    return cmd


def log_path(directory: Path, node: dict[str, Any]) -> Path:
    return directory / f"{node['name']}.log"


def start_node(
    node: dict[str, Any], state: dict[str, Any], directory: Path
) -> subprocess.Popen[bytes]:
    with open(log_path(directory, node), "ab") as log_file:
        log_file.write(
            f"--- raftkv local up: starting {node['name']} at "
            f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode()
        )
        log_file.flush()
        command = serve_command(node, state) + peer_tls_args(node, state, directory)
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )


class NodeExited(Exception):
    """A node `up` started exited before the cluster had a leader."""

    def __init__(self, name: str, code: int) -> None:
        super().__init__(f"{name} exited with code {code}")
        self.name = name
        self.code = code


def wait_for_leader(
    urls: list[str],
    timeout: float,
    started: dict[str, subprocess.Popen[bytes]] | None = None,
    access: Access | None = None,
) -> dict[str, Any] | None:
    """The status of a node once every node answers and all name the same leader;
    None after `timeout`. A started process that exits raises NodeExited at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in (started or {}).items():
            code = proc.poll()
            if code is not None:
                raise NodeExited(name, code)
        statuses = [get_status(u, access) for u in urls]
        leaders = {(s["leader"] or {}).get("id") for s in statuses if s}
        if all(statuses) and len(leaders) == 1 and None not in leaders:
            return statuses[0]
        time.sleep(0.1)
    return None


def log_tail(path: Path, lines: int = 15) -> str:
    """The end of a node's log since `up` last started it."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    text = text[text.rfind("--- raftkv local up: starting") :]
    return "\n".join(text.splitlines()[1:][-lines:])


def cmd_up(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    state = load_state(directory)
    if state is not None and args.nodes != len(state["nodes"]):
        _err(
            f"{directory} holds a {len(state['nodes'])}-node cluster; "
            "use `raftkv local down --purge` first to change its size"
        )
        return 1
    if state is None:
        if args.nodes < 1:
            _err("--nodes must be >= 1")
            return 2
        ports = free_ports(2 * args.nodes, args.host)
        extra: list[str] = []
        if args.snapshot_entries:
            extra += ["--snapshot-entries", str(args.snapshot_entries)]
        if args.unsafe_no_fsync:
            extra.append("--unsafe-no-fsync")
        extra += ["--consensus", args.consensus or "raft"]
        scheme = "http" if args.insecure else "https"
        state = {
            "host": args.host,
            "extra_args": extra,
            "secure": not args.insecure,
            "peer_tls": not args.insecure,
            "credentials_dir": str(credentials(directory).directory),
            "nodes": [
                {
                    "name": f"node{i + 1}",
                    "client_port": ports[2 * i],
                    "peer_port": ports[2 * i + 1],
                    "client_url": f"{scheme}://{args.host}:{ports[2 * i]}",
                    "peer_url": f"{args.host}:{ports[2 * i + 1]}",
                    "data_dir": str(directory / f"node{i + 1}"),
                    "pid": None,
                }
                for i in range(args.nodes)
            ],
        }
    elif args.consensus is not None and args.consensus != _engine_of(state):
        _err(
            f"{directory} holds a {_engine_of(state)} cluster; --consensus only applies to "
            "a new cluster"
        )
        return 2
    elif args.insecure and state.get("secure"):
        _err(
            f"{directory} holds a cluster with TLS and authentication; `--insecure` only "
            "applies to a new cluster"
        )
        return 2
    if state.get("secure"):
        creds = credentials(directory)
        creds.ensure_admin()
        hosts = sorted({state["host"], "127.0.0.1", "localhost"})
        for node in state["nodes"]:
            creds.issue(node["name"], hosts)
    else:
        _err("INSECURE: plain HTTP, no authentication (--insecure)")
    started = []
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for node in state["nodes"]:
        if pid_alive(node.get("pid"), node["data_dir"]):
            continue
        proc = start_node(node, state, directory)
        node["pid"] = proc.pid
        procs[node["name"]] = proc
        started.append(node)
    save_state(directory, state)
    urls = [n["client_url"] for n in state["nodes"]]
    try:
        leader = wait_for_leader(urls, args.timeout, procs, Access(directory, state))
    except NodeExited as exc:
        node = next(n for n in state["nodes"] if n["name"] == exc.name)
        _err(
            f"{exc}; the end of {log_path(directory, node)}:\n{log_tail(log_path(directory, node))}"
        )
        _err("stopping the nodes this command started")
        _stop(started)
        save_state(directory, state)
        return 1
    if leader is None:
        _err(f"no leader within {args.timeout}s; logs are in {directory}; stopping")
        _stop(started)
        save_state(directory, state)
        return 1
    for url in urls:
        if not _out(url):
            break
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    state = load_state(directory)
    if state is None:
        _err(f"no local cluster in {directory}")
        return 1
    access = Access(directory, state)
    for node in state["nodes"]:
        st = get_status(node["client_url"], access)
        if st is None:
            running = pid_alive(node.get("pid"), node["data_dir"])
            line = f"{node['name']} {node['client_url']} {'unreachable' if running else 'down'} - -"
        else:
            leader = (st.get("leader") or {}).get("name") or "-"
            line = f"{node['name']} {node['client_url']} {st['role']} {st['term']} {leader}"
        if not _out(line):
            break  # nobody reads the rest: don't wait for more status calls either
    return 0


def env_lines(directory: Path, state: dict[str, Any]) -> list[str]:
    """`export` lines for a POSIX shell: the endpoints and, when secure, the CA and
    the admin token (also in the 0600 file `credentials/admin.token`)."""
    lines = [
        "export RAFTKV_ENDPOINTS=" + shlex.quote(",".join(n["client_url"] for n in state["nodes"]))
    ]
    if state.get("secure"):
        creds = credentials(directory)
        lines += [
            "export RAFTKV_CACERT=" + shlex.quote(str(creds.ca_file)),
            "export RAFTKV_TOKEN=" + shlex.quote(creds.admin_token()),
        ]
    else:
        lines += ["unset RAFTKV_CACERT RAFTKV_TOKEN RAFTKV_TOKEN_FILE"]
    return lines


def cmd_env(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    state = load_state(directory)
    if state is None:
        _err(f"no local cluster in {directory}")
        return 1
    for line in env_lines(directory, state):
        if not _out(line):
            break
    return 0


def _stop(nodes: list[dict[str, Any]], grace: float = 10.0) -> None:
    alive = [n for n in nodes if pid_alive(n.get("pid"), n["data_dir"])]
    for n in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(n["pid"], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        for n in list(alive):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(n["pid"], os.WNOHANG)  # reap if it is our child
            if not pid_alive(n["pid"], n["data_dir"]) or _is_zombie(n["pid"]):
                alive.remove(n)
        time.sleep(0.05)
    for n in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(n["pid"], signal.SIGKILL)
    for n in nodes:
        n["pid"] = None


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def cmd_down(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    state = load_state(directory)
    if state is None:
        _err(f"no local cluster in {directory}")
        return 1
    _stop(state["nodes"])
    if args.purge:
        shutil.rmtree(directory)
    else:
        save_state(directory, state)
    return 0

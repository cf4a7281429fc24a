"""`make demo`: a real 3-node cluster on 127.0.0.1, end to end.

Starts the cluster with `raftkv local up` (TLS and authentication: it uses the
CA and the admin token `raftkv local env` prints, and shows that a request
without the token is refused), writes keys, takes a lock (showing
its fencing token), kills the leader with SIGKILL, shows the new leader and
that every acknowledged write survived, brings the old leader back, takes a
checkpoint and shows its manifest on every member (identical sha256), then
stops everything it started (`raftkv local down --purge`), even on failure.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


class Credentials:
    """The CA to trust and the token to send (from `raftkv local env`)."""

    context: ssl.SSLContext | None = None
    headers: dict[str, str] = {}


def http(
    method: str,
    url: str,
    body: bytes | dict[str, Any] | None = None,
    timeout: float = 10.0,
    *,
    anonymous: bool = False,
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(
        url, data=data, method=method, headers={} if anonymous else Credentials.headers
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=Credentials.context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def status(url: str) -> dict[str, Any] | None:
    try:
        code, raw = http("GET", url + "/v1/status", timeout=2)
    except OSError:
        return None
    return json.loads(raw) if code == 200 else None


def wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"demo: timed out waiting for {what}")


def leader_of(urls: list[str]) -> dict[str, Any] | None:
    for url in urls:
        st = status(url)
        if st and st["leader"] and st["leader"]["client_url"] in urls:
            return st["leader"]
    return None


def raftkv(*args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        [sys.executable, "-m", "raftkv.cli", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout


def exports(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            out[name] = shlex.split(value)[0]
    return out


def run(directory: str) -> None:
    say("starting a 3-node cluster: raftkv local up --nodes 3")
    urls = raftkv("local", "up", "--nodes", "3", "--dir", directory).split()
    for url in urls:
        print("  ", url)
    say("secure by default: TLS with the cluster's own CA, and an admin token")
    env_text = raftkv("local", "env", "--dir", directory)
    variables = exports(env_text)
    for line in env_text.splitlines():
        print("  ", line if "TOKEN" not in line else line.split("=")[0] + "=rkv_...")
    Credentials.context = ssl.create_default_context(cafile=variables["RAFTKV_CACERT"])
    Credentials.headers = {"Authorization": f"Bearer {variables['RAFTKV_TOKEN']}"}
    code, raw = http("PUT", f"{urls[0]}/v1/kv/demo/anonymous", b"x", anonymous=True)
    print(f"   without the token: {code} {json.loads(raw)['error']}")
    shell = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKV_")}
    shell.update(variables)
    raftkv("put", "demo/greeting", "hello", env=shell)
    print(
        "   with it: raftkv put demo/greeting hello; raftkv get demo/greeting ->",
        raftkv("get", "demo/greeting", env=shell).strip(),
    )
    print(raftkv("local", "status", "--dir", directory), end="")
    leader = wait_for("a leader", lambda: leader_of(urls))
    print(f"   leader: {leader['name']} at {leader['client_url']}")

    say("writing 200 keys through all members (followers forward to the leader)")
    acked: dict[str, bytes] = {}
    for i in range(200):
        key, value = f"demo/key-{i:03d}", f"value-{i}".encode()
        code, raw = http("PUT", f"{urls[i % 3]}/v1/kv/{key}", value)
        if code == 200:
            acked[key] = value
    print(f"   {len(acked)} writes acknowledged, last revision {json.loads(raw)['revision']}")

    say("taking a lock with a lease: the answer carries the fencing token")
    code, raw = http("POST", f"{urls[0]}/v1/leases", {"ttl": 30})
    lease = json.loads(raw)["id"]
    code, raw = http("POST", f"{urls[1]}/v1/locks/demo-lock", {"lease": lease})
    lock = json.loads(raw)
    print(f"   lease {lease} holds demo-lock with fencing token {lock['token']}")
    other = json.loads(http("POST", f"{urls[2]}/v1/leases", {"ttl": 30})[1])["id"]
    code, raw = http("POST", f"{urls[2]}/v1/locks/demo-lock?wait=0", {"lease": other})
    print(f"   a second lease trying it without waiting gets {code}: {json.loads(raw)['error']}")

    say(f"killing the leader {leader['name']} with SIGKILL")
    with open(os.path.join(directory, "cluster.json")) as f:
        state = json.load(f)
    victim = next(n for n in state["nodes"] if n["client_url"] == leader["client_url"])
    os.kill(victim["pid"], signal.SIGKILL)
    survivors = [u for u in urls if u != leader["client_url"]]
    started = time.monotonic()
    new = wait_for(
        "a new leader",
        lambda: (lambda ld: ld if ld and ld["client_url"] in survivors else None)(
            leader_of(survivors)
        ),
    )
    print(f"   new leader: {new['name']} after {time.monotonic() - started:.2f}s")

    say("checking every acknowledged write on the new leader (linearizable reads)")
    lost = [
        k for k, v in acked.items() if http("GET", f"{new['client_url']}/v1/kv/{k}") != (200, v)
    ]
    print(f"   {len(acked) - len(lost)}/{len(acked)} present, {len(lost)} lost")
    if lost:
        raise SystemExit(f"demo: acknowledged writes lost: {lost[:5]}")
    code, raw = http("POST", f"{new['client_url']}/v1/locks/demo-lock?wait=0", {"lease": other})
    print(f"   the lock survived the failover: still held ({code} {json.loads(raw).get('error')})")

    say(f"restarting {victim['name']}; it rejoins as a follower")
    raftkv("local", "up", "--nodes", "3", "--dir", directory)
    print(raftkv("local", "status", "--dir", directory), end="")

    say("taking a checkpoint: a log entry every member applies")
    code, raw = http(
        "POST", f"{survivors[0]}/v1/checkpoints", {"id": "demo-checkpoint"}, timeout=60
    )
    if code != 200:
        raise SystemExit(f"demo: checkpoint failed: {code} {raw!r}")
    manifest = json.loads(raw)
    print(f"   index {manifest['index']}, {manifest['size']} bytes, members {manifest['members']}")

    def on_every_member() -> list[dict[str, Any]] | None:
        found = []
        for url in urls:
            code, raw = http("GET", f"{url}/v1/checkpoints/demo-checkpoint")
            if code != 200:
                return None
            found.append(json.loads(raw))
        return found

    manifests = wait_for("the checkpoint on every member", on_every_member)
    for url, m in zip(urls, manifests, strict=True):
        print(f"   {url}  index {m['index']}  sha256 {m['sha256']}")
    if len({m["sha256"] for m in manifests}) != 1:
        raise SystemExit("demo: checkpoints differ between members")
    print("   identical on every member")


def main() -> int:
    directory = tempfile.mkdtemp(prefix="raftkv-demo-")
    try:
        run(directory)
    finally:
        # Stop first, then say so: with stdout gone (`make demo | head`) the print
        # raises BrokenPipeError, and the nodes must not outlive the demo.
        subprocess.run(
            [sys.executable, "-m", "raftkv.cli", "local", "down", "--purge", "--dir", directory],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        say("stopped everything: raftkv local down --purge")
    print("\ndemo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())

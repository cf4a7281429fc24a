"""Pod shim: loaded (through PYTHONPATH) by every Python process the emulated kubelet starts.

It gives the process two things a pod has and a host process lacks:
- cluster DNS: `socket.getaddrinfo` resolves `<pod>.<svc>.<ns>.svc`, `<svc>.<ns>.svc` (with
  or without `.cluster.local`, and the short names of the pod's namespace) from the JSON
  hosts file the harness keeps current ($K8S_EMULATOR_HOSTS);
- its own network namespace, approximately: binding the IPv4 wildcard address (0.0.0.0 or '')
  binds the pod IP ($K8S_EMULATOR_POD_IP) instead, so two pods can listen on the same port.

Programs that resolve or bind outside Python's socket module (uvloop, C extensions) are not
covered; `raftkv serve` gets its addresses through RAFTKV_LISTEN_HOST/RAFTKV_RESOLVE instead.
"""

import json
import os
import socket

_POD_IP = os.environ.get("K8S_EMULATOR_POD_IP", "")
_HOSTS = os.environ.get("K8S_EMULATOR_HOSTS", "")
_NAMESPACE = os.environ.get("K8S_EMULATOR_NAMESPACE", "")
_cache = {"mtime": -1.0, "records": {}}
_real_getaddrinfo = socket.getaddrinfo
_real_gethostbyname = socket.gethostbyname
_real_gethostbyname_ex = socket.gethostbyname_ex
_real_bind = socket.socket.bind


def _records():
    try:
        mtime = os.stat(_HOSTS).st_mtime
    except OSError:
        return {}
    if mtime != _cache["mtime"]:
        try:
            with open(_HOSTS) as f:
                _cache["records"] = json.load(f)
            _cache["mtime"] = mtime
        except (OSError, ValueError):
            pass
    return _cache["records"]


def _lookup(host):
    name = host.rstrip(".").lower()
    if name.endswith(".cluster.local"):
        name = name[: -len(".cluster.local")]
    records = _records()
    candidates = [name]
    if _NAMESPACE and not name.endswith(".svc"):
        candidates += [f"{name}.{_NAMESPACE}.svc", f"{name}.svc"]
    for candidate in candidates:
        if candidate in records:
            return records[candidate]
    return None


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    if (
        _POD_IP
        and host in (None, "", "0.0.0.0")
        and flags & socket.AI_PASSIVE
        and family in (0, socket.AF_INET, socket.AF_UNSPEC)
    ):
        host, family = _POD_IP, socket.AF_INET
    elif isinstance(host, str) and family in (0, socket.AF_INET, socket.AF_UNSPEC):
        ips = _lookup(host)
        if ips:
            out = []
            for ip in ips:
                out.extend(_real_getaddrinfo(ip, port, socket.AF_INET, type, proto, flags))
            return out
    return _real_getaddrinfo(host, port, family, type, proto, flags)


def gethostbyname(host):
    ips = _lookup(host) if isinstance(host, str) else None
    return ips[0] if ips else _real_gethostbyname(host)


def gethostbyname_ex(host):
    ips = _lookup(host) if isinstance(host, str) else None
    return (host, [], list(ips)) if ips else _real_gethostbyname_ex(host)


def bind(self, address):
    if (
        _POD_IP
        and self.family == socket.AF_INET
        and isinstance(address, tuple)
        and address[0] in ("", "0.0.0.0")
    ):
        address = (_POD_IP, *address[1:])
    return _real_bind(self, address)


if os.environ.get("K8S_EMULATOR_NO_UVLOOP") == "1":
    # uvloop resolves names in C, past this shim: keep it out (the stock loop is used).
    import sys

    sys.modules["uvloop"] = None  # type: ignore[assignment]

if _HOSTS or _POD_IP:
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex
    socket.socket.bind = bind  # type: ignore[method-assign]

"""The API server as pods see it: HTTPS with a cluster CA, and service account tokens.

kmock serves plain HTTP on 127.0.0.1, which is what the operator under test (in this
process, with a kubeconfig) uses. Pods reach the API server the in-cluster way: HTTPS at
`$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, checked against the cluster CA, with
the service account token the kubelet mounts. `ApiTlsFront` terminates TLS (a certificate
for 127.0.0.1 and `kubernetes.default.svc`, from a CA made per cluster) and forwards the
bytes to kmock, so a node's client talks real, verified TLS and needs no insecure switch.

Tokens (`service_account_token`) name the pod's namespace and account; the API server
authorizes requests carrying one against the namespace's Roles (harness/rbac.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

from raftkv.security.pki import issue_cert, make_ca
from tests.k8s.harness.endpoints import relay

TOKEN_PREFIX = "emulated-serviceaccount:"
KUBERNETES_SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


def service_account_token(namespace: str, account: str) -> str:
    return f"{TOKEN_PREFIX}{namespace}:{account}"


def token_subject(authorization: str) -> tuple[str, str] | None:
    """(namespace, account) of a service account bearer token; None for other callers (the
    test process and the operator: admin, as RBAC is not emulated for them)."""
    token = authorization.removeprefix("Bearer ").strip()
    if not token.startswith(TOKEN_PREFIX):
        return None
    namespace, sep, account = token[len(TOKEN_PREFIX) :].partition(":")
    return (namespace, account) if sep and namespace and account else ("", "")


class ApiTlsFront:
    """A TLS terminator in front of the emulated API server (one per cluster)."""

    def __init__(self, directory: Path, backend: tuple[str, int]) -> None:
        self.directory = directory
        self.backend = backend
        self.ca_file = directory / "ca.crt"
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    async def __aenter__(self) -> ApiTlsFront:
        self.directory.mkdir(parents=True, exist_ok=True)
        ca = make_ca("emulated cluster CA")
        cert = issue_cert(
            ca,
            "kube-apiserver",
            dns_names=KUBERNETES_SERVICE_NAMES,
            ip_addresses=[self.host],
            client=False,
        )
        cert.write(self.directory / "apiserver.crt", self.directory / "apiserver.key")
        self.ca_file.write_bytes(ca.cert_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.directory / "apiserver.crt", self.directory / "apiserver.key")
        self._server = await asyncio.start_server(self._accept, self.host, 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            await relay(reader, writer, *self.backend)
        finally:
            self._pipes.discard(task)

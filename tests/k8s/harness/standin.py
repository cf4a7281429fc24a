"""A small stand-in for a pod's server process (stdlib only, starts in ~50 ms).

    python standin.py --port 8080 [--host 0.0.0.0] [--data-dir DIR] [--ignore-sigterm]

GET /healthz -> 200; GET /readyz -> 200, or 503 while <data-dir>/not-ready exists;
GET /whoami -> JSON {hostname, pid, host, port, argv, env (K8S_*/RAFTKV_*/TEST_*)};
each start appends "<hostname> <pid>" to <data-dir>/starts. SIGTERM exits 0 unless
--ignore-sigterm (then only SIGKILL stops it).
"""

import argparse
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--ignore-sigterm", action="store_true")
    args = parser.parse_args()
    hostname = os.environ.get("HOSTNAME", "")
    if args.data_dir:
        os.makedirs(args.data_dir, exist_ok=True)
        with open(os.path.join(args.data_dir, "starts"), "a") as f:
            f.write(f"{hostname} {os.getpid()}\n")

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/healthz":
                self._send(200, {"ok": True})
            elif self.path == "/readyz":
                blocked = args.data_dir and os.path.exists(os.path.join(args.data_dir, "not-ready"))
                self._send(503 if blocked else 200, {"ready": not blocked})
            elif self.path == "/whoami":
                env = {
                    k: v
                    for k, v in os.environ.items()
                    if k.startswith(("K8S_", "RAFTKV_", "TEST_"))
                }
                address: Any = self.server.server_address
                host, port = address[0], address[1]
                self._send(
                    200,
                    {
                        "hostname": hostname,
                        "pid": os.getpid(),
                        "host": host,
                        "port": port,
                        "argv": sys.argv[1:],
                        "env": env,
                        "cwd": os.getcwd(),
                    },
                )
            else:
                self._send(404, {"error": "not_found"})

        def log_message(self, format: str, *fmt_args: object) -> None:
            pass

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"standin listening on {server.server_address}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

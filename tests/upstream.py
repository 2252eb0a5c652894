"""A real HTTP server on loopback that tests control: it stands in for an upstream
service where a test needs behaviour no real service has on demand (slowness,
chosen status codes, a huge body, a changing schema) and records every request
it receives, so a test can see exactly what the gateway sent.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    peer_port: int  # tells the client's connections apart


@dataclass
class ControlledUpstream:
    """Answers:

    - ``/api/<svc>/status/<code>/``: that status (and a JSON body);
    - ``/api/<svc>/slow/``: after ``delay`` seconds;
    - ``/api/<svc>/big/``: ``big_size`` bytes, chunked;
    - ``/api/<svc>/<id>/``: ``documents[id]``, or 404 under ``/api/orders/``;
    - ``/api/schema/``: ``schema``;
    - anything else: an echo of the request as JSON (``status_by_method`` may override).
    """

    delay: float = 0.0
    big_size: int = 5 * 1024 * 1024
    schema: dict[str, Any] = field(default_factory=lambda: {"openapi": "3.0.3", "paths": {}})
    documents: dict[str, Any] = field(default_factory=dict)
    status_by_method: dict[str, int] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"

    def count(self, method: str, path_prefix: str) -> int:
        return sum(
            1 for r in self.received if r.method == method and r.target.startswith(path_prefix)
        )

    def start(self) -> ControlledUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Upstream", "controlled")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                upstream.received.append(
                    Received(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        self.client_address[1],
                    )
                )
                path = urlsplit(self.path).path
                parts = [p for p in path.split("/") if p]
                if path == "/api/schema/":
                    self._reply(200, json.dumps(upstream.schema).encode())
                elif len(parts) >= 4 and parts[2] == "status":
                    self._reply(int(parts[3]), json.dumps({"status": int(parts[3])}).encode())
                elif len(parts) >= 3 and parts[2] == "slow":
                    time.sleep(upstream.delay)
                    self._reply(200, b'{"slow": true}')
                elif len(parts) >= 3 and parts[2] == "big":
                    self._stream_big()
                elif len(parts) == 3 and parts[2] in upstream.documents:
                    self._reply(200, json.dumps(upstream.documents[parts[2]]).encode())
                elif len(parts) == 3 and parts[1] == "orders":
                    self._reply(
                        404, b'{"code": "not_found"}', {"Content-Type": "application/problem+json"}
                    )
                else:
                    echo = {
                        "method": self.command,
                        "target": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body.decode("latin-1"),
                    }
                    status = upstream.status_by_method.get(self.command, 200)
                    self._reply(status, json.dumps(echo).encode(), {"X-Echo": "yes"})

            def _stream_big(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"x" * 65536
                remaining = upstream.big_size
                while remaining > 0:
                    piece = chunk[: min(len(chunk), remaining)]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    remaining -= len(piece)
                self.wfile.write(b"0\r\n\r\n")

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

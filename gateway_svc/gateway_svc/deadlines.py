"""Deadlines for reading a request: slow or stalled clients cannot hold the gateway.

uvicorn closes idle keep-alive connections, but once a client has sent a byte of a
request it waits for the rest for as long as the client likes (a "slowloris" client
trickles one header line a minute), and gunicorn's worker timeout does not apply to
async workers. This protocol, uvicorn's own httptools protocol with two timers, gives

- the request head (from the connection's first byte, or its opening, to the end of
  the headers) ``GATEWAY_REQUEST_HEAD_TIMEOUT`` seconds (default 10), and
- the body (from the end of the headers to its last byte)
  ``GATEWAY_REQUEST_BODY_TIMEOUT`` seconds (default 30).

Past either, the client gets a 408 problem details answer (or, once an answer has
begun, just the closed connection) and the connection is closed. Hand-written
because neither uvicorn nor gunicorn offers it; the hooks are uvicorn's protocol
callbacks, so parsing and everything else stays uvicorn's.
"""

from __future__ import annotations

import asyncio
import json

import environ
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_env = environ.Env()
HEAD_TIMEOUT = _env.float("GATEWAY_REQUEST_HEAD_TIMEOUT", default=10.0)
BODY_TIMEOUT = _env.float("GATEWAY_REQUEST_BODY_TIMEOUT", default=30.0)


def timeout_answer(detail: str) -> bytes:
    body = json.dumps(
        {
            "type": "https://errors.eshop.example/request-timeout",
            "title": "The request took too long to arrive.",
            "status": 408,
            "detail": detail,
            "code": "request_timeout",
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class ReadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with a deadline for the request head and one for the body."""

    head_timeout = HEAD_TIMEOUT
    body_timeout = BODY_TIMEOUT

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout, "The request head was not complete in time.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a further request on a kept-alive connection
            self._arm(self.head_timeout, "The request head was not complete in time.")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout, "The request body was not complete in time.")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, detail: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, detail)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, detail: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle  # the current request's, or the last one's on a kept-alive connection
        answering = cycle is not None and cycle.response_started and not cycle.response_complete
        if not answering:
            self.transport.write(timeout_answer(detail))
        self.transport.close()

"""The proxy's HTTP/1.1 client to upstreams: keep-alive connections on asyncio and httptools.

Chosen by measurement (bench/README.md, `make bench-gateway`). aiohttp's client costs about 80 µs
of CPU per request under load and this one about 13 µs. A request through the
gateway then costs 0.40 to 0.50 ms of CPU instead of 0.63 to 0.75 ms at half the
direct rate. On cores shared with the upstream, that CPU is what the gateway
adds to latency: measured round by round, +0.7 to +2.1 ms over direct instead
of +2 to +27 ms. It does only what a proxy needs:

- requests are written in one piece (the gateway reads bodies whole, up to its limit);
- answers are parsed by httptools (llhttp, also under uvicorn). Bodies of any
  framing (length, chunked, until close) are read whole or streamed with flow
  control;
- connections are kept alive per upstream address and reused most recent first,
  as nginx does. They are closed when idle for ``keepalive_timeout``, after
  ``max_requests`` requests or once ``max_age`` seconds old. The last two let a
  Kubernetes Service, or ports shared through SO_REUSEPORT, spread them afresh:
  a pool that lived forever would keep the split it had when it filled;
- connect and read timeouts (the read timeout counts from the last byte received);
- a reused connection that the upstream closed while it sat idle is replaced
  once for an idempotent request, before any answer byte, as HTTP clients do.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable

import httptools

from proxy.routes import IDEMPOTENT_METHODS

# Stop reading from an upstream while this much of its body waits to be relayed.
_HIGH_WATER = 256 * 1024


class ClientError(Exception):
    """The upstream could not be reached or broke off its answer."""


class ConnectError(ClientError):
    pass


class ConnectTimeout(ConnectError):
    pass


class ReadTimeout(ClientError):
    pass


class Disconnected(ClientError):
    pass


def should_retire(
    requests: int, born: float, now: float, *, max_requests: int, max_age: float
) -> bool:
    """Whether a connection has carried its quota of requests or lived long enough (0: no limit)."""
    return bool(max_requests and requests >= max_requests) or bool(
        max_age and now - born >= max_age
    )


class _Connection(asyncio.Protocol):
    def __init__(self, read_timeout: float) -> None:
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.born = time.monotonic()
        self.idle_since = self.born
        self.requests = 0
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.head: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.error: ClientError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self._arm_timer()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(Disconnected(f"The upstream sent an invalid answer: {error}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.complete:
            return
        framed = self.head is not None and self.head.done() and not self.head.exception()
        if framed and self._until_close():
            self.complete = True  # a body without length ends with the connection
            self._wake()
        else:
            self._fail(Disconnected("The upstream closed the connection before its answer ended."))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers = []
            return
        # Only valid inside the parser's callbacks: llhttp forgets it once the answer ends.
        self.keep_alive = self.parser.should_keep_alive()
        if self.head is not None and not self.head.done():
            self.head.set_result((status, self.headers))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.head is None or not self.head.done():
            return  # the end of an interim answer
        self.complete = True
        if self.timer is not None:
            self.timer.cancel()
        self._wake()

    # the exchange

    def send(self, data: bytes) -> asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]]:
        self._reset()
        self.requests += 1
        self.head = asyncio.get_running_loop().create_future()
        if self.transport is None:
            raise Disconnected("The connection is not open.")
        self.transport.write(data)
        self._arm_timer()
        return self.head

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if self.complete:
                return None
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.buffered <= _HIGH_WATER // 2 and self.transport is not None and not self.closed:
            self.transport.resume_reading()
        return chunk

    def reusable(self) -> bool:
        return self.complete and not self.closed and self.keep_alive

    def abort(self) -> None:
        """Drop the connection at once (its state is unknown or broken)."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close an idle connection politely."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _until_close(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _arm_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.complete and self.head is not None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.read_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._fail(ReadTimeout(f"No byte from the upstream for {self.read_timeout:g} s."))
        self.abort()

    def _fail(self, error: ClientError) -> None:
        if self.error is None:
            self.error = error
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class Response:
    """An upstream's answer: status and headers at once, the body read whole or streamed."""

    def __init__(
        self,
        status: int,
        raw_headers: list[tuple[bytes, bytes]],
        connection: _Connection,
        release: Callable[[_Connection], None],
        *,
        has_body: bool,
    ) -> None:
        self.status = status
        self.raw_headers = raw_headers
        self._connection: _Connection | None = connection
        self._release = release
        self._has_body = has_body

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.raw_headers:
            if key.lower() == name:
                return value
        return None

    @property
    def content_length(self) -> int | None:
        value = self.header(b"content-length")
        return int(value) if value is not None and value.isdigit() else None

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None or not self._has_body:
            return
        while (chunk := await connection.next_chunk()) is not None:
            yield chunk

    def release(self) -> None:
        """Give the connection back (or close it, unless its answer was read to the end)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._release(connection)


class UpstreamClient:
    def __init__(
        self,
        *,
        keepalive_timeout: float = 30.0,
        max_requests: int = 0,
        max_age: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keepalive_timeout = keepalive_timeout
        self.max_requests = max_requests
        self.max_age = max_age
        self._clock = clock
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def request(
        self,
        method: str,
        host: str,
        port: int,
        target: bytes,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> Response:
        """Send one request and return once the answer's head is in."""
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 in brackets
        lines = [f"{method} ".encode(), target, f" HTTP/1.1\r\nHost: {authority}\r\n".encode()]
        lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}\r\n".encode())
        lines += [b"\r\n", body]
        data = b"".join(lines)
        key = (host, port)
        idempotent = method in IDEMPOTENT_METHODS
        fresh_only = False
        while True:
            connection, reused = (None if fresh_only else self._pooled(key)), True
            if connection is None:
                connection, reused = await self._connect(host, port, connect_timeout), False
            connection.read_timeout = read_timeout
            try:
                status, raw_headers = await connection.send(data)
            except Disconnected:
                # Closed by the upstream while idle: nothing was answered, try a fresh one.
                if reused and idempotent and not connection.got_bytes:
                    fresh_only = True
                    continue
                raise
            except BaseException:  # a timeout, or the caller cancelled: the exchange is lost
                connection.abort()
                raise
            has_body = method != "HEAD" and status not in (204, 304)
            if not has_body:
                connection.complete = True
                if method == "HEAD":
                    connection.abort()  # httptools cannot be told a HEAD answer has no body
            return Response(
                status,
                raw_headers,
                connection,
                lambda done, key=key: self._give_back(key, done),
                has_body=has_body,
            )

    def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _pooled(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = self._clock()
        while idle:
            connection = idle.pop()  # most recently used first
            if connection.closed or now - connection.idle_since > self.keepalive_timeout:
                connection.close()
                continue
            return connection
        return None

    async def _connect(self, host: str, port: int, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(timeout), host, port), timeout
            )
        except TimeoutError as error:
            raise ConnectTimeout(f"Connecting to {host}:{port} timed out.") from error
        except OSError as error:
            raise ConnectError(f"Connecting to {host}:{port} failed: {error}") from error
        connection.born = self._clock()
        return connection

    def _give_back(self, key: tuple[str, int], connection: _Connection) -> None:
        now = self._clock()
        if not connection.reusable():
            connection.abort()
            return
        if should_retire(
            connection.requests,
            connection.born,
            now,
            max_requests=self.max_requests,
            max_age=self.max_age,
        ):
            connection.close()
            return
        connection.idle_since = now
        self._idle.setdefault(key, []).append(connection)

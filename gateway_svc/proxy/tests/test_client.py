"""The proxy's HTTP client against real HTTP servers on loopback, scripted per test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from proxy import client
from proxy.client import UpstreamClient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request's head and body, or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


def answer(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status.encode(),
        len(body),
        extra,
        body,
    )


async def run(handler: Handler, scenario: Callable[[int, list[int]], Awaitable[None]]) -> None:
    """Serve ``handler`` on a free port and run ``scenario(port, connections)``.

    ``connections`` grows by one per accepted connection (its number), so a test
    can tell how many the client opened.
    """
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        try:
            await handler(reader, writer, len(connections))
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await scenario(port, connections)


async def keep_alive_echo(reader, writer, number):
    while (request := await read_request(reader)) is not None:
        head, body = request
        writer.write(answer(b"conn %d: " % number + head.split(b" ")[1] + b" " + body))
        await writer.drain()


def get(http: UpstreamClient, port: int, target: bytes = b"/", method: str = "GET", body=b""):
    return http.request(
        method, "127.0.0.1", port, target, [], body, connect_timeout=1, read_timeout=1
    )


def test_connections_are_kept_alive_and_reused():
    async def scenario(port, connections):
        http = UpstreamClient()
        for target in (b"/a", b"/b"):
            response = await get(http, port, target)
            assert await response.read() == b"conn 1: " + target + b" "
            response.release()
        posted = await get(http, port, b"/c", method="POST", body=b"payload")
        assert await posted.read() == b"conn 1: /c payload"
        posted.release()
        assert connections == [1]
        http.close()

    asyncio.run(run(keep_alive_echo, scenario))


def test_a_connection_is_retired_after_its_quota():
    async def scenario(port, connections):
        http = UpstreamClient(max_requests=2)
        for _ in range(5):
            response = await get(http, port)
            await response.read()
            response.release()
        assert connections == [1, 2, 3]
        http.close()

    asyncio.run(run(keep_alive_echo, scenario))


def test_an_answer_without_length_ends_with_the_connection():
    async def until_close(reader, writer, number):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it, ")
        await writer.drain()
        writer.write(b"until the end")
        await writer.drain()

    async def scenario(port, connections):
        http = UpstreamClient()
        response = await get(http, port)
        assert await response.read() == b"all of it, until the end"
        response.release()
        second = await get(http, port)  # the closed connection is not reused
        assert await second.read() == b"all of it, until the end"
        assert connections == [1, 2]

    asyncio.run(run(until_close, scenario))


def test_a_large_chunked_answer_streams_whole():
    piece = bytes(range(256)) * 256  # 64 KiB
    pieces = 40

    async def chunked(reader, writer, number):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(pieces):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await read_request(reader)  # keeps the connection open until the client is done

    async def scenario(port, connections):
        http = UpstreamClient()
        response = await get(http, port)
        assert response.content_length is None
        received = bytearray()
        async for chunk in response.iter_chunks():
            received += chunk
            await asyncio.sleep(0.001)  # a slow reader: the client pauses, it does not buffer all
            # Paused at the mark: at most one socket read (256 KiB) past it, never the whole body.
            assert response._connection.buffered <= 2 * client._HIGH_WATER
        assert received == piece * pieces
        response.release()
        http.close()

    asyncio.run(run(chunked, scenario))


def test_head_and_no_content_answers_have_no_body():
    async def bodiless(reader, writer, number):
        while (request := await read_request(reader)) is not None:
            if request[0].startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    async def scenario(port, connections):
        http = UpstreamClient()
        head = await get(http, port, method="HEAD")
        assert head.status == 200
        assert await head.read() == b""
        head.release()
        empty = await get(http, port, method="DELETE")
        assert empty.status == 204
        assert await empty.read() == b""
        empty.release()
        again = await get(http, port, method="DELETE")  # after a 204 the connection is reused
        assert again.status == 204
        again.release()
        assert connections == [1, 2]  # a HEAD answer's connection is not
        http.close()

    asyncio.run(run(bodiless, scenario))


def test_an_interim_answer_is_skipped():
    async def continues(reader, writer, number):
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"final"))
        await writer.drain()
        await read_request(reader)

    async def scenario(port, connections):
        http = UpstreamClient()
        response = await get(http, port, method="POST", body=b"x")
        assert response.status == 200
        assert await response.read() == b"final"
        response.release()  # unreleased, it stays open: Python 3.12+ servers wait for it
        http.close()

    asyncio.run(run(continues, scenario))


async def drops_the_second_request(reader, writer, number):
    """Answers once per connection; a second request on it finds the connection closing,
    as when an upstream ends an idle keep-alive connection just as a request arrives."""
    if await read_request(reader) is not None:
        writer.write(answer(b"answered on %d" % number))
        await writer.drain()
        await read_request(reader)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_reused_connection_that_drops_the_request_is_replaced_only_for_idempotent_ones(method):
    async def scenario(port, connections):
        http = UpstreamClient()
        first = await get(http, port)
        assert await first.read() == b"answered on 1"
        first.release()
        if method == "GET":
            again = await get(http, port)
            assert await again.read() == b"answered on 2"
            again.release()
            assert connections == [1, 2]
        else:  # the upstream may have acted on it: never sent twice
            with pytest.raises(client.Disconnected):
                await get(http, port, method="POST", body=b"x")
            assert connections == [1]
        http.close()

    asyncio.run(run(drops_the_second_request, scenario))


def test_a_silent_upstream_times_out_on_read():
    async def silent(reader, writer, number):
        await read_request(reader)
        await asyncio.sleep(3)

    async def scenario(port, connections):
        http = UpstreamClient()
        started = time.monotonic()
        with pytest.raises(client.ReadTimeout):
            await http.request(
                "GET", "127.0.0.1", port, b"/", [], b"", connect_timeout=1, read_timeout=0.3
            )
        assert 0.25 < time.monotonic() - started < 1.5

    asyncio.run(run(silent, scenario))


def test_a_closed_port_is_a_connect_error():
    async def scenario():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(client.ConnectError):
            await get(UpstreamClient(), port)

    asyncio.run(scenario())

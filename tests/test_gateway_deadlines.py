"""Slow or stalled clients get a deadline at the gateway (gateway_svc.deadlines): 408 and
a closed connection, while every other client is served as usual."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.harness import RunningService, ServiceLauncher

pytestmark = pytest.mark.system

HEAD_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0


def start_gateway(launcher: ServiceLauncher, head_timeout: float) -> RunningService:
    return launcher.start(
        "gateway",
        env={
            "GATEWAY_REQUEST_HEAD_TIMEOUT": str(head_timeout),
            "GATEWAY_REQUEST_BODY_TIMEOUT": str(BODY_TIMEOUT),
        },
    )


@pytest.fixture(scope="module")
def gateway(module_services: ServiceLauncher) -> RunningService:
    return start_gateway(module_services, HEAD_TIMEOUT)


def connect(gateway: RunningService) -> socket.socket:
    host, port = gateway.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=15)


def answer_of(connection: socket.socket) -> tuple[bytes, float]:
    """Everything the gateway sends until it closes the connection, and when it closed."""
    raw = b""
    while chunk := connection.recv(65536):
        raw += chunk
    return raw, time.monotonic()


def problem(raw: bytes) -> tuple[bytes, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


def test_a_request_head_that_stalls_gets_408_and_a_closed_connection(gateway):
    with connect(gateway) as connection:
        started = time.monotonic()
        connection.sendall(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: shop\r\n")  # no end
        raw, closed = answer_of(connection)

    status, body = problem(raw)
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert (body["status"], body["code"]) == (408, "request_timeout")
    assert "head" in body["detail"]
    assert closed - started >= HEAD_TIMEOUT * 0.9


def test_a_connection_that_sends_nothing_is_closed(gateway):
    with connect(gateway) as connection:
        started = time.monotonic()
        raw, closed = answer_of(connection)

    assert problem(raw)[0] == b"HTTP/1.1 408 Request Timeout"
    assert closed - started >= HEAD_TIMEOUT * 0.9


def test_a_body_that_stalls_gets_408(gateway):
    with connect(gateway) as connection:
        connection.sendall(
            b"POST /api/auth/token/ HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"email": "'
        )
        started = time.monotonic()
        raw, closed = answer_of(connection)

    status, body = problem(raw)
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert "body" in body["detail"]
    assert closed - started >= BODY_TIMEOUT * 0.9


def test_a_request_that_arrives_in_pieces_within_its_deadlines_is_served(gateway):
    with connect(gateway) as connection:
        connection.sendall(b"GET /.well-known/jwks.json HTTP/1.1\r\n")
        time.sleep(0.2)  # a slow but honest client, well inside the deadline
        connection.sendall(b"Host: shop\r\nConnection: close\r\n\r\n")
        raw, _ = answer_of(connection)

    assert raw.startswith(b"HTTP/1.1 200")


def test_stalled_clients_do_not_hold_the_gateway_for_others(services):
    # A deadline far off: the stalled clients are all still waiting when the other is served.
    gateway = start_gateway(services, head_timeout=60)
    stalled = [connect(gateway) for _ in range(50)]
    try:
        for connection in stalled:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: shop\r\n")
        response = httpx.get(f"{gateway.url}/.well-known/jwks.json", timeout=30)
        unanswered = 0
        for connection in stalled:
            connection.setblocking(False)
            try:
                connection.recv(1)
            except BlockingIOError:
                unanswered += 1
    finally:
        for connection in stalled:
            connection.close()

    assert response.status_code == 200
    assert unanswered == len(stalled)

"""One order placed through the gateway is one OpenTelemetry trace across every process.

Every process of the shop (gateway, the services' web processes, their Celery
workers, the orders relay and watchdog, both event consumers) exports its
spans over OTLP/HTTP to a receiver this test runs: a small ``http.server``
decoding ``ExportTraceServiceRequest`` with opentelemetry-proto, as a
collector or Jaeger would.
"""

from __future__ import annotations

import gzip
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from tests.harness import ServiceLauncher, free_port, shop_start, wait_until

pytestmark = pytest.mark.system

PASSWORD = "correct horse battery"
SERVER, CONSUMER, PRODUCER, CLIENT = (
    SpanProto.SPAN_KIND_SERVER,
    SpanProto.SPAN_KIND_CONSUMER,
    SpanProto.SPAN_KIND_PRODUCER,
    SpanProto.SPAN_KIND_CLIENT,
)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    links: tuple[str, ...]
    attributes: dict[str, Any] = field(hash=False)


class OtlpReceiver:
    """An OTLP/HTTP (protobuf) trace receiver on a free loopback port, keeping every span."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver.receive(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def receive(self, request: ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=resource.get("service.name", "?"),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            links=tuple(link.span_id.hex() for link in span.links),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self.spans.extend(received)
            self.requests += 1

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]


@dataclass
class TracedShop:
    gateway_url: str
    receiver: OtlpReceiver


@pytest.fixture(scope="module")
def traced_shop(module_services: ServiceLauncher) -> Iterator[TracedShop]:
    with OtlpReceiver() as receiver:
        # What compose or k8s sets for every process; a short batch delay for the test.
        tracing = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        gateway = shop_start(module_services, env=tracing, watchdog=True)["gateway"]
        yield TracedShop(gateway_url=gateway.url, receiver=receiver)


def place_one_order(shop: TracedShop) -> str:
    """Sign up, sign in and place an order through the gateway; its id once it is decided.

    Two 549.00 phones exceed the new customer's 1000.00 of credit: the order goes through
    every step and ends rejected, so the participants' consumers take its order.rejected
    (an approved order needs nothing more from them)."""
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=shop.gateway_url, timeout=10) as client:
        client.post("/api/users/register/", json={"email": email, "password": PASSWORD})
        token = client.post("/api/auth/token/", json={"email": email, "password": PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['access']}"}
        placed = client.post(
            "/api/orders/", json={"lines": [{"product_id": 1, "quantity": 2}]}, headers=headers
        )
        assert placed.status_code == 202, placed.text
        order_id = placed.json()["id"]

        def decided() -> bool:
            return client.get(f"/api/orders/{order_id}/", headers=headers).json()["status"] in (
                "APPROVED",
                "REJECTED",
            )

        assert wait_until(decided, timeout=30, interval=0.2)
        order = client.get(f"/api/orders/{order_id}/", headers=headers).json()
        assert (order["status"], order["rejection_reason"]) == (
            "REJECTED",
            "credit_limit_exceeded",
        )
    return order_id


EXPECTED = [
    # (service, span name, kind): what one order's trace holds at least
    ("gateway", "POST /api/orders/", SERVER),
    ("orders", "POST", SERVER),  # Django's span; its name is the route's
    ("orders", "catalog.stock_reserve send", PRODUCER),
    ("catalog-worker", "run/catalog.stock_reserve", CONSUMER),
    ("catalog-worker", "users.credit_reserve send", PRODUCER),  # the routing slip
    ("users-worker", "run/users.credit_reserve", CONSUMER),
    ("users-worker", "orders.saga_reply send", PRODUCER),
    ("orders-worker", "run/orders.saga_reply", CONSUMER),
    # Published once their transaction commits, by the process that recorded them.
    ("orders", "order.placed publish", PRODUCER),
    ("orders-worker", "order.rejected publish", PRODUCER),
    ("catalog-consumer", "order.rejected process", CONSUMER),
    ("users-consumer", "order.rejected process", CONSUMER),
]


def test_one_order_is_one_trace_across_every_process(traced_shop):
    receiver = traced_shop.receiver
    order_id = place_one_order(traced_shop)

    def order_trace() -> list[ReceivedSpan]:
        """Every span of the trace one of whose spans names the order."""
        with receiver._lock:
            tagged = [s for s in receiver.spans if s.attributes.get("order.id") == order_id]
        return receiver.trace(tagged[0].trace_id) if tagged else []

    def complete() -> bool:
        spans = order_trace()
        return all(
            any(s.service == service and s.name.startswith(name) and s.kind == kind for s in spans)
            for service, name, kind in EXPECTED
        )

    assert wait_until(complete, timeout=20, interval=0.2), sorted(
        (s.service, s.name) for s in order_trace()
    )
    spans = order_trace()
    by_id = {span.span_id: span for span in spans}

    def only(found: list[ReceivedSpan], what: str) -> ReceivedSpan:
        assert len(found) == 1, (what, sorted((s.service, s.name) for s in spans))
        return found[0]

    def one(service: str, name: str, **attributes: Any) -> ReceivedSpan:
        return only(
            [
                s
                for s in spans
                if s.service == service
                and s.name.startswith(name)
                and all(s.attributes.get(key) == value for key, value in attributes.items())
            ],
            f"{service} {name}",
        )

    def child(of: ReceivedSpan, service: str, name: str) -> ReceivedSpan:
        return only(
            [
                s
                for s in spans
                if s.parent_id == of.span_id and s.service == service and s.name == name
            ],
            f"{service} {name} under {of.name}",
        )

    def parent(span: ReceivedSpan) -> ReceivedSpan:
        assert span.parent_id in by_id, (span.name, "has no parent in the trace")
        return by_id[span.parent_id]

    # The gateway's SERVER span starts the trace (the client sent none) ...
    gateway = one("gateway", "POST /api/orders/")
    assert (gateway.kind, gateway.parent_id) == (SERVER, "")
    # ... and the orders web process serves the request in a child of it.
    served = one("orders", "POST", **{"order.id": order_id})
    assert served.kind == SERVER
    assert parent(served) == gateway
    # its queries (psycopg2) are CLIENT spans under it
    assert any(
        s.kind == CLIENT and s.parent_id == served.span_id and s.attributes.get("db.system")
        for s in spans
    ), sorted((s.service, s.name) for s in spans)
    # no span left open by Celery's own publish hooks (common.commands makes that span)
    assert not [s.name for s in spans if s.name.startswith("apply_async/")]

    # The saga's commands and replies: PRODUCER spans, each run as a CONSUMER child;
    # catalog passes the credit step on to users, who answers orders for both.
    reserve_stock = child(served, "orders", "catalog.stock_reserve send")
    assert reserve_stock.kind == PRODUCER
    stock_run = child(reserve_stock, "catalog-worker", "run/catalog.stock_reserve")
    assert stock_run.kind == CONSUMER
    assert stock_run.attributes["order.id"] == order_id
    reserve_credit = child(stock_run, "catalog-worker", "users.credit_reserve send")
    credit_run = child(reserve_credit, "users-worker", "run/users.credit_reserve")
    assert credit_run.kind == CONSUMER
    assert credit_run.attributes["order.id"] == order_id
    answer = child(credit_run, "users-worker", "orders.saga_reply send")
    reply_run = child(answer, "orders-worker", "run/orders.saga_reply")
    assert reply_run.attributes["order.id"] == order_id
    # No command from orders' worker: its PRODUCER spans are the events of the reply.
    worker_sends = [s for s in spans if s.service == "orders-worker" and s.kind == PRODUCER]
    assert sorted(s.name for s in worker_sends) == [
        "order.credit_refused publish",
        "order.rejected publish",
        "order.stock_reserved publish",
    ]

    # Events: published by the process that recorded them once it committed (the relay
    # only sweeps what that missed), each in a PRODUCER span under the span that
    # recorded it.
    placed = child(served, "orders", "order.placed publish")
    assert placed.kind == PRODUCER
    assert placed.attributes["event.subject"] == order_id
    rejected = one("orders-worker", "order.rejected publish")
    assert parent(rejected).service == "orders-worker"  # the last reply decided it
    assert parent(rejected).attributes["order.id"] == order_id
    # Each consumer handles it (gives back what the order took) in a CONSUMER span: a
    # child of the envelope's context, linked to the PRODUCER span that published it.
    for consumer in ("catalog-consumer", "users-consumer"):
        handled = child(parent(rejected), consumer, "order.rejected process")
        assert handled.kind == CONSUMER
        assert handled.links == (rejected.span_id,)
        assert handled.attributes["event.subject"] == order_id

"""The pure pieces of the order status push channel: what an order's events mean, and SSE framing.

An order's events are numbered by their version (1, 2, ...: orders_svc appends
them with ``(order_id, version)`` unique, and its detail's ``history`` lists
them in that order), so the version is the Server-Sent Events ``id``: a client
that reconnects with ``Last-Event-ID: 3`` gets the events from version 4 on,
each once. Nothing here does I/O; ``proxy/order_stream.py`` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PENDING = "PENDING"
APPROVED = "APPROVED"
REJECTED = "REJECTED"
CANCELLED = "CANCELLED"
# orders_svc's Order.apply: the events that move the status; the others record the
# saga's progress (stock_reserved, credit_reserved, ...) and keep it.
STATUS_AFTER = {
    "order.placed": PENDING,
    "order.approved": APPROVED,
    "order.rejected": REJECTED,
    "order.cancelled": CANCELLED,
}
# An order in one of these never changes again; an APPROVED one is settled too unless
# a cancellation was asked for (then CANCELLED follows).
TERMINAL_STATUSES = frozenset({REJECTED, CANCELLED})
# Longest Last-Event-ID we read: a version is a small integer.
_MAX_ID_DIGITS = 12


@dataclass(frozen=True)
class StatusEvent:
    """One of an order's events as the push channel sends it."""

    order_id: str
    version: int
    type: str
    at: str
    status: str
    final: bool
    rejection_reason: str = ""

    def payload(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "version": self.version,
            "type": self.type,
            "at": self.at,
            "status": self.status,
            "final": self.final,
            "rejection_reason": self.rejection_reason,
        }


def order_settled(order: Mapping[str, Any]) -> bool:
    """Whether the order (its detail as orders_svc answers it) will change no more."""
    status = order.get("status")
    if status in TERMINAL_STATUSES:
        return True
    return status == APPROVED and not order.get("cancel_requested")


def order_status_events(order: Mapping[str, Any], *, after: int = 0) -> list[StatusEvent]:
    """The order's events after version ``after``, each with the status it left the order in.

    ``final`` is set on the last event of a settled order only: an order approved
    and later cancelled has a non-final ``order.approved`` in its replay.
    """
    history: list[Mapping[str, Any]] = list(order.get("history") or [])
    settled = order_settled(order)
    order_id = str(order.get("id", ""))
    events = []
    status = ""
    for version, entry in enumerate(history, start=1):
        kind = str(entry.get("type", ""))
        status = STATUS_AFTER.get(kind, status)
        if version <= after:
            continue
        last = version == len(history)
        events.append(
            StatusEvent(
                order_id=order_id,
                version=version,
                type=kind,
                at=str(entry.get("at", "")),
                status=status,
                final=last and settled,
                rejection_reason=str(order.get("rejection_reason") or "")
                if kind == "order.rejected"
                else "",
            )
        )
    return events


def version_parse(value: bytes | str) -> int:
    """An event version a client names (``Last-Event-ID``, ``?after=``): a non-negative integer.

    Raises ``ValueError`` for anything else: a browser only ever sends back
    what we sent, so anything else is a client's mistake, answered with a 400.
    """
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_ID_DIGITS:
        raise ValueError(f"{text[:40]!r} is not an event version (a non-negative integer)")
    return int(text)


def sse_event(event: StatusEvent) -> bytes:
    """One event in the text/event-stream format (WHATWG HTML, "Server-sent events").

    Hand-written on purpose: the format is three lines, and the libraries that
    write it (sse-starlette, django-eventstream) bring a framework of their own
    (Starlette, Channels) into a path that has neither. ``json.dumps`` escapes
    every newline, so the data is always one line.
    """
    data = json.dumps(event.payload(), separators=(",", ":"))
    return f"id: {event.version}\ndata: {data}\n\n".encode()


def sse_retry(milliseconds: int) -> bytes:
    """How long a browser's EventSource waits before it reconnects."""
    return f"retry: {int(milliseconds)}\n\n".encode()


def sse_comment(text: str = "") -> bytes:
    """A comment line: ignored by clients, it keeps proxies from closing an idle stream."""
    return f": {text}\n\n".encode() if text else b":\n\n"


def sse_events(events: Iterable[StatusEvent]) -> bytes:
    return b"".join(sse_event(event) for event in events)


# --- the channel in the gateway's merged OpenAPI document (proxy/openapi.py) -------------

OPENAPI_PATH = "/api/orders/{order_id}/events/"
_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


# One event of the stream, as OpenAPI before 3.2 describes a text/event-stream: the
# schema of each event (its fields as a client's parser reads them), not of the stream.
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["id", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event's version."},
        "event": {"type": "string", "enum": ["message"]},
        "data": {
            "type": "string",
            "description": "One JSON object: `order_id`, `version`, `type` (`order.placed`, "
            "..., `order.approved`), `at`, `status` (after the event), `final` (true on the "
            "last event of a settled order), `rejection_reason` (on `order.rejected`).",
        },
    },
}


def openapi_operation() -> dict[str, Any]:
    """``GET /api/orders/{order_id}/events/`` as the gateway answers it (proxy/order_stream.py).

    The gateway's own answers (401, 408, 429, 502, 503, 504) are added by the merge.
    """
    event_fields = ", ".join(f"`{name}`" for name in StatusEvent.__dataclass_fields__)
    return {
        "operationId": "gateway_order_events",
        "summary": "An order's status as it changes, pushed (Server-Sent Events)",
        "description": (
            "A `text/event-stream` of the order's events, oldest first, from the one after "
            "`Last-Event-ID` (an `EventSource` reconnecting sends it) or `after`, else from "
            "the first. Each event's `id` is the order's event version (1, 2, ...) and its "
            f"`data` one JSON object: {event_fields}; `status` is the order's status after "
            "the event (`PENDING`, `APPROVED`, `REJECTED`, `CANCELLED`). The stream ends "
            "after the event with `final: true` (the order settled: rejected, cancelled, or "
            "approved with no cancellation pending), when the access token expires, and "
            "after `GATEWAY_PUSH_MAX_SECONDS` (300 s): reconnect (with a fresh token) and "
            "`Last-Event-ID` to resume. A comment line (`:`) every "
            "15 s keeps it open through proxies. Who may read it: the order's customer or "
            "staff, as for the order's detail, with a bearer token or the storefront's "
            "session cookie (a browser's `EventSource` sends no Authorization header)."
        ),
        "tags": ["orders"],
        "parameters": [
            {
                "in": "path",
                "name": "order_id",
                "required": True,
                "schema": {"type": "string", "format": "uuid"},
            },
            {
                "in": "query",
                "name": "after",
                "required": False,
                "description": "Send the events after this version. A `Last-Event-ID` "
                "header (the `id` of the last event received, as `EventSource` sends it "
                "when it reconnects) wins over it.",
                "schema": {"type": "integer", "minimum": 0},
            },
        ],
        "security": [{"bearerAuth": []}, {"cookieAuth": []}],
        "responses": {
            "200": {
                "description": "The stream of the order's events.",
                "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
            },
            "204": {
                "description": "Everything was sent and the order is settled: nothing will "
                "follow (EventSource stops reconnecting)."
            },
            "400": {
                "description": "`Last-Event-ID` or `after` is not a non-negative integer "
                "(`invalid`).",
                "content": _PROBLEM,
            },
            "404": {
                "description": "No such order, or not yours; an id that is not a UUID "
                "too (`order_not_found`).",
                "content": _PROBLEM,
            },
            "405": {
                "description": "Only GET (`method_not_allowed`).",
                "headers": {"Allow": {"schema": {"type": "string"}}},
                "content": _PROBLEM,
            },
        },
    }

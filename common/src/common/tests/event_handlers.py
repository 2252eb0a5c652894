"""Event types and handlers that exist only for test_events.py.

The handlers note every call in ``calls`` (reset by the tests) so a test can
tell "handled once" from "handled twice"; ``ping`` also has a database effect
(it records a ``test.pong``), which is what the inbox must keep single.
"""

from __future__ import annotations

from common.events import Event, event_record, register_event_type

PING_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}},
    "required": ["n"],
    "additionalProperties": False,
}
register_event_type("test.ping", PING_SCHEMA)
register_event_type(
    "test.pong",
    {
        "type": "object",
        "properties": {"ping": {"type": "string"}},
        "required": ["ping"],
    },
)
register_event_type("test.boom", {"type": "object"})
register_event_type("test.flaky", {"type": "object"})
register_event_type("test.unhandled", {"type": "object"})

calls: list[tuple[str, str]] = []
flaky_state = {"failures_left": 0}
boom_state = {"fixed": False}


def note(event: Event) -> None:
    calls.append(("note", event.id))


def ping(event: Event) -> None:
    calls.append(("ping", event.id))
    event_record(type="test.pong", subject=event.id, data={"ping": event.id})


def boom(event: Event) -> None:
    calls.append(("boom", event.id))
    if not boom_state["fixed"]:
        raise RuntimeError("boom: the handler always fails")


def flaky(event: Event) -> None:
    calls.append(("flaky", event.id))
    if flaky_state["failures_left"] > 0:
        flaky_state["failures_left"] -= 1
        raise RuntimeError("flaky: not this time")


HANDLERS = {
    "test.ping": "common.tests.event_handlers.ping",
    "test.boom": "common.tests.event_handlers.boom",
    "test.flaky": "common.tests.event_handlers.flaky",
}

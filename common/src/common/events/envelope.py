"""The event envelope and the registry of event types with their data schemas.

Every event on the wire is one JSON object::

    {"id": "<uuid>", "type": "order.approved", "source": "orders",
     "time": "2026-11-22T10:00:00.123456+00:00", "subject": "<aggregate id>",
     "trace": {"traceparent": "00-..."}, "data": {...}}

``trace`` holds the W3C trace context of the span that recorded the event
(written by the OpenTelemetry propagator, ``common.tracing``); empty when
nothing was tracing.

Services share no code, so each one registers, in code, the JSON schema of
every event type it produces or consumes (``register_event_type``; the
producer's and consumers' copies are the contract). Producers validate before
the event is recorded and consumers validate on receipt, so a bad event is
caught at the side that made it and can never reach a handler.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jsonschema import FormatChecker
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

# Dot-separated lowercase words: topic routing splits on dots, and "*" or "#"
# in a type would make it a binding pattern rather than a routing key.
EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
ENVELOPE_FIELDS = ("id", "type", "source", "time", "subject", "trace", "data")


class EventError(Exception):
    """Base of every error about an event's form or content."""


class InvalidEnvelope(EventError):
    """The message is not an event envelope: not JSON, a field missing or malformed."""


class UnknownEventType(EventError):
    """No schema is registered for the type, so its data cannot be trusted."""


class InvalidEventData(EventError):
    """The event's ``data`` does not satisfy its type's schema."""


@dataclass(frozen=True, slots=True)
class Event:
    """One fact that happened in a service, as it travels between services."""

    id: str
    type: str
    source: str
    time: str
    subject: str
    data: dict[str, Any]
    trace: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": self.time,
            "subject": self.subject,
            "trace": dict(self.trace),
            "data": self.data,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, raw: Any) -> Event:
        """The envelope checked field by field; raises ``InvalidEnvelope`` with the reason."""
        if not isinstance(raw, Mapping):
            raise InvalidEnvelope(f"the envelope is a JSON {type(raw).__name__}, not an object")
        if missing := [name for name in ENVELOPE_FIELDS if name not in raw]:
            raise InvalidEnvelope(f"envelope fields missing: {', '.join(missing)}")
        for name in ("id", "type", "source", "time", "subject"):
            if not isinstance(raw[name], str) or not raw[name]:
                raise InvalidEnvelope(f"envelope field {name!r} must be a non-empty string")
        try:
            event_id = str(uuid.UUID(raw["id"]))
        except ValueError:
            raise InvalidEnvelope(f"envelope id {raw['id']!r} is not a UUID") from None
        if not EVENT_TYPE_PATTERN.match(raw["type"]):
            raise InvalidEnvelope(f"envelope type {raw['type']!r} is not like 'order.approved'")
        try:
            moment = datetime.fromisoformat(raw["time"])
        except ValueError:
            raise InvalidEnvelope(f"envelope time {raw['time']!r} is not ISO-8601") from None
        if moment.utcoffset() is None:
            raise InvalidEnvelope(f"envelope time {raw['time']!r} has no time zone")
        trace = raw["trace"]
        if not isinstance(trace, Mapping) or not all(
            isinstance(value, str) for value in trace.values()
        ):
            raise InvalidEnvelope("envelope trace must be an object of strings")
        if not isinstance(raw["data"], Mapping):
            raise InvalidEnvelope("envelope data must be an object")
        return cls(
            id=event_id,
            type=raw["type"],
            source=raw["source"],
            time=raw["time"],
            subject=raw["subject"],
            data=dict(raw["data"]),
            trace=dict(trace),
        )

    @classmethod
    def from_json(cls, body: bytes | str) -> Event:
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidEnvelope(f"the body is not JSON: {exc}") from None
        return cls.from_dict(raw)


@dataclass(frozen=True)
class _EventType:
    schema: Mapping[str, Any]
    validator: Validator


_registry: dict[str, _EventType] = {}
_registry_lock = threading.Lock()


def register_event_type(event_type: str, schema: Mapping[str, Any]) -> None:
    """Declare an event type and the JSON schema its ``data`` must satisfy.

    Call it at import time of the module that produces or handles the type
    (an app's ``events.py``, imported from ``AppConfig.ready``). Registering
    the same schema again is harmless (modules get reloaded); a different
    schema for a known type is an error, since two contracts for one type
    would let producer and consumer disagree silently.
    """
    if not EVENT_TYPE_PATTERN.match(event_type):
        raise ValueError(f"event type {event_type!r} is not like 'order.approved'")
    validator_class = validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"the schema of {event_type!r} is not valid: {exc.message}") from exc
    with _registry_lock:
        known = _registry.get(event_type)
        if known is not None:
            if known.schema != schema:
                raise ValueError(f"event type {event_type!r} is already registered differently")
            return
        _registry[event_type] = _EventType(
            schema=schema, validator=validator_class(schema, format_checker=FormatChecker())
        )


def registered_event_types() -> dict[str, Mapping[str, Any]]:
    """Every registered type with its schema (for docs, checks and tests)."""
    return {name: known.schema for name, known in _registry.items()}


def event_data_validate(*, event_type: str, data: Any) -> None:
    """Raise ``UnknownEventType`` or ``InvalidEventData`` unless ``data`` fits the type."""
    known = _registry.get(event_type)
    if known is None:
        raise UnknownEventType(f"no schema is registered for event type {event_type!r}")
    error = best_match(known.validator.iter_errors(data))
    if error is not None:
        where = "data" + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
        )
        raise InvalidEventData(f"{event_type}: {where}: {error.message}")


def event_parse(body: bytes | str) -> Event:
    """An event received from the broker: envelope and data checked, or an ``EventError``."""
    event = Event.from_json(body)
    event_data_validate(event_type=event.type, data=event.data)
    return event

"""The event envelope and the registry of event types with their data schemas.

Every event on the wire is one JSON object::

    {"id": "<uuid>", "type": "order.approved", "source": "orders",
     "time": "2026-11-22T10:00:00.123456+00:00", "subject": "<aggregate id>",
     "trace": {"traceparent": "00-..."},
     "dataschema": "https://contracts.eshop.example/events/order.approved.v1.json",
     "data": {...}}

``trace`` holds the W3C trace context of the span that recorded the event
(written by the OpenTelemetry propagator, ``common.tracing``); empty when
nothing was tracing.

``dataschema`` (CloudEvents' attribute of that name) is the ``$id`` of the
JSON schema the data follows, which says its version: one file per type and
version in ``contracts/events`` (``common.contracts`` loads them). An event
without it was published before events carried versions: it is version 1.

Services share no code, so each one registers the JSON schema of every event
type and version it produces or consumes (``register_event_type``): the
producer its schema file, each consumer the part it relies on
(``contracts/consumers``; the producer's tests check every consumer's part
against what it really produces). Producers validate before the event is
recorded and consumers validate on receipt, so a bad event is caught at the
side that made it and can never reach a handler; a version the consumer has
no schema for is refused like an unknown type (``UnknownEventVersion``).
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

from jsonschema.exceptions import SchemaError, best_match
from jsonschema.validators import validator_for

from common.json_schemas import SchemaValidator

# Dot-separated lowercase words: topic routing splits on dots, and "*" or "#"
# in a type would make it a binding pattern rather than a routing key.
EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
ENVELOPE_FIELDS = ("id", "type", "source", "time", "subject", "trace", "data")
# Where every contract's $id lives: a name, not a place anything is fetched from.
CONTRACTS_BASE_URI = "https://contracts.eshop.example/"
DATASCHEMA_PATTERN = re.compile(
    re.escape(CONTRACTS_BASE_URI)
    + r"events/(?P<type>[a-z0-9_.]+)\.v(?P<version>[1-9][0-9]{0,5})\.json"
)


def event_schema_uri(event_type: str, version: int) -> str:
    """The ``$id`` of an event type's schema file, and its events' ``dataschema``."""
    return f"{CONTRACTS_BASE_URI}events/{event_type}.v{version}.json"


class EventError(Exception):
    """Base of every error about an event's form or content."""


class InvalidEnvelope(EventError):
    """The message is not an event envelope: not JSON, a field missing or malformed."""


class UnknownEventType(EventError):
    """No schema is registered for the type, so its data cannot be trusted."""


class UnknownEventVersion(UnknownEventType):
    """The type is known, but not the version of its schema that the event says it follows."""


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
    dataschema: str = ""  # empty: from before events carried versions, version 1

    @property
    def version(self) -> int:
        """The version of its type's schema that ``data`` follows."""
        if not self.dataschema:
            return 1
        match = DATASCHEMA_PATTERN.fullmatch(self.dataschema)
        return int(match["version"]) if match else 0  # 0: no version anyone knows

    def to_dict(self) -> dict[str, Any]:
        envelope = {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": self.time,
            "subject": self.subject,
            "trace": dict(self.trace),
            "data": self.data,
        }
        if self.dataschema:
            envelope["dataschema"] = self.dataschema
        return envelope

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
        dataschema = raw.get("dataschema", "")
        if dataschema != "":
            match = (
                DATASCHEMA_PATTERN.fullmatch(dataschema) if isinstance(dataschema, str) else None
            )
            if match is None or match["type"] != raw["type"]:
                raise InvalidEnvelope(
                    f"envelope dataschema {dataschema!r} is not the schema of a "
                    f"{raw['type']!r} version ({event_schema_uri(raw['type'], 1)!r} ...)"
                )
        return cls(
            id=event_id,
            type=raw["type"],
            source=raw["source"],
            time=raw["time"],
            subject=raw["subject"],
            data=dict(raw["data"]),
            trace=dict(trace),
            dataschema=dataschema,
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
    validator: SchemaValidator


_registry: dict[tuple[str, int], _EventType] = {}
_registry_lock = threading.Lock()


def register_event_type(event_type: str, schema: Mapping[str, Any], *, version: int = 1) -> None:
    """Declare a version of an event type and the JSON schema its ``data`` must satisfy.

    Call it at import time of the module that produces or handles the type
    (an app's ``events.py``, imported from ``AppConfig.ready``). Registering
    the same schema again is harmless (modules get reloaded); a different
    schema for a known type and version is an error, since two contracts for
    one version would let producer and consumer disagree silently.
    """
    if not EVENT_TYPE_PATTERN.match(event_type):
        raise ValueError(f"event type {event_type!r} is not like 'order.approved'")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"the version of {event_type!r} must be a positive integer")
    validator_class = validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"the schema of {event_type!r} is not valid: {exc.message}") from exc
    with _registry_lock:
        known = _registry.get((event_type, version))
        if known is not None:
            if known.schema != schema:
                raise ValueError(
                    f"event type {event_type!r} v{version} is already registered differently"
                )
            return
        _registry[(event_type, version)] = _EventType(
            schema=schema, validator=SchemaValidator(schema)
        )


def registered_event_types() -> dict[str, Mapping[str, Any]]:
    """Every registered type with the schema of its latest version (for docs, checks and tests)."""
    latest: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for (name, version), known in _registry.items():
        if name not in latest or version > latest[name][0]:
            latest[name] = (version, known.schema)
    return {name: schema for name, (_, schema) in latest.items()}


def registered_event_versions(event_type: str) -> list[int]:
    """The versions of ``event_type`` this process knows, oldest first."""
    return sorted(version for name, version in _registry if name == event_type)


def event_dataschema(event_type: str) -> str:
    """What a producer puts in ``dataschema``: the latest version it registered, or ""."""
    versions = registered_event_versions(event_type)
    return event_schema_uri(event_type, versions[-1]) if versions else ""


def event_data_validate(*, event_type: str, data: Any, version: int | None = None) -> None:
    """Raise ``UnknownEventType``, ``UnknownEventVersion`` or ``InvalidEventData`` unless
    ``data`` fits the type's schema of ``version`` (default: the latest registered, the
    one a producer produces; a consumer passes the event's own, ``Event.version``)."""
    versions = registered_event_versions(event_type)
    if not versions:
        raise UnknownEventType(f"no schema is registered for event type {event_type!r}")
    if version is None:
        version = versions[-1]
    known = _registry.get((event_type, version))
    if known is None:
        shown = f"v{version}" if version else "a version"
        raise UnknownEventVersion(
            f"{event_type} {shown} is not known here (known: "
            f"{', '.join(f'v{known_version}' for known_version in versions)})"
        )
    error = best_match(known.validator.iter_errors(data))
    if error is not None:
        where = "data" + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
        )
        raise InvalidEventData(f"{event_type}: {where}: {error.message}")


def event_parse(body: bytes | str) -> Event:
    """An event received from the broker: envelope and data checked, or an ``EventError``."""
    event = Event.from_json(body)
    event_data_validate(event_type=event.type, data=event.data, version=event.version)
    return event

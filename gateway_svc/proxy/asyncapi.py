"""The AsyncAPI 3.0 document of every event and command, made from the contract files.

``contracts/events/<type>.v<N>.json`` and ``contracts/commands/<task>.v<N>.json``
(common.contracts) are the schemas; this module only arranges them as AsyncAPI
says: a channel per event type on the ``events`` topic exchange (routing key =
type) and one per command queue (the receiving service's, through the direct
exchange of its name: common.broker_access), a message per type and version whose
payload is the envelope as it travels (the event envelope, or Celery's protocol 2
body around the task's kwargs), and a send and a receive operation per producer and
consumer (``x-producer``, ``x-consumer``, ``contracts/consumers/<service>/``).

``make asyncapi`` writes it to ``contracts/asyncapi.yaml``; the gateway serves that
file at ``/api/asyncapi/``, and a test fails when it no longer matches the files.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import yaml
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BaseRenderer

ASYNCAPI_VERSION = "3.0.0"
DOCUMENT_NAME = "asyncapi.yaml"
EVENTS_EXCHANGE = "events"
_FILE_NAME = re.compile(
    r"^(?P<name>[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+)\.v(?P<version>\d+)\.json$"
)
# Headers of every command (Celery protocol 2 and common.signing); the trace context
# (traceparent, tracestate) travels there too when something is tracing.
_COMMAND_HEADERS = ("task", "id", "x-signer", "x-signature")

_ENVELOPE = {
    "type": "object",
    "description": "Every event on the wire (common.events.envelope). `dataschema` is the "
    "`$id` of the schema `data` follows, so it says the version; an event without it is "
    "version 1.",
    "required": ["id", "type", "source", "time", "subject", "trace", "data"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "type": {"type": "string", "description": "The event type, also the routing key."},
        "source": {"type": "string", "description": "The producing service."},
        "time": {"type": "string", "format": "date-time"},
        "subject": {"type": "string", "description": "The aggregate's id (the order's)."},
        "trace": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "W3C trace context of the span that recorded the event.",
        },
        "dataschema": {"type": "string", "format": "uri"},
        "data": {"type": "object"},
    },
}


def _names(value: Any) -> list[str]:
    """An ``x-producer`` or ``x-consumer``: one service or a list of them."""
    return [value] if isinstance(value, str) else sorted(value or [])


def _id(text: str) -> str:
    """A channel or operation key (AsyncAPI allows letters, digits, ``_`` and ``-``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def contract_files(contracts: Path, kind: str) -> list[tuple[str, int, dict[str, Any]]]:
    """(name, version, schema) of every ``<kind>/<name>.v<N>.json``, in name and version order."""
    found = []
    for path in sorted((contracts / kind).glob("*.json")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: not named <type>.v<N>.json")
        found.append(
            (match["name"], int(match["version"]), json.loads(path.read_text(encoding="utf-8")))
        )
    return sorted(found, key=lambda item: (item[0], item[1]))


def consumers_of(contracts: Path) -> dict[str, list[str]]:
    """Message name → the services that state a contract on it (``consumers/<service>/``)."""
    consumers: dict[str, list[str]] = {}
    for path in sorted((contracts / "consumers").glob("*/*.json")):
        consumers.setdefault(path.stem, []).append(path.parent.name)
    return consumers


def _component_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The file's schema as an AsyncAPI Schema Object (JSON Schema draft 07 keywords).

    ``$schema`` goes: the files say draft 2020-12 but use nothing draft 07 lacks, and
    the document's schemas are all of its default format.
    """
    return {key: value for key, value in copy.deepcopy(schema).items() if key != "$schema"}


def _ref(section: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/{section}/{name}"}


def asyncapi_document(contracts: Path) -> dict[str, Any]:
    """The whole AsyncAPI document, from the files under ``contracts``."""
    consumers = consumers_of(contracts)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"EventEnvelope": copy.deepcopy(_ENVELOPE)}

    for event_type, version, schema in contract_files(contracts, "events"):
        key = f"{event_type}.v{version}"
        schemas[key] = _component_schema(schema)
        messages[key] = {
            "name": event_type,
            "title": f"{event_type} v{version}",
            "summary": schema.get("description", ""),
            "contentType": "application/json",
            "payload": {
                "allOf": [
                    _ref("components/schemas", "EventEnvelope"),
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": event_type},
                            "dataschema": {"const": schema["$id"]},
                            "data": _ref("components/schemas", key),
                        },
                    },
                ]
            },
            "bindings": {"amqp": {"messageType": event_type, "bindingVersion": "0.3.0"}},
        }
        channel = _id(f"event_{event_type}")
        channels.setdefault(
            channel,
            {
                "address": event_type,
                "description": f"Routing key {event_type} on the topic exchange "
                f"`{EVENTS_EXCHANGE}`; each consumer's queue `<service>.events` is bound to it.",
                "messages": {},
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {
                            "name": EVENTS_EXCHANGE,
                            "type": "topic",
                            "durable": True,
                            "autoDelete": False,
                            "vhost": "/",
                        },
                        "bindingVersion": "0.3.0",
                    }
                },
            },
        )
        channels[channel]["messages"][_id(key)] = _ref("components/messages", key)
        _add_operations(
            operations,
            channel=channel,
            message=_id(key),
            name=event_type,
            senders=_names(schema.get("x-producer")),
            receivers=consumers.get(event_type, []),
        )

    for task, version, schema in contract_files(contracts, "commands"):
        key = f"{task}.v{version}"
        receiver = schema.get("x-consumer") or task.split(".", 1)[0]
        schemas[key] = _component_schema(schema)
        messages[key] = {
            "name": task,
            "title": f"{task} v{version}",
            "summary": schema.get("description", ""),
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "description": "Celery protocol 2 headers and the sender's signature "
                "(common.signing); a message that does not verify is dead-lettered.",
                "required": list(_COMMAND_HEADERS),
                "properties": {
                    "task": {"const": task},
                    "id": {"type": "string", "format": "uuid"},
                    "x-signer": {"type": "string", "description": "The sending service."},
                    "x-signature": {"type": "string"},
                },
            },
            "payload": {
                "type": "array",
                "description": "Celery protocol 2 body: [args (none), kwargs, embed].",
                "items": [
                    {"type": "array", "maxItems": 0},
                    _ref("components/schemas", key),
                    {"type": "object"},
                ],
                "additionalItems": False,
                "minItems": 3,
            },
        }
        channel = _id(f"commands_{receiver}")
        channels.setdefault(
            channel,
            {
                "address": receiver,
                "description": f"The command queue of {receiver} (its Celery queue, "
                f"QUEUE_PREFIX + `{receiver}`), reached through the direct exchange of "
                "the same name.",
                "messages": {},
                "bindings": {
                    "amqp": {
                        "is": "queue",
                        "queue": {
                            "name": receiver,
                            "durable": True,
                            "exclusive": False,
                            "autoDelete": False,
                            "vhost": "/",
                        },
                        "bindingVersion": "0.3.0",
                    }
                },
            },
        )
        channels[channel]["messages"][_id(key)] = _ref("components/messages", key)
        _add_operations(
            operations,
            channel=channel,
            message=_id(key),
            name=task,
            senders=_names(schema.get("x-producer")),
            receivers=[receiver],
        )

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "E-commerce platform events and commands",
            "version": "1",
            "description": "Events (facts a service publishes to every service that cares) "
            "and commands (a saga step asked of one service, and its reply), made from the "
            "schema files in contracts/ (one per type and version). QUEUE_PREFIX, when set, "
            "prefixes the exchange and every queue.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "RabbitMQ, as BROKER_URL says (compose: rabbitmq:5672).",
            }
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": dict(sorted(messages.items())),
        },
    }


def _add_operations(
    operations: dict[str, Any],
    *,
    channel: str,
    message: str,
    name: str,
    senders: list[str],
    receivers: list[str],
) -> None:
    """A send per producer and a receive per consumer, each listing the versions it uses."""
    for action, services in (("send", senders), ("receive", receivers)):
        for service in services:
            key = _id(f"{service}_{action}_{name}")
            operation = operations.setdefault(
                key,
                {
                    "action": action,
                    "channel": _ref("channels", channel),
                    "summary": f"{service} {'sends' if action == 'send' else 'receives'} {name}",
                    "tags": [{"name": service}],
                    "messages": [],
                },
            )
            operation["messages"].append(_ref(f"channels/{channel}/messages", message))


def asyncapi_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def asyncapi_load(contracts: Path) -> dict[str, Any]:
    """The committed document (``make asyncapi``), read again only when the file changes."""
    path = contracts / DOCUMENT_NAME
    try:
        modified = path.stat().st_mtime_ns
    except OSError:
        raise NotFound(f"No AsyncAPI document at {path.name}.") from None
    return _parsed(path, modified)


@functools.lru_cache(maxsize=2)
def _parsed(path: Path, modified: int) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


class AsyncApiYamlRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None):
        if renderer_context and renderer_context["response"].status_code >= 400:
            # Problems stay JSON, whatever was asked (common.problems).
            return json.dumps(data).encode()
        return asyncapi_yaml(data).encode()


def asyncapi_check(document: dict[str, Any]) -> list[str]:
    """What is wrong with the document's structure, as AsyncAPI 3.0 requires it.

    No PyPI package ships the specification's JSON schema, so the rules this document
    could break are checked here: required fields, key patterns, and every ``$ref``
    pointing at something that exists.
    """
    problems = []
    if document.get("asyncapi") != ASYNCAPI_VERSION:
        problems.append("asyncapi is not 3.0.0")
    info = document.get("info", {})
    for field in ("title", "version"):
        if not isinstance(info.get(field), str) or not info.get(field):
            problems.append(f"info.{field} is missing")
    for server_id, server in document.get("servers", {}).items():
        for field in ("host", "protocol"):
            if field not in server:
                problems.append(f"servers.{server_id}.{field} is missing")
    key_pattern = re.compile(r"^[A-Za-z0-9_-]+$")
    component_pattern = re.compile(r"^[A-Za-z0-9.\-_]+$")
    for section in ("channels", "operations"):
        for key in document.get(section, {}):
            if not key_pattern.match(key):
                problems.append(f"{section} key {key!r} has characters AsyncAPI refuses")
    for kind, entries in document.get("components", {}).items():
        for key in entries:
            if not component_pattern.match(key):
                problems.append(f"components.{kind} key {key!r} has characters AsyncAPI refuses")
    for key, operation in document.get("operations", {}).items():
        if operation.get("action") not in ("send", "receive"):
            problems.append(f"operations.{key}.action is not send or receive")
        channel_ref = operation.get("channel", {}).get("$ref", "")
        for message in operation.get("messages", []):
            if not message["$ref"].startswith(channel_ref + "/messages/"):
                problems.append(f"operations.{key}: message {message['$ref']} is not its channel's")
    for ref in _refs(document):
        if _resolve(document, ref) is None:
            problems.append(f"$ref {ref} points at nothing")
    return problems


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        return None
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node

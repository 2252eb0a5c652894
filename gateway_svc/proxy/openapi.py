"""One OpenAPI document for the whole system: the gateway's own endpoints plus every service's.

Each service's ``/api/schema/`` is fetched (through discovery) and cached for
``SCHEMA_TTL_SECONDS``, so a changed service shows up in the merged document
within that time. Services already serve their API under the gateway's
prefixes (``/api/catalog/...``); paths outside their prefix (``/internal/...``)
are not reachable through the gateway and are left out. Component names that
two services define differently are prefixed with the service's name.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from typing import Any

import httpx
from django.conf import settings
from eshop_contracts.users.v1 import users_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from common.api_versions import VERSIONING_DESCRIPTION
from common.discovery import discovery_from_settings

logger = logging.getLogger(__name__)

_SCHEMA_ACCEPT = "application/vnd.oai.openapi+json"
_client = httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0))
_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
_cache_lock = threading.Lock()


def service_schema(service: str) -> dict[str, Any] | None:
    """The service's OpenAPI document, at most SCHEMA_TTL_SECONDS old; None if unreachable."""
    ttl = settings.GATEWAY["SCHEMA_TTL_SECONDS"]
    with _cache_lock:
        cached = _cache.get(service)
        if cached and time.monotonic() - cached[0] < ttl:
            return cached[1]
    schema = None
    discovery = discovery_from_settings()
    discovery.start()
    for instance in discovery.instances(service):
        try:
            response = _client.get(
                f"{instance.url}/api/schema/", headers={"Accept": _SCHEMA_ACCEPT}
            )
            if response.status_code == 200:
                schema = response.json()
                break
        except (httpx.HTTPError, ValueError):
            logger.warning("No schema from %s at %s", service, instance.url)
    if schema is None and cached:
        schema = cached[1]  # keep the last good copy while the service is away
    with _cache_lock:
        _cache[service] = (time.monotonic(), schema)
    return schema


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _rename_refs(document: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    if not renames:
        return document
    text = json.dumps(document)
    for old, new in renames.items():
        text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
    return json.loads(text)


_PROBLEM_CONTENT = {
    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
}
_RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before trying again.",
    }
}
# What the gateway itself answers, before or instead of the service (proxy/app.py,
# proxy/upstreams.py, gateway_svc/deadlines.py), on every operation it proxies.
_GATEWAY_ANSWERS: dict[str, tuple[str, dict[str, Any]]] = {
    "401": (
        "The gateway found no valid access token: a malformed Authorization header or an "
        "invalid token (`authentication_failed`), or none where one is needed "
        "(`not_authenticated`).",
        {
            "WWW-Authenticate": {
                "schema": {"type": "string"},
                "description": "The authentication scheme to use.",
            }
        },
    ),
    "406": (
        "Accept names an API version that is not served (`unknown_api_version`); no "
        "`version` parameter means version 1.",
        {},
    ),
    "408": (
        "The request head or body took too long to arrive (`request_timeout`); the "
        "connection is closed.",
        {},
    ),
    "413": ("The request body is larger than the gateway accepts (`payload_too_large`).", {}),
    "414": (
        "The URL's path and query are longer than the gateway passes on, 8000 bytes "
        "(`uri_too_long`).",
        {},
    ),
    "429": (
        "Too many requests from this client or user (`too_many_requests`); see Retry-After.",
        _RETRY_AFTER,
    ),
    "502": ("The service failed or answered something unusable (`bad_gateway`...).", {}),
    "503": (
        "The service is unavailable: no instance, its circuit breaker is open or its "
        "bulkhead is full (`service_unavailable`, `service_busy`); Retry-After when known.",
        _RETRY_AFTER,
    ),
    "504": ("The service did not answer in time (`gateway_timeout`).", {}),
}
# Only the deadlines apply to the gateway's own views (token endpoints, JWKS).
_OWN_ANSWERS = ("408",)


def _add_answers(operation: dict[str, Any], statuses: tuple[str, ...] | None = None) -> None:
    """Document the gateway's own problem answers on one operation (the service's win)."""
    responses = operation.setdefault("responses", {})
    for status, (description, headers) in _GATEWAY_ANSWERS.items():
        if statuses is not None and status not in statuses:
            continue
        if status in responses:
            continue
        response: dict[str, Any] = {"description": description, "content": _PROBLEM_CONTENT}
        if headers:
            response["headers"] = headers
        responses[status] = response


def _operations(paths: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        operation
        for operations in paths.values()
        for operation in operations.values()
        if isinstance(operation, dict) and "responses" in operation
    ]


def merge(own: dict[str, Any], services: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The gateway's document with every reachable service's paths and components added."""
    merged = copy.deepcopy(own)
    merged["info"] = {
        **merged.get("info", {}),
        "title": "E-commerce platform API",
        "description": "Every service's public API as the gateway serves it, in one document. "
        + VERSIONING_DESCRIPTION,
    }
    paths = merged.setdefault("paths", {})
    for operation in _operations(paths):
        _add_answers(operation, _OWN_ANSWERS)
    components = merged.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    missing = []
    # Each service's component names as the merged document spells them.
    component_names: dict[str, dict[str, str]] = {}
    for service, document in services.items():
        if document is None:
            missing.append(service)
            continue
        prefix = f"/api/{service}/"
        service_schemas = document.get("components", {}).get("schemas", {})
        renames = {
            name: f"{service.capitalize()}{name}"
            for name, definition in service_schemas.items()
            if name in schemas and schemas[name] != definition
        }
        component_names[service] = {name: renames.get(name, name) for name in service_schemas}
        document = _rename_refs(document, renames)
        for name, definition in document.get("components", {}).get("schemas", {}).items():
            schemas[renames.get(name, name)] = definition
        for kind, entries in document.get("components", {}).items():
            if kind != "schemas":
                components.setdefault(kind, {}).update(entries)
        for path, operations in document.get("paths", {}).items():
            if not path.startswith(prefix):
                continue
            for operation in operations.values():
                if isinstance(operation, dict) and "operationId" in operation:
                    operation["tags"] = [service]
                    operation["operationId"] = f"{service}_{operation['operationId']}"
                if isinstance(operation, dict) and "responses" in operation:
                    _add_answers(operation)
            paths[path] = operations
    if "orders" in component_names:
        _add_order_details(paths, schemas, component_names)
    if services.get("orders") is not None:
        # The order status push channel (proxy/order_stream.py), with orders' API.
        from proxy.order_status import OPENAPI_PATH, openapi_operation

        events = openapi_operation()
        _add_answers(events, ("401", "406", "408", "429", "502", "503", "504"))
        paths[OPENAPI_PATH] = {"get": events}
    if missing:
        merged["info"]["description"] += (
            " Not available right now, so left out: " + ", ".join(sorted(missing)) + "."
        )
    return merged


ORDER_DETAILS_PATH = "/api/orders/{order_id}/details/"


def _ref(names: dict[str, dict[str, str]], service: str, name: str) -> dict[str, Any]:
    """A nullable reference to a service's component; any object when it is not there."""
    if name not in names.get(service, {}):
        return {"type": "object", "nullable": True}
    return {"allOf": [{"$ref": f"#/components/schemas/{names[service][name]}"}], "nullable": True}


_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BOOL: "boolean",
    FieldDescriptor.TYPE_INT32: "integer",
    FieldDescriptor.TYPE_INT64: "integer",
    FieldDescriptor.TYPE_UINT32: "integer",
    FieldDescriptor.TYPE_UINT64: "integer",
    FieldDescriptor.TYPE_DOUBLE: "number",
    FieldDescriptor.TYPE_FLOAT: "number",
}


def message_schema(
    descriptor: Descriptor, *, description: str, formats: dict[str, str]
) -> dict[str, Any]:
    """A protobuf message of scalars as rpc.calls writes it in JSON: every field, by name."""
    properties: dict[str, Any] = {}
    for field in descriptor.fields:
        schema: dict[str, Any] = {"type": _SCALARS[field.type]}
        if field.name in formats:
            schema["format"] = formats[field.name]
        if field.is_repeated:
            schema = {"type": "array", "items": schema}
        properties[field.name] = schema
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties),
    }


def _add_order_details(
    paths: dict[str, Any], schemas: dict[str, Any], names: dict[str, dict[str, str]]
) -> None:
    """The composition (proxy/composition.py): its answers as it gives them.

    Built from the services' own components (orders' ``Order`` and ``LineOut``,
    catalog's ``Product``) and, for the customer, from users.v1's ``CustomerSummary``
    message (users has no REST document of it: it is a gRPC answer), so it follows
    them when they change.
    """
    orders = names["orders"]
    schemas["OrderDetailsLine"] = {
        "allOf": [
            {"$ref": f"#/components/schemas/{orders.get('LineOut', 'LineOut')}"},
            {
                "type": "object",
                "properties": {"product": _ref(names, "catalog", "Product")},
                "required": ["product"],
            },
        ]
    }
    schemas["OrderDetailsCustomer"] = message_schema(
        users_pb2.CustomerSummary.DESCRIPTOR,
        description="What the users service says of the customer (users.v1 CustomerSummary).",
        formats={
            "credit_limit": "decimal",
            "credit_available": "decimal",
            "date_joined": "date-time",
        },
    )
    schemas["OrderDetails"] = {
        "type": "object",
        "description": "The order, each line's product and the customer. A product or the "
        "customer that could not be had is null, with a warning saying why.",
        "properties": {
            "order": {"$ref": f"#/components/schemas/{orders.get('Order', 'Order')}"},
            "lines": {"type": "array", "items": {"$ref": "#/components/schemas/OrderDetailsLine"}},
            "customer": {
                "allOf": [{"$ref": "#/components/schemas/OrderDetailsCustomer"}],
                "nullable": True,
            },
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["order", "lines", "customer", "warnings"],
    }
    operation: dict[str, Any] = {
        "operationId": "gateway_order_details",
        "summary": "An order with its products and customer, in one call",
        "tags": ["orders"],
        "parameters": [
            {
                "in": "path",
                "name": "order_id",
                "required": True,
                "schema": {"type": "string", "format": "uuid"},
            }
        ],
        # A customer's own order, or any for staff: a bearer token only (no session).
        "security": [{"bearerAuth": []}],
        "responses": {
            "200": {
                "description": "",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/OrderDetails"}}
                },
            },
            "404": {
                "description": "No such order, or not yours (`order_not_found`); an id that is "
                "not a UUID too.",
                "content": _PROBLEM_CONTENT,
            },
        },
    }
    _add_answers(operation, ("401", "406", "408", "429", "502", "503", "504"))
    paths[ORDER_DETAILS_PATH] = {"get": operation}

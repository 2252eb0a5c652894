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


def merge(own: dict[str, Any], services: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The gateway's document with every reachable service's paths and components added."""
    merged = copy.deepcopy(own)
    merged["info"] = {
        **merged.get("info", {}),
        "title": "E-commerce platform API",
        "description": "Every service's public API as the gateway serves it, in one document.",
    }
    paths = merged.setdefault("paths", {})
    components = merged.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    missing = []
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
            paths[path] = operations
    if missing:
        merged["info"]["description"] += (
            " Not available right now, so left out: " + ", ".join(sorted(missing)) + "."
        )
    return merged

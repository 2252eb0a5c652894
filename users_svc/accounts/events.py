"""The events users consumes, with users' copy of their contract.

``order.approved`` and ``order.cancelled`` come from orders (its
``orders/events.py`` holds the full schemas); users checks only what it
relies on: whose order it is.
"""

from __future__ import annotations

from common.events import register_event_type

_CUSTOMER_SCHEMA = {
    "type": "object",
    "required": ["customer_id"],
    "properties": {"customer_id": {"type": "string", "pattern": "^[0-9]+$"}},
}


def register() -> None:
    register_event_type("order.approved", _CUSTOMER_SCHEMA)
    register_event_type("order.cancelled", _CUSTOMER_SCHEMA)

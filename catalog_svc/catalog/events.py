"""The events catalog consumes, with catalog's copy of their contract.

``order.approved`` and ``order.cancelled`` come from orders (its
``orders/events.py`` holds the full schemas); catalog checks only what it
relies on: the lines, each a product id and a quantity.
"""

from __future__ import annotations

from common.events import register_event_type

_LINES_SCHEMA = {
    "type": "object",
    "required": ["lines"],
    "properties": {
        "lines": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["product_id", "quantity"],
                "properties": {
                    "product_id": {"type": "integer", "minimum": 1},
                    "quantity": {"type": "integer", "minimum": 1},
                },
            },
        }
    },
}


def register() -> None:
    register_event_type("order.approved", _LINES_SCHEMA)
    register_event_type("order.cancelled", _LINES_SCHEMA)

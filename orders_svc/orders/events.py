"""The contract of the events orders publishes: one JSON schema per type.

Every event appended to an order is validated here before it is written,
and published as it is (the event store is the outbox). Consumers keep
their own copy of the types they handle (catalog and users: ``order.approved``
and ``order.cancelled``); those copies and these must agree.
"""

from __future__ import annotations

from typing import Any

from common.events import register_event_type
from orders.models import OrderEventType

_MONEY = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}
_ID = {"type": "integer", "minimum": 1}
_QUANTITY = {"type": "integer", "minimum": 1}
_REASON = {"type": "string", "minLength": 1}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


_ORDERED_LINES = {
    "type": "array",
    "minItems": 1,
    "items": _object({"product_id": _ID, "quantity": _QUANTITY}),
}
_PRICED_LINES = {
    "type": "array",
    "minItems": 1,
    "items": _object({"product_id": _ID, "quantity": _QUANTITY, "unit_price": _MONEY}),
}
# What approved and cancelled carry, so consumers need not ask orders for anything.
_SETTLED = _object(
    {
        "customer_id": {"type": "string", "minLength": 1},
        "total": _MONEY,
        "currency": {"type": "string", "minLength": 3, "maxLength": 3},
        "lines": _PRICED_LINES,
    }
)

SCHEMAS: dict[str, dict[str, Any]] = {
    OrderEventType.PLACED: _object(
        {
            "customer_id": {"type": "string", "minLength": 1},
            "currency": {"type": "string", "minLength": 3, "maxLength": 3},
            "lines": _ORDERED_LINES,
        }
    ),
    OrderEventType.STOCK_RESERVED: _object({"lines": _PRICED_LINES, "total": _MONEY}),
    OrderEventType.STOCK_REFUSED: _object(
        {"reason": _REASON},
        {"product_ids": {"type": "array", "items": _ID}, "detail": {"type": "string"}},
    ),
    OrderEventType.CREDIT_RESERVED: _object({"amount": _MONEY}),
    OrderEventType.CREDIT_REFUSED: _object({"reason": _REASON}),
    OrderEventType.APPROVED: _SETTLED,
    OrderEventType.REJECTED: _object({"reason": _REASON}),
    OrderEventType.CANCEL_REQUESTED: _object({"requested_by": {"type": "string", "minLength": 1}}),
    OrderEventType.CANCELLED: _SETTLED,
}


def register() -> None:
    for event_type, schema in SCHEMAS.items():
        register_event_type(str(event_type), schema)

"""The Order aggregate: its state is whatever its events say, applied in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from orders.models import OrderEventType as E
from orders.models import OrderStatus


@dataclass
class OrderLine:
    product_id: int
    quantity: int
    unit_price: Decimal | None = None


@dataclass
class Order:
    id: UUID
    customer_id: str = ""
    status: str = ""
    lines: list[OrderLine] = field(default_factory=list)
    total: Decimal | None = None
    currency: str = ""
    rejection_reason: str = ""
    cancel_requested: bool = False
    version: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    history: list[tuple[str, datetime]] = field(default_factory=list)

    @classmethod
    def from_events(cls, order_id: UUID, events: list[Any]) -> Order:
        """Rebuild the order from its events (``type``, ``data``, ``version``, ``occurred_at``)."""
        order = cls(id=order_id)
        for event in events:
            order.apply(event.type, event.data, event.version, event.occurred_at)
        return order

    def apply(self, kind: str, data: dict[str, Any], version: int, at: datetime) -> None:
        if version != self.version + 1:
            raise ValueError(f"Event version {version} does not follow {self.version}.")
        if kind == E.PLACED:
            self.customer_id = str(data["customer_id"])
            self.currency = data["currency"]
            self.lines = [
                OrderLine(int(line["product_id"]), int(line["quantity"])) for line in data["lines"]
            ]
            self.status = OrderStatus.PENDING
            self.created_at = at
        elif kind == E.STOCK_RESERVED:
            prices = {int(ln["product_id"]): Decimal(ln["unit_price"]) for ln in data["lines"]}
            for line in self.lines:
                line.unit_price = prices.get(line.product_id)
            self.total = Decimal(data["total"])
        elif kind == E.APPROVED:
            self.status = OrderStatus.APPROVED
        elif kind == E.REJECTED:
            self.status = OrderStatus.REJECTED
            self.rejection_reason = data["reason"]
        elif kind == E.CANCEL_REQUESTED:
            self.cancel_requested = True
        elif kind == E.CANCELLED:
            self.status = OrderStatus.CANCELLED
        # stock_refused, credit_reserved and credit_refused record saga progress;
        # the status moves with approved / rejected, which the saga appends.
        self.version = version
        self.updated_at = at
        self.history.append((kind, at))

    def snapshot(self) -> dict[str, Any]:
        """The state appends need, as JSON: what the saga keeps instead of rereading events."""
        return {
            "customer_id": self.customer_id,
            "status": self.status,
            "currency": self.currency,
            "lines": [
                [line.product_id, line.quantity, _text(line.unit_price)] for line in self.lines
            ],
            "total": _text(self.total),
            "rejection_reason": self.rejection_reason,
            "cancel_requested": self.cancel_requested,
            "version": self.version,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    @classmethod
    def from_snapshot(cls, order_id: UUID, state: dict[str, Any]) -> Order:
        """The order as ``snapshot()`` left it (without its history)."""
        return cls(
            id=order_id,
            customer_id=state["customer_id"],
            status=state["status"],
            currency=state["currency"],
            lines=[
                OrderLine(product_id, quantity, None if price is None else Decimal(price))
                for product_id, quantity, price in state["lines"]
            ],
            total=None if state["total"] is None else Decimal(state["total"]),
            rejection_reason=state["rejection_reason"],
            cancel_requested=state["cancel_requested"],
            version=state["version"],
            created_at=_moment(state["created_at"]),
            updated_at=_moment(state["updated_at"]),
        )

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.lines)

    def settled_data(self) -> dict[str, Any]:
        """What ``order.approved`` and ``order.cancelled`` tell consumers (sold, order counts)."""
        return {
            "customer_id": self.customer_id,
            "total": str(self.total),
            "currency": self.currency,
            "lines": [
                {
                    "product_id": line.product_id,
                    "quantity": line.quantity,
                    "unit_price": str(line.unit_price),
                }
                for line in self.lines
            ],
        }


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)

"""Event handlers (``EVENT_HANDLERS``, run by ``manage.py consume_events``): thin on purpose.

The consumer calls each in the transaction that also records the event in
the inbox, so a redelivered event never counts twice. The order's decision
finishes catalog's part in its saga: ``order.approved`` commits the held
stock, ``order.rejected`` releases whatever is held (or leaves a marker that
turns a late reserve into a no-op).
"""

from __future__ import annotations

from uuid import UUID

from catalog.services import SoldLine, sold_counts_add, stock_release, stock_settle
from common.events import Event


def _sold_lines(event: Event) -> list[SoldLine]:
    return [SoldLine(line["product_id"], line["quantity"]) for line in event.data["lines"]]


def order_approved(event: Event) -> None:
    stock_settle(order_id=UUID(event.subject))
    sold_counts_add(lines=_sold_lines(event))


def order_rejected(event: Event) -> None:
    stock_release(order_id=UUID(event.subject))


def order_cancelled(event: Event) -> None:
    sold_counts_add(lines=_sold_lines(event), returned=True)

"""Event handlers (``EVENT_HANDLERS``, run by ``manage.py consume_events``): thin on purpose.

The consumer calls each in the transaction that also records the event in
the inbox, so a redelivered event never counts twice. An approved order needs
nothing more from catalog: its units left the shelf, and were counted sold,
when catalog reserved them. ``order.rejected`` gives them back (or leaves a
marker that turns a late reserve into a no-op).
"""

from __future__ import annotations

from uuid import UUID

from catalog.services import SoldLine, sold_counts_add, stock_reject
from common.events import Event


def order_rejected(event: Event) -> None:
    stock_reject(order_id=UUID(event.subject))


def order_cancelled(event: Event) -> None:
    # The cancel saga's stock_release put the units back on the shelf.
    lines = [SoldLine(line["product_id"], line["quantity"]) for line in event.data["lines"]]
    sold_counts_add(lines=lines, returned=True)

"""Event handlers (``EVENT_HANDLERS``, run by ``manage.py consume_events``): thin on purpose.

The consumer calls each in the transaction that also records the event in
the inbox, so a redelivered event never counts twice.
"""

from __future__ import annotations

from catalog.services import SoldLine, sold_counts_add
from common.events import Event


def _sold_lines(event: Event) -> list[SoldLine]:
    return [SoldLine(line["product_id"], line["quantity"]) for line in event.data["lines"]]


def order_approved(event: Event) -> None:
    sold_counts_add(lines=_sold_lines(event))


def order_cancelled(event: Event) -> None:
    sold_counts_add(lines=_sold_lines(event), returned=True)

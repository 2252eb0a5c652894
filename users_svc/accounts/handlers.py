"""Event handlers (``EVENT_HANDLERS``, run by ``manage.py consume_events``): thin on purpose.

The consumer calls each in the transaction that also records the event in
the inbox, so a redelivered event never counts twice.
"""

from __future__ import annotations

from accounts.services import order_count_add
from common.events import Event


def order_approved(event: Event) -> None:
    order_count_add(customer_id=int(event.data["customer_id"]), delta=1)


def order_cancelled(event: Event) -> None:
    order_count_add(customer_id=int(event.data["customer_id"]), delta=-1)

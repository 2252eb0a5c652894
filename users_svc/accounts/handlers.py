"""Event handlers (``EVENT_HANDLERS``, run by ``manage.py consume_events``): thin on purpose.

The consumer calls each in the transaction that also records the event in
the inbox, so a redelivered event never counts twice. The order's decision
finishes users' part in its saga: ``order.approved`` captures the held
credit, ``order.rejected`` releases whatever is held (or leaves a marker that
turns a late reserve into a no-op).
"""

from __future__ import annotations

from uuid import UUID

from accounts.services import credit_release, credit_settle, order_count_add
from common.events import Event


def order_approved(event: Event) -> None:
    credit_settle(order_id=UUID(event.subject))
    order_count_add(customer_id=int(event.data["customer_id"]), delta=1)


def order_rejected(event: Event) -> None:
    credit_release(order_id=UUID(event.subject))


def order_cancelled(event: Event) -> None:
    order_count_add(customer_id=int(event.data["customer_id"]), delta=-1)

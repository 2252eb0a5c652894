"""Event handlers (``EVENT_HANDLERS``, run by ``manage.py consume_events``): thin on purpose.

The consumer calls each in the transaction that also records the event in
the inbox, so a redelivered event never counts twice. An approved order needs
nothing more from users: its credit was spent, and the order counted, when
users reserved it. ``order.rejected`` gives the credit back (or leaves a marker
that turns a late reserve into a no-op).
"""

from __future__ import annotations

from uuid import UUID

from accounts.services import credit_reject, order_count_add
from common.events import Event


def order_rejected(event: Event) -> None:
    credit_reject(order_id=UUID(event.subject))


def order_cancelled(event: Event) -> None:
    # The cancel saga's credit_release gave the credit back.
    order_count_add(customer_id=int(event.data["customer_id"]), delta=-1)

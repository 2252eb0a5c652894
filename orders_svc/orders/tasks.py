"""Replies from the saga's participants arrive here."""

from celery import shared_task

from orders.saga import saga_reply


@shared_task(name="orders.saga_reply", acks_late=True)
def saga_reply_task(
    order_id: str, step: str, ok: bool, reason: str = "", data: dict | None = None
) -> None:
    saga_reply(order_id=order_id, step=step, ok=ok, reason=reason, data=data)

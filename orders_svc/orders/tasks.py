"""Replies from the saga's participants arrive here (signed; ``common.commands.VerifiedTask``)."""

from celery import shared_task

from orders.saga import saga_reply


@shared_task(name="orders.saga_reply", acks_late=True, bind=True)
def saga_reply_task(
    self, order_id: str, step: str, ok: bool, reason: str = "", data: dict | None = None
) -> None:
    # An inconsistent reply raises ReplyInconsistent: the worker dead-letters it.
    saga_reply(
        order_id=order_id,
        step=step,
        ok=ok,
        sender=self.request.signed_by,
        reason=reason,
        data=data,
    )

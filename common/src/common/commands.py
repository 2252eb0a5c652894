"""Commands and replies between services, as Celery tasks on the receiver's queue.

A service never imports another's code: it names the task (``catalog.stock_reserve``)
and the queue (the receiving service's name), and the receiver's worker runs it.
Sent only after the sender's transaction commits, so a rolled-back change
never asks anything of anyone.
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction


def command_send(*, service: str, task: str, **kwargs: Any) -> None:
    """Send ``task(**kwargs)`` to ``service``'s queue once the current transaction commits."""
    queue = settings.QUEUE_PREFIX + service
    transaction.on_commit(
        lambda: current_app.send_task(task, kwargs=kwargs, queue=queue), robust=False
    )

"""Commands and replies between services, as Celery tasks on the receiver's queue.

A service never imports another's code: it names the task (``catalog.stock_reserve``)
and the queue (the receiving service's name), and the receiver's worker runs it.
Sent only after the sender's transaction commits, so a rolled-back change
never asks anything of anyone.

A send never fails the sender's work. By the time it runs, the change it
follows is committed: raising then could only turn a saved order into a 500,
or a participant's finished step into a failed task. So a send the broker
refuses is logged and dropped, and whoever waits for the answer asks again:
the saga keeps every command it waits on with a deadline, and its watchdog
resends late ones (and holds off while ``broker_reachable()`` says no, so an
outage does not use up a saga's attempts). Publishing is bounded
(``PUBLISH_RETRY_POLICY``): with the broker down a request loses milliseconds,
not the seconds of Celery's default publish retries.

Chaos testing: with the setting ``CHAOS_DUPLICATE_DELIVERY`` (environment
variable of the same name) every command and reply is sent twice, to show
that receivers shrug duplicates off. The outbox relay does the same for events.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

from common.events.broker import broker_connect, broker_connection, broker_errors
from common.tracing import trace_context_inject, tracer

logger = logging.getLogger(__name__)

# One quick retry on a fresh connection (a pooled one may have lost its broker
# since its last use), then give up: the sender's deadline covers the rest. A
# refused connection fails at once; a broker host that drops packets costs up
# to two connect timeouts (Celery's broker_connection_timeout, 4 s by default).
PUBLISH_RETRY_POLICY: dict[str, float] = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


def command_send(*, service: str, task: str, **kwargs: Any) -> None:
    """Send ``task(**kwargs)`` to ``service``'s queue once the current transaction commits.

    The send is a span of the work that asks for it: the trace context is taken
    now, since the commit may come after that work's own span has ended (the
    saga's watchdog), and the message carries it to the receiving worker.
    """
    queue = settings.QUEUE_PREFIX + service
    sender = otel_context.get_current()
    transaction.on_commit(
        lambda: command_publish(task=task, queue=queue, kwargs=kwargs, context=sender)
    )


def command_publish(
    *, task: str, queue: str, kwargs: dict[str, Any], context: Context | None = None
) -> bool:
    """Publish now; False, logged, when the broker did not take it (nothing is raised).

    Under a PRODUCER span (child of ``context``, default the current one) whose
    W3C context goes in the message headers; the worker's CONSUMER span for
    the task continues it (opentelemetry-instrumentation-celery).
    """
    copies = 2 if getattr(settings, "CHAOS_DUPLICATE_DELIVERY", False) else 1
    with tracer.start_as_current_span(
        f"{task} send",
        context=context,
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "celery",
            "messaging.destination.name": queue,
            "messaging.operation.type": "send",
            "celery.task_name": task,
        },
    ) as span:
        return _command_publish(task=task, queue=queue, kwargs=kwargs, copies=copies, span=span)


def _command_publish(
    *, task: str, queue: str, kwargs: dict[str, Any], copies: int, span: trace.Span
) -> bool:
    headers = trace_context_inject() or None
    try:
        for _ in range(copies):
            current_app.send_task(
                task,
                kwargs=kwargs,
                queue=queue,
                headers=headers,
                retry=True,
                retry_policy=PUBLISH_RETRY_POLICY,
            )
    except (OperationalError, OSError) as error:  # what a down or lost broker raises
        span.set_status(trace.StatusCode.ERROR, repr(error))
        logger.warning("Broker did not take %s for %s (%s); left to a resend", task, queue, error)
        return False
    except Exception:
        # Broad on purpose: the change this command follows is committed, and
        # no error here may undo the caller's success.
        logger.exception("Could not send %s to %s; left to a resend", task, queue)
        span.set_status(trace.StatusCode.ERROR, "not sent")
        return False
    return True


class BrokerUnreachable(Exception):
    """The broker refused a connection: wait for it rather than act as if it had answered."""


def broker_reachable() -> bool:
    """Whether the broker accepts a new connection now (tried once, no waiting).

    A fresh connection rather than Celery's pooled ones: those only learn that
    their broker went away when they are next used.
    """
    connection = broker_connection()
    try:
        broker_connect(connection)
    except broker_errors(connection):
        return False
    finally:
        connection.release()
    return True

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

Trust: every command and reply is signed by its sender (``common.signing``:
task name, task id, args, kwargs and the sender's name, in the ``x-signer`` and
``x-signature`` headers), and every task of a service runs through
``VerifiedTask``, which acts on a message only when the signature verifies and
the sender may send that task (``COMMAND_SENDERS``). A message that fails, or
whose task refuses it (``MessageRefused``, e.g. a saga reply that does not match
what was asked), goes to ``<service>.commands.dlq`` with the reason
(``manage.py dlq --commands``), and nothing of it is done.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task, current_app
from celery.exceptions import Reject
from celery.utils.nodenames import anon_nodename
from django.conf import settings
from django.db import transaction
from kombu import Producer, Queue
from kombu.exceptions import OperationalError
from kombu.utils import json as kombu_json
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

from common.contracts import command_validate
from common.events.broker import (
    broker_connect,
    broker_connection,
    broker_errors,
    command_queue_name,
    dead_letter_publish,
    dead_letter_queue,
    dead_letter_queue_name,
)
from common.quorum import connection_is_rabbitmq
from common.signing import (
    HEADER_SIGNATURE,
    HEADER_SIGNER,
    MessageRefused,
    command_sign,
    command_verify,
)
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
    trace_headers = trace_context_inject()
    try:
        for _ in range(copies):
            # The id is chosen here so that the signature covers it.
            task_id = str(uuid.uuid4())
            signature = command_sign(task=task, task_id=task_id, args=(), kwargs=kwargs)
            _task_message_publish(
                current_app._get_current_object(),
                task=task,
                task_id=task_id,
                queue=queue,
                kwargs=kwargs,
                headers={**trace_headers, **signature},
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


@dataclass(frozen=True)
class _Route:
    """Where Celery's ``send_task`` would publish a task for a queue, and how."""

    exchange: str
    routing_key: str
    delivery_mode: int | str
    serializer: str
    compression: str | None
    declare: tuple[Queue, ...]
    origin: str


_routes: weakref.WeakKeyDictionary[Celery, dict[tuple[str, str], _Route]] = (
    weakref.WeakKeyDictionary()
)


def _route(app: Celery, *, task: str, queue: str) -> _Route:
    """The task's route to the queue, worked out once per app as Celery's
    ``send_task_message`` does (``task_routes`` may route by the task's name)."""
    known = _routes.setdefault(app, {})
    route = known.get((task, queue))
    if route is None:
        options = app.amqp.router.route({"queue": queue}, task, (), {}, None)
        declared: Queue = options["queue"]
        exchange, routing_key = options.get("exchange"), options.get("routing_key")
        if (not exchange or not routing_key) and (declared.exchange.type or "direct") == "direct":
            exchange, routing_key = "", declared.name  # the default exchange, straight to it
        else:
            exchange = getattr(exchange, "name", exchange) or declared.exchange.name
            routing_key = routing_key or declared.routing_key
        route = known[task, queue] = _Route(
            exchange=exchange,
            routing_key=routing_key,
            delivery_mode=declared.exchange.delivery_mode or app.conf.task_default_delivery_mode,
            serializer=app.conf.task_serializer,
            compression=app.conf.task_compression,
            declare=(declared,),
            origin=anon_nodename(),
        )
    return route


def _task_message_publish(
    app: Celery,
    *,
    task: str,
    task_id: str,
    queue: str,
    kwargs: dict[str, Any],
    headers: dict[str, str],
) -> None:
    """Publish the Celery (protocol 2) message ``app.send_task`` would, for a task by name.

    Not ``send_task`` itself: it works out the route, the options and a dozen
    settings again for every message (each through Django's settings, most of them
    missing there), 0.58 ms of CPU a command against 0.2 ms for this on RabbitMQ
    (issue #16), three times an order. Same message, same producer pool, same
    bounded retries (a test compares the two messages).
    """
    route = _route(app, task=task, queue=queue)
    parent = app.current_worker_task  # a command sent by a task: its id, as Celery records
    message = app.amqp.as_task_v2(
        task_id,
        task,
        args=(),
        kwargs=kwargs,
        reply_to=app.thread_oid,
        root_id=(parent.request.root_id or parent.request.id) if parent else None,
        parent_id=parent.request.id if parent else None,
        origin=route.origin,
        ignore_result=None,
        # Celery would put a repr of the arguments in every message for monitors
        # (flower, `celery inspect`): 15 % of a saga command's publish (issue #16),
        # and a copy of grants and prices in its headers.
        argsrepr="()",
        kwargsrepr=_kwargs_shown(kwargs),
    )
    message.headers.update(headers)
    with app.producer_pool.acquire(block=True) as producer:
        # kombu declares a queue once per connection, but binds a copy of it to ask:
        # 15 % of a publish. Asked here the cheap way; a new connection declares again.
        declared = producer.connection.declared_entities
        declare = [entity for entity in route.declare if hash(entity) not in declared]
        producer.publish(
            message.body,
            exchange=route.exchange,
            routing_key=route.routing_key,
            serializer=route.serializer,
            compression=route.compression,
            delivery_mode=route.delivery_mode,
            declare=declare,
            headers=message.headers,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
            **message.properties,
        )


def _kwargs_shown(kwargs: Mapping[str, Any]) -> str:
    """What monitors show of a command's arguments: their names, and the order id."""
    shown = (
        f"{name!r}: {value!r}" if name == "order_id" else f"{name!r}: ..."
        for name, value in kwargs.items()
    )
    return "{" + ", ".join(shown) + "}"


# What a Celery (protocol 2) message says in its headers, kept when it is dead-lettered
# so that a replay is the same message again; with the signature and trace headers.
_CELERY_HEADERS = (
    "lang",
    "task",
    "id",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
)
_KEPT_HEADERS = (*_CELERY_HEADERS, HEADER_SIGNER, HEADER_SIGNATURE, "traceparent", "tracestate")


class VerifiedTask(Task):
    """The base of every task of a service (``make_celery_app``): a message is acted on
    only when it is signed by a service that may send this task.

    Checked before the task's body runs; a refused message, or one its body refuses
    by raising ``MessageRefused`` (its transaction rolled back), is dead-lettered with
    the reason and acknowledged, so it is neither acted on nor retried. The verified
    sender is ``self.request.signed_by`` for a bound task.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly:
            return super().__call__(*args, **kwargs)  # a plain call in this process: no message
        if request.is_eager:
            return self.run(*args, **kwargs)  # task.apply(): in this process too
        try:
            request.signed_by = command_verify(
                task=self.name,
                task_id=request.id,
                args=args,
                kwargs=kwargs,
                headers={
                    HEADER_SIGNER: request.get(HEADER_SIGNER),
                    HEADER_SIGNATURE: request.get(HEADER_SIGNATURE),
                },
            )
            # Its kwargs as the task's contract says (contracts/commands): else refused.
            command_validate(self.name, kwargs)
            # Not super().__call__: it would push a new, empty request over the worker's.
            return self.run(*args, **kwargs)
        except MessageRefused as refused:
            logger.error(
                "%s %s refused and dead-lettered: %s",
                self.name,
                request.id,
                refused,
                extra={"task_id": request.id},
            )
            trace.get_current_span().set_status(trace.StatusCode.ERROR, "dead-lettered")
            command_dead_letter(
                task=self.name, request=request, args=args, kwargs=kwargs, reason=str(refused)
            )
            return None


def command_dead_letter(
    *, task: str, request: Any, args: Sequence[Any], kwargs: Mapping[str, Any], reason: str
) -> None:
    """Put a refused command on ``<service>.commands.dlq``, as the Celery message it was.

    Rebuilt from what the worker received (task, id, args, kwargs, and the Celery,
    signature and trace headers), so ``manage.py dlq --commands replay`` sends the same
    signed message again (one refused only for a public key not deployed yet then passes).
    Confirmed by the broker before the worker acknowledges the original; a broker that
    refuses it puts the original back.
    """
    headers = {name: request.get(name) for name in _KEPT_HEADERS if request.get(name) is not None}
    headers["task"], headers["id"] = task, request.id
    queue = command_queue_name()
    body = kombu_json.dumps(
        [
            list(args),
            dict(kwargs),
            {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
        ]
    )
    connection = broker_connection()
    try:
        broker_connect(connection)
        with connection.channel() as channel:
            dead = dead_letter_queue(kind="commands", rabbitmq=connection_is_rabbitmq(connection))
            dead(channel).declare()
            dead_letter_publish(
                Producer(channel),
                body,
                queue=dead_letter_queue_name(kind="commands"),
                reason=reason,
                attempts=0,
                routing_key=queue,
                exchange="",
                headers=headers,
                content_type="application/json",
                content_encoding="utf-8",
                message_id=request.id,
            )
    except broker_errors(connection) as error:
        # Never lose it: back to its queue, to be refused (and dead-lettered) again.
        logger.warning("could not dead-letter %s %s (%r); requeued", task, request.id, error)
        raise Reject(reason, requeue=True) from error
    finally:
        connection.release()


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

"""Quorum queues on RabbitMQ: what every declaration of a durable queue of ours says.

On RabbitMQ every durable queue the code declares (each service's Celery task
queue, each consumer's ``<service>.events`` and its ``.events.dlq``) is a
quorum queue: replicated, and what RabbitMQ recommends for durable queues
since classic mirroring went away. Quorum queues are always durable and never
exclusive or auto-delete, and our queues use no other argument (no TTL,
priority or dead-letter exchange: retries and dead-lettering are our own
code), so ``x-queue-type`` is the only argument they carry.

On any other transport (the embedded ``filesystem://`` broker of ``make run``,
``memory://``) queues are declared without arguments, exactly as before.

RabbitMQ refuses to redeclare a queue with another ``x-queue-type`` (nor
without one, once it is a quorum queue): ``PRECONDITION_FAILED - inequivalent
arg 'x-queue-type'``. So every declarer must say the same, which is why this
is one module; a broker that still holds classic queues of the same names
(a long-running development broker) needs them deleted once
(``rabbitmqctl delete_queue <name>``, after draining them) or a new
``QUEUE_PREFIX``. Passive declares (queue depth for ``/metrics``) ignore
arguments and work on either type.

Two things to know. On RabbitMQ 4.0 and later a quorum queue has a default
delivery limit of 20: a message given back (rejected with requeue) that often
is dropped, as no dead-letter exchange is set. Our event consumers never
reject (they ack, or dead-letter to their DLQ themselves); a Celery task is
requeued when its worker process dies (``TASK_REJECT_ON_WORKER_LOST``), so a
task that kills its worker 20 times is dropped there: a poison message.
And Celery, seeing quorum queues, turns global QoS off and sets up its native
delayed delivery (``celery_delayed_*`` queues); our tasks use no ETA or
countdown, which with quorum queues on direct exchanges would hold a worker.
"""

from __future__ import annotations

from typing import Any

from kombu import Connection

QUEUE_TYPE_ARGUMENT = "x-queue-type"
QUORUM = "quorum"
CLASSIC = "classic"

# URL schemes kombu serves with an AMQP 0-9-1 client, that is RabbitMQ.
RABBITMQ_SCHEMES = frozenset({"amqp", "amqps", "pyamqp", "librabbitmq"})


def broker_is_rabbitmq(url: str) -> bool:
    """Whether ``url`` (or the first of several, ``;``-separated) names RabbitMQ."""
    first = url.split(";", 1)[0].strip()
    scheme = first.partition("://")[0].lower()
    return scheme.split("+", 1)[0] in RABBITMQ_SCHEMES


def quorum_queue_arguments(*, rabbitmq: bool) -> dict[str, Any]:
    """The arguments of a durable queue of ours: quorum on RabbitMQ, none elsewhere."""
    return {QUEUE_TYPE_ARGUMENT: QUORUM} if rabbitmq else {}


def connection_is_rabbitmq(connection: Connection) -> bool:
    """Whether the connection's transport is an AMQP one (as Celery decides it too)."""
    return connection.transport.driver_type == "amqp"


def celery_queue_settings(broker_url: str) -> dict[str, Any]:
    """The ``CELERY_*`` settings that make every task queue a quorum queue on RabbitMQ.

    ``TASK_DEFAULT_QUEUE_TYPE`` covers the service's own queue (the worker's
    ``-Q``); ``TASK_CREATE_MISSING_QUEUE_TYPE`` covers the queues of the other
    services a command is sent to (Celery declares the target queue on
    publish, and a declare without ``x-queue-type`` would be refused once the
    receiver made it a quorum queue). ``WORKER_DETECT_QUORUM_QUEUES`` (Celery's
    default, said here because it matters) makes the worker use per-consumer
    prefetch: quorum queues refuse a consumer on a channel with global QoS.
    """
    queue_type = QUORUM if broker_is_rabbitmq(broker_url) else CLASSIC
    return {
        "CELERY_TASK_DEFAULT_QUEUE_TYPE": queue_type,
        "CELERY_TASK_CREATE_MISSING_QUEUE_TYPE": queue_type,
        "CELERY_WORKER_DETECT_QUORUM_QUEUES": True,
    }

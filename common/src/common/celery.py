"""The Celery application of a service, configured from its Django settings."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init
from celery.worker.consumer import Consumer as CeleryConsumer

from common.tracing import tracing_configure


def make_celery_app(*, service: str, settings_module: str) -> Celery:
    """A Celery app reading ``CELERY_*`` settings, with tasks found in the service's apps.

    Every service's tasks go to its own queue (``task_default_queue`` is the
    service name), so a worker started with ``-Q <service>`` serves exactly
    that service.

    Every task is a ``common.commands.VerifiedTask``: it runs only for a message
    signed by a service allowed to send it (``COMMAND_SENDERS``); anything else is
    dead-lettered.

    A worker traces (``common.tracing``, as ``<service>-worker``): every task
    runs in a CONSUMER span continuing the trace its message carries. Set up
    when the worker starts, and again (a no-op unless the pool forked) in each
    pool process.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    app = Celery(service, task_cls="common.commands:VerifiedTask")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.autodiscover_tasks()

    def _tracing_configure(**_: object) -> None:
        tracing_configure(service=service, role="worker")

    worker_init.connect(_tracing_configure, weak=False)
    worker_process_init.connect(_tracing_configure, weak=False)
    return app


@task_prerun.connect
def _database_connections_tidy(**_: object) -> None:
    """What Django does around a request, around a task: drop a connection that broke
    or outlived ``CONN_MAX_AGE``, keep a healthy one (``CELERY_DB_REUSE_MAX``), and
    (``common.db``) skip the health check of one a task used a moment ago."""
    from common.db import connections_tidy

    connections_tidy()


@task_postrun.connect
def _database_connections_proved(**_: object) -> None:
    from common.db import connections_proved, connections_tidy

    connections_proved()
    connections_tidy()


class Consumer(CeleryConsumer):
    """Celery's worker consumer without native delayed delivery (``CELERY_WORKER_CONSUMER``).

    On quorum queues Celery's workers declare the shared ``celery_delayed_*``
    exchanges and queues and bind every task queue to them: with one broker user
    per service (``common.broker_access``) that would be a way into every queue for
    any user allowed to publish there. Our tasks use no ETA or countdown.
    """

    class Blueprint(CeleryConsumer.Blueprint):
        default_steps = [
            step
            for step in CeleryConsumer.Blueprint.default_steps
            if not step.endswith(":DelayedDelivery")
        ]

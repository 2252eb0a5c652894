"""The Celery application of a service, configured from its Django settings."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

from common.observability import trace_continue, traceparent_var


def make_celery_app(*, service: str, settings_module: str) -> Celery:
    """A Celery app reading ``CELERY_*`` settings, with tasks found in the service's apps.

    Every service's tasks go to its own queue (``task_default_queue`` is the
    service name), so a worker started with ``-Q <service>`` serves exactly
    that service.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    app = Celery(service)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.autodiscover_tasks()
    return app


@task_prerun.connect
def _trace_continue(task: Any = None, **_: object) -> None:
    """Run the task in the trace of whoever sent it (its ``traceparent`` header), as a new span."""
    if task is None:
        return
    incoming = getattr(task.request, "traceparent", None)
    task.request.trace_token = traceparent_var.set(
        trace_continue(incoming if isinstance(incoming, str) else None)
    )


@task_postrun.connect
def _trace_end(task: Any = None, **_: object) -> None:
    token = getattr(task.request, "trace_token", None) if task is not None else None
    if token is not None:
        task.request.trace_token = None
        with contextlib.suppress(ValueError):  # set in another context: nothing to undo here
            traceparent_var.reset(token)


@task_prerun.connect
@task_postrun.connect
def _database_connections_tidy(**_: object) -> None:
    """What Django does around a request, around a task: drop a connection that broke
    or outlived ``CONN_MAX_AGE``, keep a healthy one (``CELERY_DB_REUSE_MAX``)."""
    from django.db import close_old_connections

    close_old_connections()

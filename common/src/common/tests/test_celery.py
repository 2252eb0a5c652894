"""Celery workers keep their database connection between tasks, as gunicorn between requests."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from celery.app.task import Context
from celery.fixups.django import DjangoWorkerFixup
from celery.signals import task_postrun, task_prerun
from django.db import connection

from common.celery import make_celery_app
from common.observability import trace_id, traceparent_var


@pytest.mark.django_db(transaction=True)
def test_a_healthy_connection_is_kept_and_an_obsolete_one_dropped_around_tasks(settings):
    connection.ensure_connection()
    kept = connection.connection

    task_prerun.send(sender=None)
    task_postrun.send(sender=None)
    assert connection.connection is kept

    connection.close_at = time.monotonic() - 1  # past CONN_MAX_AGE
    task_postrun.send(sender=None)
    assert connection.connection is None


def test_the_django_fixup_no_longer_closes_the_connection_after_every_task():
    app = make_celery_app(service="probe", settings_module="common.tests.settings")
    fixup = DjangoWorkerFixup(app)
    fixup._close_database = lambda: pytest.fail("closed after a single task")  # type: ignore[method-assign]

    for _ in range(100):
        fixup.close_database()


def test_a_task_runs_in_its_senders_trace_as_a_new_span_and_leaves_no_trace_behind():
    sender = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    task = SimpleNamespace(request=Context(traceparent=sender))
    seen = []

    task_prerun.send(sender=None, task=task)
    seen.append(traceparent_var.get())
    task_postrun.send(sender=None, task=task)

    assert seen[0].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert seen[0] != sender  # a span of its own
    assert seen[0].endswith("-01")
    assert traceparent_var.get() == ""


def test_a_task_sent_without_a_trace_starts_one():
    task = SimpleNamespace(request=Context())

    task_prerun.send(sender=None, task=task)
    started = traceparent_var.get()
    task_postrun.send(sender=None, task=task)

    assert trace_id(started) != "-"

"""Celery workers keep their database connection between tasks, as gunicorn between requests,
and run every task in a span of the trace that sent it."""

from __future__ import annotations

import time

import pytest
from celery.app.task import Context
from celery.fixups.django import DjangoWorkerFixup
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init
from django.db import connection
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor

import common.celery
from common.celery import make_celery_app


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


def test_a_worker_sets_up_tracing_as_the_services_worker_when_it_starts(monkeypatch):
    calls = []
    monkeypatch.setattr(common.celery, "tracing_configure", lambda **kwargs: calls.append(kwargs))
    make_celery_app(service="probe", settings_module="common.tests.settings")

    worker_init.send(sender=None)
    assert {"service": "probe", "role": "worker"} in calls
    calls.clear()
    worker_process_init.send(sender=None)  # a forked pool process: asked again (a no-op there)
    assert {"service": "probe", "role": "worker"} in calls


class ProbeTask:
    name = "probe.do"


def test_a_task_runs_in_a_consumer_span_continuing_its_senders_trace(spans):
    sender = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    task = ProbeTask()
    task.request = Context(id="t-1", traceparent=sender)
    instrumentor = CeleryInstrumentor()
    instrumentor.instrument()
    try:
        task_prerun.send(sender=task, task_id="t-1", task=task)
        task_postrun.send(sender=task, task_id="t-1", task=task)
    finally:
        instrumentor.uninstrument()

    run = spans.named("run/probe.do")
    assert run.kind == trace.SpanKind.CONSUMER
    assert f"{run.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert f"{run.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert not trace.get_current_span().get_span_context().is_valid  # nothing left behind


@pytest.mark.django_db(transaction=True)
def test_a_connection_a_task_used_a_moment_ago_is_not_health_checked_again(monkeypatch):
    from common import db

    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    connection.close()
    connection.ensure_connection()  # read at connect
    checks = []
    real_is_usable = connection.is_usable
    monkeypatch.setattr(connection, "is_usable", lambda: checks.append(1) or real_is_usable())

    def task() -> None:
        task_prerun.send(sender=None)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        task_postrun.send(sender=None)

    task()  # never proved: checked before its first query
    assert checks == [1]
    task()  # the task before used it without error a moment ago
    assert checks == [1]

    raw, proved_at = connection.eshop_proved
    connection.eshop_proved = (raw, proved_at - db.FRESH_SECONDS)  # idle since: checked again
    task()
    assert checks == [1, 1]

    connection.errors_occurred = True  # a database error (not a constraint's) since
    task()
    assert len(checks) == 3

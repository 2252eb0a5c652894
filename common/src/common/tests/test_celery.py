"""Celery workers keep their database connection between tasks, as gunicorn between requests."""

from __future__ import annotations

import time

import pytest
from celery.fixups.django import DjangoWorkerFixup
from celery.signals import task_postrun, task_prerun
from django.db import connection

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

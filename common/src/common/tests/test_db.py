"""A web request's database health check, without the round trip of ``SELECT 1``."""

from __future__ import annotations

import select

import pytest
from django.core.signals import request_started
from django.db import connection, connections

from common.db import connection_quiet, connections_checked_quietly

QUIET_CHECK = "eshop-quiet-check"


@pytest.fixture
def checked_connection(monkeypatch):
    """The default connection as a service has it: health checked, kept between requests,
    and the quiet check after Django's tidy-up at ``request_started`` (Django's test client
    moves the tidy-up to the end of the receivers after each of its requests)."""
    request_started.disconnect(dispatch_uid=QUIET_CHECK)
    request_started.connect(connections_checked_quietly, dispatch_uid=QUIET_CHECK)
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    connection.close()
    connection.ensure_connection()  # both read at connect
    yield connection
    connection.close()


def _is_usable_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real_is_usable = connection.is_usable
    monkeypatch.setattr(connection, "is_usable", lambda: calls.append(1) or real_is_usable())
    return calls


def _ended_by_the_server(raw) -> None:
    """End the connection's backend from another connection, as a restart would."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [raw.get_backend_pid()])
    finally:
        other.close()
    poller = select.poll()
    poller.register(raw.fileno(), select.POLLIN)
    assert poller.poll(10_000), "the server's goodbye never reached the socket"


@pytest.mark.django_db(transaction=True)
def test_a_request_uses_a_quiet_connection_without_asking_select_1(checked_connection, monkeypatch):
    raw = checked_connection.connection
    calls = _is_usable_calls(monkeypatch)

    request_started.send(sender=None)  # Django's tidy-up, then the quiet check
    with checked_connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert calls == []
    assert checked_connection.connection is raw

    # Django's own check, for contrast: one more statement before the request's first.
    assert request_started.disconnect(dispatch_uid=QUIET_CHECK)
    try:
        request_started.send(sender=None)
        with checked_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        request_started.connect(connections_checked_quietly, dispatch_uid=QUIET_CHECK)
    assert calls == [1]


@pytest.mark.django_db(transaction=True)
def test_a_request_after_the_server_ended_its_connection_gets_a_new_one(checked_connection, client):
    raw = checked_connection.connection
    assert connection_quiet(checked_connection) is True
    _ended_by_the_server(raw)
    assert connection_quiet(checked_connection) is False

    # The test client does not run Django's close_old_connections: the quiet check alone
    # stands between the request and the dead connection (without it: a 500).
    response = client.get("/t/database/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200, response.content
    assert response.json() == {"answer": 42}
    assert raw.closed
    assert checked_connection.connection is not None
    assert connection_quiet(checked_connection) is True


@pytest.mark.django_db(transaction=True)
def test_a_connection_inside_a_transaction_is_left_alone(checked_connection):
    from django.db import transaction

    with transaction.atomic():
        raw = checked_connection.connection
        checked_connection.health_check_done = False
        connections_checked_quietly()
        assert checked_connection.health_check_done is False
        assert checked_connection.connection is raw
        checked_connection.health_check_done = True  # or the commit would check it in the block

"""Database connections between units of work (a task, a relay round): Django's tidy-up
between requests, without the health check a connection has just made needless.

With ``CONN_HEALTH_CHECKS`` Django asks a reused connection ``SELECT 1`` before the
first query of every unit of work. A saga worker's unit is one task, so that is one
more round trip and statement per saga step (the relay's: per round): 5-6 % of a
worker's or the relay's CPU in a profile under load. A connection that finished a
unit without a database error less than ``FRESH_SECONDS`` ago is taken as healthy;
one idle for longer (a restarted database, a dropped socket) is checked as before.
Web requests get the same (``requests_fresh_connections_trust``).
"""

from __future__ import annotations

import time

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

FRESH_SECONDS = 1.0


def connection_tidy(connection: BaseDatabaseWrapper) -> None:
    """Drop the connection if it broke or outlived ``CONN_MAX_AGE``; skip the health
    check of one that proved itself moments ago."""
    connection.close_if_unusable_or_obsolete()
    connection_fresh_trust(connection)


def connection_fresh_trust(connection: BaseDatabaseWrapper) -> None:
    """Skip the next health check of a connection that proved itself moments ago."""
    proved = getattr(connection, "eshop_proved", None)
    if (
        proved is not None
        and connection.connection is not None
        and proved[0] is connection.connection  # not one closed and opened since
        and time.monotonic() - proved[1] < FRESH_SECONDS
    ):
        connection.health_check_done = True


def connection_proved(connection: BaseDatabaseWrapper) -> None:
    """A unit of work finished on this connection: healthy, unless a database error
    (not a constraint or data error) happened since its last check."""
    if connection.connection is not None and not connection.errors_occurred:
        connection.eshop_proved = (connection.connection, time.monotonic())


def connections_tidy() -> None:
    """``connection_tidy`` for every connection this thread opened."""
    for connection in connections.all(initialized_only=True):
        connection_tidy(connection)


def connections_proved() -> None:
    """``connection_proved`` for every connection this thread opened."""
    for connection in connections.all(initialized_only=True):
        connection_proved(connection)


def requests_fresh_connections_trust() -> None:
    """Around requests: after Django's own tidy-up (``close_old_connections``, which stays
    connected, so its test client's handling of it is unchanged), skip the health check
    of a connection a request finished with moments ago. The orders POST paid that
    ``SELECT 1`` on every order (issue #16)."""
    from django.core import signals

    def trust(**_: object) -> None:
        for connection in connections.all(initialized_only=True):
            connection_fresh_trust(connection)

    def proved(**_: object) -> None:
        connections_proved()

    # After Django's receiver (connected when django.db is imported): connected anew, in
    # case something connected that one again since (as Django's test client does).
    signals.request_started.disconnect(dispatch_uid="common.db.trust")
    signals.request_finished.disconnect(dispatch_uid="common.db.proved")
    signals.request_started.connect(trust, weak=False, dispatch_uid="common.db.trust")
    signals.request_finished.connect(proved, weak=False, dispatch_uid="common.db.proved")

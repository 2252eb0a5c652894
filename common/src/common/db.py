"""Database connections between units of work (a task, a relay round): Django's tidy-up
between requests, without the health check a connection has just made needless.

With ``CONN_HEALTH_CHECKS`` Django asks a reused connection ``SELECT 1`` before the
first query of every unit of work. A saga worker's unit is one task, so that is one
more round trip and statement per saga step (the relay's: per round): 5-6 % of a
worker's or the relay's CPU in a profile under load. A connection that finished a
unit without a database error less than ``FRESH_SECONDS`` ago is taken as healthy;
one idle for longer (a restarted database, a dropped socket) is checked as before.
Web requests keep Django's check: a connection the database dropped a moment ago
would be a 500 for the client, where a failed task is sent again (a restarted
database did that to a request in the compose tests).
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

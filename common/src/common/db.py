"""Database connections between units of work (a task, a relay round): Django's tidy-up
between requests, without the health check a connection has just made needless.

With ``CONN_HEALTH_CHECKS`` Django asks a reused connection ``SELECT 1`` before the
first query of every unit of work. A saga worker's unit is one task, so that is one
more round trip and statement per saga step (the relay's: per round): 5-6 % of a
worker's or the relay's CPU in a profile under load. A connection that finished a
unit without a database error less than ``FRESH_SECONDS`` ago is taken as healthy;
one idle for longer (a restarted database, a dropped socket) is checked as before.
Web requests get a check without a round trip (``connections_checked_quietly``, on
``request_started``): a PostgreSQL connection whose socket has something to read
while idle has been dropped (a restarted or stopped server, an ended backend: the
server says so, or the kernel closes the socket) and is closed before the request
uses it; one whose socket is quiet is used without ``SELECT 1``. Skipping the check
outright was tried and withdrawn: a connection the database dropped a moment ago
was a 500 for the client (a restarted database in the compose tests), where a
failed task is sent again. A server that vanishes without a word (a cut network)
is not seen by either check until a query times out.
"""

from __future__ import annotations

import select
import time
from typing import Any

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


def connection_quiet(connection: BaseDatabaseWrapper) -> bool | None:
    """Whether an idle connection's socket has nothing to read (None: not a socket's).

    An idle PostgreSQL connection, not LISTENing, is sent nothing unless its
    server is going away: the server's last word (an error for a shutdown or an
    ended backend) or the end of the stream makes the socket readable.
    """
    raw = connection.connection
    if raw is None or connection.vendor != "postgresql":
        return None
    if raw.closed:
        return False
    poller = select.poll()  # not select.select: it cannot watch descriptors past 1023
    poller.register(raw.fileno(), select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


def connections_checked_quietly(**_: Any) -> None:
    """A request's health check without ``SELECT 1``: after Django's own tidy-up at
    ``request_started``, a connection with a quiet socket counts as checked and one
    the server has spoken on is closed (the request opens a new one)."""
    for connection in connections.all(initialized_only=True):
        if not connection.health_check_enabled or connection.in_atomic_block:
            continue
        quiet = connection_quiet(connection)
        if quiet:
            connection.health_check_done = True
        elif quiet is False:
            connection.close()

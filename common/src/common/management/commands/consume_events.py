"""Feed this service's event queue to its handlers: one long-running process per service."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.events.broker import (
    BrokerUnavailable,
    broker_connect,
    broker_connection,
    broker_errors,
    queue_sizes,
)
from common.events.consumer import EventConsumer
from common.shutdown import stop_on_signals
from common.tracing import tracing_configure


class Command(BaseCommand):
    help = (
        "Consume <service>.events (bound to the 'events' exchange with the patterns of "
        "EVENT_HANDLERS): each event is handled once per id (inbox), acknowledged after "
        "its transaction commits, retried EVENT_MAX_ATTEMPTS times with backoff, then "
        "dead-lettered to <service>.events.dlq (see manage.py dlq). SIGTERM/SIGINT stop it "
        "after the current message."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--setup-only",
            action="store_true",
            help="declare the queue, its bindings and the DLQ, then exit (run at deploy time "
            "so no event is published before the queue exists)",
        )
        mode.add_argument(
            "--drain",
            action="store_true",
            help="handle what is queued and exit once the queue stays empty for --idle seconds",
        )
        parser.add_argument("--idle", type=float, default=1.0, help="seconds, with --drain")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="with --setup-only: declare nothing, wait until the consumer has declared "
            "them (for another service's pod, the relay's: its broker user may not declare "
            "this service's queues, see common.broker_access)",
        )

    def handle(
        self,
        *args: Any,
        setup_only: bool,
        drain: bool,
        idle: float,
        wait: bool,
        **options: Any,
    ) -> None:
        if wait and not setup_only:
            raise CommandError("--wait goes with --setup-only")
        consumer = EventConsumer()
        if setup_only and wait:
            self._wait_declared(consumer)
            return
        if setup_only:
            connection = broker_connection()
            try:
                broker_connect(connection)
                consumer.declare(connection)
            except broker_errors(connection) as exc:
                raise CommandError(f"broker unreachable: {exc!r}") from exc
            finally:
                connection.release()
            self.stdout.write(
                f"declared {consumer.queue_name} ({', '.join(consumer.patterns) or 'no patterns'})"
                f" and {consumer.dead_letter_queue_name}"
            )
            return
        if not consumer.routes:
            self.stderr.write(
                "EVENT_HANDLERS is empty: only replayed messages will arrive on "
                f"{consumer.queue_name}."
            )

        tracing_configure(service=settings.SERVICE_NAME, role="consumer")
        with stop_on_signals(consumer.request_stop, name="consume_events"):
            count = consumer.run(until_idle=idle if drain else None)
        if drain:
            self.stdout.write(f"handled {count} messages")

    def _wait_declared(self, consumer: EventConsumer, interval: float = 2.0) -> None:
        """Until the queue and its DLQ exist: passive declares, which need no right. The
        consumer declares its DLQ after its queue and bindings, so then all are there."""
        names = [consumer.queue_name, consumer.dead_letter_queue_name]
        while True:
            try:
                if set(queue_sizes(names)) == set(names):
                    break
            except BrokerUnavailable:
                pass  # not up yet: ask again
            time.sleep(interval)
        self.stdout.write(f"{' and '.join(names)} declared by their consumer")

"""Publish this service's outbox to the broker: one long-running process per service."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.events.relay import OutboxRelay, PublishFailed
from common.shutdown import stop_on_signals
from common.tracing import tracing_configure


class Command(BaseCommand):
    help = (
        "Relay committed outbox rows to the 'events' exchange (routing key = event type), "
        "marking each published only once the broker confirmed it. Woken by PostgreSQL "
        "NOTIFY on every commit, polling every OUTBOX_POLL_SECONDS as the fallback; waits "
        "out broker outages with backoff. SIGTERM/SIGINT stop it after the current batch."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="publish what is pending now and exit (status 1 if the broker fails)",
        )
        parser.add_argument(
            "--batch-size", type=int, default=None, help="default OUTBOX_BATCH_SIZE"
        )
        parser.add_argument(
            "--poll-seconds", type=float, default=None, help="default OUTBOX_POLL_SECONDS"
        )

    def handle(
        self,
        *args: Any,
        once: bool,
        batch_size: int | None,
        poll_seconds: float | None,
        **options: Any,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if poll_seconds is not None and poll_seconds <= 0:
            raise CommandError("--poll-seconds must be positive.")
        tracing_configure(service=settings.SERVICE_NAME, role="relay")
        relay = OutboxRelay(batch_size=batch_size, poll_seconds=poll_seconds)
        if once:
            try:
                count = relay.relay_pending()
            except PublishFailed as exc:
                raise CommandError(str(exc)) from exc
            finally:
                relay.close()
            self.stdout.write(f"published {count} events")
            return

        with stop_on_signals(relay.request_stop, name="outbox_relay"):
            relay.run()

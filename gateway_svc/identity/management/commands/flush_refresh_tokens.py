"""Forget expired refresh tokens (SimpleJWT's flushexpiredtokens, for identity.models).

Once by default (a Kubernetes CronJob runs it daily); ``--every SECONDS`` keeps it
running and flushes again after each pause, for deployments without a scheduler
(compose's ``gateway-housekeeping``). SIGTERM ends the pause at once.
"""

import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from common.shutdown import stop_on_signals
from identity.services import refresh_tokens_flush


class Command(BaseCommand):
    help = "Delete expired refresh token records and the families left without one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every",
            type=float,
            metavar="SECONDS",
            help="Keep running: flush again after each pause of this many seconds.",
        )

    def handle(self, *args: Any, every: float | None = None, **options: Any) -> None:
        if every is None:
            self.flush()
            return
        stop = threading.Event()
        with stop_on_signals(stop.set, name="flush_refresh_tokens"):
            while not stop.is_set():
                self.flush()
                stop.wait(every)

    def flush(self) -> None:
        self.stdout.write(f"{refresh_tokens_flush()} expired refresh tokens deleted.")
        self.stdout.flush()

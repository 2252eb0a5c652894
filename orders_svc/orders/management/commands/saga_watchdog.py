"""Keep sagas moving: resend commands whose reply is late, give up after the last try."""

import logging
import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from orders.saga import saga_deadlines_check

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Check saga deadlines every --interval seconds (Ctrl-C or SIGTERM stops it). "
        "Sagas left unfinished by a restart are picked up here: their deadlines pass."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=1.0)
        parser.add_argument("--once", action="store_true", help="Check once and exit.")

    def handle(self, *args: Any, interval: float, once: bool, **options: Any) -> None:
        running = True

        def stop(*_: Any) -> None:
            nonlocal running
            running = False

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while running:
            try:
                handled = saga_deadlines_check()
                if handled:
                    logger.info("Handled %s late saga step(s)", handled)
            except Exception:
                logger.exception("Saga deadline check failed; trying again")
            if once:
                return
            time.sleep(interval)

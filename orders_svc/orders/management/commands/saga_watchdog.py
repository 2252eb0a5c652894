"""Keep sagas moving: resend commands whose reply is late, give up after the last try."""

import logging
import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from common.commands import BrokerUnreachable
from common.tracing import tracing_configure
from orders.saga import saga_deadlines_check

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Check saga deadlines every --interval seconds (Ctrl-C or SIGTERM stops it). "
        "Sagas left unfinished by a restart are picked up here: their deadlines pass. "
        "While the broker is down nothing is counted: late sagas wait for it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=1.0)
        parser.add_argument("--once", action="store_true", help="Check once and exit.")

    def handle(self, *args: Any, interval: float, once: bool, **options: Any) -> None:
        tracing_configure(service=settings.SERVICE_NAME, role="watchdog")
        running = True
        broker_down = False

        def stop(*_: Any) -> None:
            nonlocal running
            running = False

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while running:
            # A long-lived process outside Django's request cycle: drop a
            # connection the database closed, or every later check would fail.
            close_old_connections()
            try:
                handled = saga_deadlines_check()
            except BrokerUnreachable as error:
                if not broker_down:  # once per outage, not once per interval
                    logger.warning("%s Waiting for the broker.", error)
                broker_down = True
            except Exception:
                logger.exception("Saga deadline check failed; trying again")
            else:
                if broker_down:
                    logger.warning("The broker is back: late saga steps are asked again.")
                broker_down = False
                if handled:
                    logger.info("Handled %s late saga step(s)", handled)
            if once:
                return
            time.sleep(interval)

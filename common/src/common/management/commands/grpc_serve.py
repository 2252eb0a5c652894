"""Serve this service's gRPC API (``GRPC_SERVICERS``), health and reflection: one process."""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.grpc_server import grpc_server_build
from common.shutdown import stop_on_signals
from common.tracing import tracing_configure

logger = logging.getLogger("common.grpc")


class Command(BaseCommand):
    help = (
        "Serve the service's gRPC methods (settings.GRPC_SERVICERS) with the standard health "
        "service (SERVING while /ready/'s checks pass) and server reflection. SIGTERM/SIGINT: "
        "health turns NOT_SERVING, new calls are refused, calls in flight get --grace seconds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--bind",
            default=settings.GRPC_BIND,
            help="host:port to listen on (default: settings.GRPC_BIND, env GRPC_BIND)",
        )
        parser.add_argument("--workers", type=int, default=settings.GRPC_WORKERS)
        parser.add_argument("--grace", type=float, default=5.0, help="seconds, at shutdown")

    def handle(self, *args: Any, bind: str, workers: int, grace: float, **options: Any) -> None:
        registrations = getattr(settings, "GRPC_SERVICERS", [])
        if not registrations:
            raise CommandError(
                f"{settings.SERVICE_NAME} serves nothing over gRPC (GRPC_SERVICERS)."
            )
        stopping = threading.Event()
        # Before any thread starts: the signal-taking thread must be the only one to get them.
        with stop_on_signals(stopping.set, name="grpc_serve"):
            tracing_configure(service=settings.SERVICE_NAME, role="grpc")
            server, health_servicer, reporter = grpc_server_build(
                registrations=registrations,
                max_workers=workers,
                health_interval=settings.GRPC_HEALTH_INTERVAL_SECONDS,
            )
            try:
                port = server.add_insecure_port(bind)
            except RuntimeError as error:
                raise CommandError(f"Cannot listen on {bind}: {error}") from error
            reporter.start()
            server.start()
            logger.info("%s gRPC serving on %s (port %s)", settings.SERVICE_NAME, bind, port)
            self.stdout.write(f"gRPC serving on {bind}", ending="\n")
            self.stdout.flush()
            stopping.wait()
            reporter.stop()
            health_servicer.enter_graceful_shutdown()
            server.stop(grace).wait()
        logger.info("%s gRPC stopped", settings.SERVICE_NAME)

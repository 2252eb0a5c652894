"""The discovery sidecar: keep this instance registered in etcd while its /ready/ passes."""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.discovery.registrar import ServiceRegistrar
from common.shutdown import stop_on_signals


class Command(BaseCommand):
    help = (
        "Register a service instance in etcd with a lease, kept alive only while "
        "<url><ready-path> answers 200; revoked when it does not and on SIGTERM/SIGINT. "
        "Needs DISCOVERY=etcd."
    )
    # A sidecar should be up in a moment and needs no database: skip checks.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="service name, e.g. catalog")
        parser.add_argument(
            "--url",
            required=True,
            help="base URL the gateway should use, e.g. http://127.0.0.1:8001",
        )
        parser.add_argument(
            "--instance-id", default=None, help="default: <name>-<host>-<port> from --url"
        )
        parser.add_argument(
            "--ttl",
            type=int,
            default=None,
            help="lease seconds (default DISCOVERY_LEASE_TTL); checks run every ttl/3",
        )
        parser.add_argument("--ready-path", default="/ready/")

    def handle(
        self,
        *args: Any,
        name: str,
        url: str,
        instance_id: str | None,
        ttl: int | None,
        ready_path: str,
        **options: Any,
    ) -> None:
        config = settings.DISCOVERY
        if config["BACKEND"] != "etcd":
            raise CommandError(
                f"register_service only works with etcd discovery (DISCOVERY=etcd); this "
                f"process has DISCOVERY={config['BACKEND']!r}, so nothing would read the "
                "registration."
            )
        ttl = ttl if ttl is not None else config["LEASE_TTL"]
        if ttl < 2:
            raise CommandError(f"--ttl must be at least 2 seconds (got {ttl}).")
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise CommandError(f"--url {url!r} is not an http(s)://host[:port] URL.")
        if instance_id is not None and (not instance_id or "/" in instance_id):
            raise CommandError("--instance-id must be non-empty and contain no '/'.")

        registrar = ServiceRegistrar(
            etcd_url=config["ETCD_URL"],
            prefix=config["ETCD_PREFIX"],
            service=name,
            url=url,
            instance_id=instance_id,
            ttl=ttl,
            ready_path=ready_path,
        )
        # httpx logs every request at INFO: one line per check would drown the state changes.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        stop = threading.Event()
        with stop_on_signals(stop.set, name="register_service"):
            registrar.run(stop)  # returns after revoking the lease: exit status 0

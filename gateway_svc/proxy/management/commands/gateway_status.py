"""Print the running gateway's breaker states and bulkhead use."""

from __future__ import annotations

from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser

from identity.services import service_token_issue


class Command(BaseCommand):
    help = (
        "Ask the running gateway (GATEWAY_URL, default http://127.0.0.1:8000) for its circuit "
        "breakers and bulkheads. With several workers each keeps its own bulkhead count; "
        "breaker states are shared when Redis is configured."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default=None, help="The gateway's base URL.")

    def handle(self, *args: Any, url: str | None = None, **options: Any) -> None:
        import os

        base = url or os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000")
        token = service_token_issue(service="gateway-status", minutes=1)
        try:
            response = httpx.get(
                f"{base}/internal/status/",
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
        except httpx.HTTPError as error:
            raise CommandError(f"The gateway at {base} does not answer: {error}") from error
        if response.status_code != 200:
            raise CommandError(f"The gateway answered {response.status_code}: {response.text}")
        status = response.json()
        self.stdout.write(f"discovery: {status['discovery']}")
        for name, upstream in status["upstreams"].items():
            bulkhead = upstream["bulkhead"]
            self.stdout.write(
                f"{name}: bulkhead {bulkhead['in_flight']}/{bulkhead['limit']} in flight"
            )
            if not upstream["instances"]:
                self.stdout.write("    (no instance registered)")
            for instance in upstream["instances"]:
                wait = f", retry in {instance['retry_after']} s" if instance["retry_after"] else ""
                self.stdout.write(
                    f"    {instance['id']:<32} {instance['url']:<28} {instance['breaker']}{wait}"
                )

"""Print a service token (scope ``internal``) for operators and service-to-service calls."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from identity.services import service_token_issue


class Command(BaseCommand):
    help = "Print a short-lived access token with scope 'internal' for the named service."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "service", help="Who the token is for, e.g. orders or an operator's name."
        )
        parser.add_argument("--minutes", type=int, default=60, help="Lifetime (default 60).")

    def handle(self, *args: Any, service: str, minutes: int, **options: Any) -> None:
        self.stdout.write(service_token_issue(service=service, minutes=minutes))

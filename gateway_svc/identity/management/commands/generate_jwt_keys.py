"""Create the gateway's RS256 key pair (if missing), or rotate it with --rotate."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from identity.keys import keys_generate


class Command(BaseCommand):
    help = (
        "Create the JWT signing key pair in the files named by JWT_PRIVATE_KEY / JWT_PUBLIC_KEY "
        "if none exists. --rotate makes a new pair; the old public key stays published (and "
        "trusted) until every token it signed has expired."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rotate", action="store_true", help="Replace the current key pair.")

    def handle(self, *args: Any, rotate: bool = False, **options: Any) -> None:
        kid, created = keys_generate(rotate=rotate)
        where = settings.JWT["PRIVATE_KEY_FILE"]
        if created:
            self.stdout.write(self.style.SUCCESS(f"New signing key {kid} in {where}"))
        else:
            self.stdout.write(f"Signing key {kid} already in {where} (use --rotate to replace it)")

"""Create the message signing key pairs of the services (if missing): ``make run`` does it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from common.signing import key_pair_generate

# The services that sign what they send: orders (commands, events), catalog and users (replies).
SIGNING_SERVICES = ("catalog", "users", "orders")


class Command(BaseCommand):
    help = (
        "Create an Ed25519 key pair per service for signing commands, replies and events "
        "(common.signing), unless it exists: <private dir>/<service>.pem and "
        "<public dir>/<service>.pem. The folders default to those this service's settings "
        "read (MESSAGE_SIGNING_KEY's folder and MESSAGE_SIGNING_PUBLIC_KEYS; locally "
        "var/signing/ and var/signing/public/)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "services", nargs="*", default=list(SIGNING_SERVICES), help="default: every signer"
        )
        parser.add_argument("--private-dir", type=Path, help="where the private keys go")
        parser.add_argument("--public-dir", type=Path, help="where the public keys go")

    def handle(
        self,
        *args: Any,
        services: list[str],
        private_dir: Path | None,
        public_dir: Path | None,
        **options: Any,
    ) -> None:
        private_dir = private_dir or Path(settings.MESSAGE_SIGNING["KEY"]).parent
        public_dir = public_dir or Path(settings.MESSAGE_SIGNING["PUBLIC_KEYS"])
        for service in services:
            made = key_pair_generate(
                private_key_file=private_dir / f"{service}.pem",
                public_key_file=public_dir / f"{service}.pem",
            )
            state = "new key pair" if made else "key pair kept"
            self.stdout.write(f"{service}: {state} ({private_dir / f'{service}.pem'})")

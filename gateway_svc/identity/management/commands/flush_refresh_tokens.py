"""Forget expired refresh tokens (SimpleJWT's flushexpiredtokens, for identity.models)."""

from typing import Any

from django.core.management.base import BaseCommand

from identity.services import refresh_tokens_flush


class Command(BaseCommand):
    help = "Delete expired refresh token records and the families left without one."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"{refresh_tokens_flush()} expired refresh tokens deleted.")

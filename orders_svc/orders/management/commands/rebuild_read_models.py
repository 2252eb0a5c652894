"""Rebuild the order summaries from the event store."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from orders.services import read_models_rebuild


class Command(BaseCommand):
    help = "Delete the order summaries and project them again from every order's events."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, no_progress: bool = False, **options: Any) -> None:
        count = read_models_rebuild(
            progress=lambda items: tqdm(items, desc="Projecting", unit="order", disable=no_progress)
        )
        self.stdout.write(self.style.SUCCESS(f"Rebuilt {count} order summaries from their events."))

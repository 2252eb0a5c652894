"""Show unfinished sagas, those marked for attention first."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from orders.models import Saga


class Command(BaseCommand):
    help = "List sagas that are not done (or every saga with --all), those needing attention first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", dest="show_all")
        parser.add_argument("--limit", type=int, default=50)

    def handle(self, *args: Any, show_all: bool, limit: int, **options: Any) -> None:
        sagas = Saga.objects.all() if show_all else Saga.objects.exclude(state=Saga.State.DONE)
        sagas = sagas.order_by("-needs_attention", "started_at")[:limit]
        if not sagas:
            self.stdout.write("No unfinished saga.")
            return
        for saga in sagas:
            flag = "ATTENTION " if saga.needs_attention else ""
            waiting = ", ".join(saga.pending) or "-"
            self.stdout.write(
                f"{flag}{saga.kind:<6} {saga.order_id} {saga.state:<16} waiting: {waiting:<30} "
                f"tries: {saga.attempts} {saga.outcome} {saga.last_error}".rstrip()
            )

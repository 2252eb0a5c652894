"""Inspect and repair this service's dead-letter queues (<service>.events.dlq, and with
--commands <service>.commands.dlq: Celery commands and replies its worker refused)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.events.broker import broker_connection, broker_errors
from common.events.dlq import DeadLetterQueue


class Command(BaseCommand):
    help = (
        "List, replay or purge the events this service's consumer gave up on. "
        "`list` leaves them in place; `replay` sends them back to <service>.events "
        "(or, with --via-exchange, to the events exchange with their original routing key) "
        "and removes them; `purge` deletes them (asks unless --yes). With --commands, the "
        "same for the Celery commands and replies this service's worker refused (unsigned, "
        "forged, from a service not allowed, inconsistent): <service>.commands.dlq, replayed "
        "to the service's command queue."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--commands",
            action="store_const",
            const="commands",
            default="events",
            dest="kind",
            help="the refused commands and replies instead of the events",
        )
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="show id, type, reason and attempts")
        listing.add_argument("--limit", type=int, default=100)
        listing.add_argument(
            "--json", action="store_true", dest="as_json", help="one JSON object per line"
        )
        replay = actions.add_parser("replay", help="re-publish and remove from the DLQ")
        replay.add_argument("--id", action="append", dest="ids", help="only this message id")
        replay.add_argument("--limit", type=int, default=None)
        replay.add_argument(
            "--via-exchange",
            action="store_true",
            help="publish to the events exchange with the original routing key "
            "(every service bound to it gets it again) instead of this service's queue",
        )
        purge = actions.add_parser("purge", help="delete dead messages for good")
        purge.add_argument("--id", action="append", dest="ids", help="only this message id")
        purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def handle(self, *args: Any, action: str, kind: str, **options: Any) -> None:
        # Looking without taking gives messages back on close; on the filesystem
        # transport kombu says so at INFO for every run, which reads like an error.
        logging.getLogger("kombu.transport.virtual.base").setLevel(logging.WARNING)
        queue = DeadLetterQueue(kind=kind)
        probe = broker_connection()
        try:
            getattr(self, f"_{action}")(queue, **options)
        except broker_errors(probe) as exc:
            raise CommandError(f"broker unreachable: {exc!r}") from exc

    def _list(self, queue: DeadLetterQueue, *, limit: int, as_json: bool, **options: Any) -> None:
        total = queue.size()
        found = queue.list(limit=limit)
        if as_json:
            for dead in found:
                self.stdout.write(json.dumps(asdict(dead), ensure_ascii=False))
            return
        self.stdout.write(f"{total} dead messages in {_name(queue)}")
        for dead in found:
            self.stdout.write(
                f"{dead.id}  {dead.type}  attempts={dead.attempts}  replays={dead.replays}  "
                f"{dead.dead_lettered_at}  {dead.reason}"
            )
        if total > len(found):
            self.stdout.write(f"... and {total - len(found)} more (--limit)")

    def _replay(
        self,
        queue: DeadLetterQueue,
        *,
        ids: list[str] | None,
        limit: int | None,
        via_exchange: bool,
        **options: Any,
    ) -> None:
        replayed = queue.replay(ids=ids, via_exchange=via_exchange, limit=limit)
        for dead in replayed:
            self.stdout.write(f"replayed {dead.id} {dead.type}")
        self.stdout.write(f"replayed {len(replayed)} messages")
        if ids and (missing := set(ids) - {dead.id for dead in replayed}):
            raise CommandError(f"not in the DLQ: {', '.join(sorted(missing))}")

    def _purge(
        self, queue: DeadLetterQueue, *, ids: list[str] | None, yes: bool, **options: Any
    ) -> None:
        what = f"{len(ids)} message(s)" if ids else f"all {queue.size()} messages"
        if not yes:
            answer = input(f"Delete {what} from {_name(queue)} for good? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("nothing purged")
        count = queue.purge(ids=ids)
        self.stdout.write(f"purged {count} messages")


def _name(queue: DeadLetterQueue) -> str:
    return queue.name

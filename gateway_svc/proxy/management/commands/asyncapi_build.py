"""Write contracts/asyncapi.yaml from the contract files, or check that it is current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.contracts import contracts_dir
from proxy.asyncapi import DOCUMENT_NAME, asyncapi_check, asyncapi_document, asyncapi_yaml


class Command(BaseCommand):
    help = (
        "Generate the AsyncAPI document of every event and command (contracts/asyncapi.yaml) "
        "from contracts/events and contracts/commands; --check only says whether it is current."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contracts", default=None, help="The contracts folder.")
        parser.add_argument(
            "--check", action="store_true", help="Fail if the committed document is stale."
        )

    def handle(self, *args: Any, contracts: str | None, check: bool, **options: Any) -> None:
        folder = Path(contracts) if contracts else contracts_dir()
        document = asyncapi_document(folder)
        if problems := asyncapi_check(document):
            raise CommandError("Not a valid AsyncAPI 3.0 document:\n" + "\n".join(problems))
        text = asyncapi_yaml(document)
        target = folder / DOCUMENT_NAME
        if check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                raise CommandError(f"{target} is stale: run `make asyncapi` and commit it.")
            self.stdout.write(f"{target} is current.")
            return
        target.write_text(text, encoding="utf-8")
        self.stdout.write(f"Wrote {target}.")

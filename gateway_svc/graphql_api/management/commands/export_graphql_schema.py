"""Write the GraphQL schema's SDL to graphql_api/schema.graphql (a test checks it is current)."""

from typing import Any

from django.core.management.base import BaseCommand

from graphql_api.sdl import SDL_FILE, schema_sdl


class Command(BaseCommand):
    help = "Write the SDL of /graphql/ to graphql_api/schema.graphql."

    def handle(self, *args: Any, **options: Any) -> None:
        SDL_FILE.write_text(schema_sdl())
        self.stdout.write(f"Wrote {SDL_FILE}")

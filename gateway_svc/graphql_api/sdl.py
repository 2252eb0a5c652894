"""The schema's SDL, and the file that holds it for clients (``schema.graphql``)."""

from __future__ import annotations

from pathlib import Path

from strawberry.printer import print_schema

from graphql_api.schema import schema

SDL_FILE = Path(__file__).resolve().parent / "schema.graphql"


def schema_sdl() -> str:
    """What ``strawberry export-schema`` prints for this schema."""
    return print_schema(schema) + "\n"

"""Capturing the commands and replies a service's task bodies send, for contract tests.

Only the final publish is replaced (``common.commands.command_publish``): the task
body, ``command_send`` and its after-commit hook run as in a worker, so what is
captured is exactly what would go on the wire. Run the body inside
``django_capture_on_commit_callbacks(execute=True)``: the send waits for the commit.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """What would have been published, in order: (task, kwargs)."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def publish(*, task: str, queue: str, kwargs: dict[str, Any], context: Any = None) -> bool:
        sent.append((task, kwargs))
        return True

    monkeypatch.setattr("common.commands.command_publish", publish)
    return sent

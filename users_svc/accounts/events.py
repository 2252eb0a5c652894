"""The events users consumes, checked against what users relies on of them.

``order.cancelled`` and ``order.rejected`` come from orders (``contracts/events``);
users' part of their contract, in the versions it
accepts, is ``contracts/consumers/users/`` (the order id, and whose order it is).
Orders' tests check it against what orders produces.
"""

from __future__ import annotations

from common.contracts import consumer_events_register


def register() -> None:
    consumer_events_register("users")

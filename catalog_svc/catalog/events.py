"""The events catalog consumes, checked against what catalog relies on of them.

``order.cancelled`` and ``order.rejected`` come from orders (``contracts/events``);
catalog's part of their contract, in the versions it
accepts, is ``contracts/consumers/catalog/`` (the order id, and the lines' product
ids and quantities). Orders' tests check it against what orders produces.
"""

from __future__ import annotations

from common.contracts import consumer_events_register


def register() -> None:
    consumer_events_register("catalog")

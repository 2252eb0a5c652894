"""The contract of the events orders publishes: ``contracts/events/order.*.v<N>.json``.

Every event appended to an order is validated against its type's latest
version here before it is written, and published as it is (the event store is
the outbox) with that version's ``$id`` as its ``dataschema``. Consumers state
what they rely on in ``contracts/consumers/``; orders' tests check those
against the events orders really appends (``orders/tests/test_contracts.py``).
"""

from __future__ import annotations

from common.contracts import event_types_register


def register() -> None:
    event_types_register("orders")

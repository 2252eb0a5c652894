"""Orders against its contracts: every consumer's part of every event orders produces,
checked against the events orders really appends; the commands it sends against their
schemas (contracts/; common.contracts).

The saga runs on the test database through ``orders.services`` and ``orders.saga``;
the participants' answers are what catalog and users send (their own tests check
those against orders' contract), and only the sending of commands is captured.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from celery import current_app

from common.contracts import (
    command_problems,
    contract_verify,
    contracts_of,
    message_schemas,
    schema_uri,
)
from common.events import Event
from orders.models import OrderEvent, OrderEventType
from orders.saga import STEPS, saga_reply
from orders.services import LineRequest, order_cancel_request, order_place

pytestmark = pytest.mark.django_db

Answer = Callable[[str, dict], tuple[bool, str, dict]]


def _priced(kwargs: dict) -> tuple[bool, str, dict]:
    lines = [{**line, "unit_price": "10.00"} for line in kwargs["lines"]]
    total = sum(10 * line["quantity"] for line in lines)
    return True, "", {"lines": lines, "total": f"{total}.00"}


def _held(kwargs: dict) -> tuple[bool, str, dict]:
    return True, "", {"customer_id": kwargs["customer_id"], "amount": kwargs["amount"]}


AGREE: dict[str, Answer] = {"stock_reserve": _priced, "credit_reserve": _held}
NO_STOCK = {**AGREE, "stock_reserve": lambda _: (False, "out_of_stock", {"product_ids": [1]})}
NO_CREDIT = {**AGREE, "credit_reserve": lambda _: (False, "credit_limit_exceeded", {})}


@pytest.fixture
def sent(monkeypatch):
    """The commands the saga sends, in order: (task, kwargs)."""
    commands: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        "orders.saga.command_send",
        lambda *, service, task, **kwargs: commands.append((task, kwargs)),
    )
    return commands


def _answer_all(sent: list[tuple[str, dict]], answers: dict[str, Answer], start: int = 0) -> int:
    """Answer every command sent from ``start`` on, as its participant would, until none is
    left; whatever steps the saga takes. Returns how many commands were answered."""
    step_of = {task: step for step, (_, task) in STEPS.items()}
    index = start
    while index < len(sent):
        task, kwargs = sent[index]
        step = step_of[task]
        ok, reason, data = answers.get(step, lambda _: (True, "", {}))(kwargs)
        saga_reply(
            order_id=kwargs["order_id"],
            step=step,
            sender=STEPS[step][0],
            ok=ok,
            reason=reason,
            data=data,
        )
        index += 1
    return index


def _envelopes() -> list[dict]:
    """Every event appended, as the relay publishes it."""
    return [row.outbox_envelope() for row in OrderEvent.objects.order_by("id")]


@pytest.fixture
def every_event(sent) -> list[dict]:
    """One order approved then cancelled, one without stock, one without credit."""
    answered = 0
    for answers in (AGREE, NO_STOCK, NO_CREDIT):
        order, _ = order_place(customer_id="7", lines=[LineRequest(1, 2), LineRequest(3, 1)])
        answered = _answer_all(sent, answers, answered)
        if answers is AGREE:
            order_cancel_request(order_id=order.id, requested_by="7")
            answered = _answer_all(sent, answers, answered)
    return _envelopes()


def test_every_event_type_has_a_schema_file_orders_produces():
    produced = {
        name
        for (name, _), schema in message_schemas("events").items()
        if "orders" in schema.producers
    }
    assert produced == set(OrderEventType.values)


def test_every_task_orders_runs_has_a_schema_file():
    import orders.tasks  # noqa: F401 - registers the tasks

    tasks = {name for name in current_app.tasks if name.startswith("orders.")}
    assert tasks
    assert tasks <= {name for name, _ in message_schemas("commands")}


def test_the_flows_produce_every_event_type(every_event):
    # Else a consumer's contract could go unchecked below.
    assert {envelope["type"] for envelope in every_event} == set(OrderEventType.values)


def test_every_event_says_the_version_of_its_schema(every_event):
    for envelope in every_event:
        assert envelope["dataschema"] == schema_uri("events", envelope["type"], 1)
        assert Event.from_dict(envelope).version == 1


def test_every_consumers_contract_holds_for_the_events_orders_appends(every_event):
    checked = set()
    for envelope in every_event:
        event = Event.from_dict(envelope)
        assert contract_verify(event.type, envelope, version=event.version) == []
        checked |= {
            (contract.consumer, contract.message) for contract in contracts_of(message=event.type)
        }
    # Every consumer's contract of an event was checked against at least one real event.
    assert checked == {
        (contract.consumer, contract.message)
        for contract in contracts_of()
        if contract.kind == "event"
    }


def _cancelled(every_event: list[dict]) -> dict:
    return copy.deepcopy(next(e for e in every_event if e["type"] == "order.cancelled"))


def test_a_producer_change_that_breaks_a_consumer_names_it_and_the_field(every_event):
    without_lines = _cancelled(every_event)
    del without_lines["data"]["lines"]
    problems = contract_verify("order.cancelled", without_lines)
    assert problems == [
        "catalog relies on order.cancelled data.lines: 'lines' is a required property"
    ]

    numeric_customer = _cancelled(every_event)
    numeric_customer["data"]["customer_id"] = 7
    assert contract_verify("order.cancelled", numeric_customer) == [
        "users relies on order.cancelled data.customer_id: 7 is not of type 'string'"
    ]

    other_subject = _cancelled(every_event)
    other_subject["subject"] = "order-7"
    problems = contract_verify("order.cancelled", other_subject)
    assert {problem.split()[0] for problem in problems} == {"catalog", "users", "gateway"}
    assert all("order.cancelled subject: 'order-7' is not a 'uuid'" in p for p in problems)

    assert contract_verify("order.cancelled", _cancelled(every_event), version=2) == [
        "catalog accepts order.cancelled v1 only, not v2",
        "gateway accepts order.cancelled v1 only, not v2",
        "users accepts order.cancelled v1 only, not v2",
    ]


def test_every_command_the_saga_sends_follows_its_schema(sent, every_event):
    assert {task for task, _ in sent} >= {
        "catalog.stock_reserve",
        "users.credit_reserve",
        "catalog.stock_release",
        "users.credit_release",
    }
    for task, kwargs in sent:
        assert command_problems(task, kwargs) == [], task

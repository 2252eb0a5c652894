"""Users' replies to the saga against what orders relies on of them
(contracts/consumers/orders/orders.saga_reply.json) and against their schema
(contracts/commands/orders.saga_reply.v1.json); the events users consumes
checked against its own part of their contract on receipt."""

from __future__ import annotations

import copy
import uuid

import pytest
from celery import current_app

from accounts.tasks import credit_release_task, credit_reserve_task
from accounts.tests.factories import UserFactory
from common.contracts import command_problems, contract_verify, message_schemas
from common.events import UnknownEventVersion, event_data_validate, registered_event_versions
from common.testing.contracts import published  # noqa: F401 - the captured publishes

pytestmark = pytest.mark.django_db


@pytest.fixture
def replies(published, django_capture_on_commit_callbacks):  # noqa: F811 - the fixture above
    """Every reply users sends, one for each way a step ends."""
    customer = str(UserFactory().pk)
    order_ids = [str(uuid.uuid4()) for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        credit_reserve_task(order_id=order_ids[0], customer_id=customer, amount="12.50")  # held
        credit_reserve_task(order_id=order_ids[1], customer_id=customer, amount="1000000")
        credit_reserve_task(order_id=order_ids[2], customer_id=customer, amount="-1")  # invalid
        credit_release_task(order_id=order_ids[0])
    assert {task for task, _ in published} == {"orders.saga_reply"}
    return [kwargs for _, kwargs in published]


def test_the_replies_cover_every_way_a_step_ends(replies):
    assert [(reply["step"], reply["ok"], reply["reason"]) for reply in replies] == [
        ("credit_reserve", True, ""),
        ("credit_reserve", False, "credit_limit_exceeded"),
        ("credit_reserve", False, "invalid_request"),
        ("credit_release", True, ""),
    ]


def test_every_reply_holds_what_orders_relies_on(replies):
    for reply in replies:
        assert contract_verify("orders.saga_reply", reply) == []
        assert command_problems("orders.saga_reply", reply) == []


def test_a_reply_that_would_break_orders_names_it_and_the_field(replies):
    held = copy.deepcopy(replies[0])
    held["data"]["amount"] = 12.5
    assert contract_verify("orders.saga_reply", held) == [
        "orders relies on orders.saga_reply data.amount: 12.5 is not of type 'string'"
    ]
    unnamed = copy.deepcopy(replies[0])
    del unnamed["order_id"]
    assert contract_verify("orders.saga_reply", unnamed) == [
        "orders relies on orders.saga_reply order_id: 'order_id' is a required property"
    ]


def test_users_checks_the_events_it_consumes_against_its_part_only():
    assert registered_event_versions("order.cancelled") == [1]
    event_data_validate(event_type="order.cancelled", data={"customer_id": "7"}, version=1)
    with pytest.raises(UnknownEventVersion, match=r"order\.cancelled v2 is not known here"):
        event_data_validate(event_type="order.cancelled", data={}, version=2)


def test_every_task_users_runs_has_a_schema_file():
    import accounts.tasks  # noqa: F401 - registers the tasks

    tasks = {name for name in current_app.tasks if name.startswith("users.")}
    assert tasks
    assert tasks <= {name for name, _ in message_schemas("commands")}

"""Catalog's replies to the saga against what orders relies on of them
(contracts/consumers/orders/orders.saga_reply.json) and against their schema
(contracts/commands/orders.saga_reply.v1.json); the events catalog consumes
checked against its own part of their contract on receipt."""

from __future__ import annotations

import copy
import uuid
from decimal import Decimal

import pytest
from celery import current_app

from catalog.tasks import STOCK_ATTESTATION, stock_release_task, stock_reserve_task
from catalog.tests.factories import ProductFactory
from common.contracts import command_problems, contract_verify, contracts_of, message_schemas
from common.events import UnknownEventVersion, event_data_validate, registered_event_versions
from common.signing import attestation_verify
from common.testing.contracts import published  # noqa: F401 - the captured publishes
from common.testing.signing import attested

pytestmark = pytest.mark.django_db


@pytest.fixture
def replies(published, django_capture_on_commit_callbacks):  # noqa: F811 - the fixture above
    """Every reply catalog sends, one for each way a step ends."""
    plenty, none = ProductFactory(on_hand=10), ProductFactory(on_hand=0)
    order_ids = [str(uuid.uuid4()) for _ in range(4)]
    with django_capture_on_commit_callbacks(execute=True):
        stock_reserve_task(
            order_id=order_ids[0], lines=[{"product_id": plenty.pk, "quantity": 2}]
        )  # held
        stock_reserve_task(
            order_id=order_ids[1],
            lines=[
                {"product_id": plenty.pk, "quantity": 1},
                {"product_id": none.pk, "quantity": 1},
            ],
        )  # refused: out of stock
        stock_reserve_task(order_id=order_ids[2], lines=[])  # refused: an invalid request
        stock_release_task(order_id=order_ids[0])
    assert {task for task, _ in published} == {"orders.saga_reply"}
    return [kwargs for _, kwargs in published]


def test_the_replies_cover_every_way_a_step_ends(replies):
    assert [(reply["step"], reply["ok"]) for reply in replies] == [
        ("stock_reserve", True),
        ("stock_reserve", False),
        ("stock_reserve", False),
        ("stock_release", True),
    ]
    assert replies[1]["data"]["product_ids"]  # the refused product named


def test_every_reply_holds_what_orders_relies_on(replies):
    assert contracts_of(consumer="orders", message="orders.saga_reply")
    for reply in replies:
        assert contract_verify("orders.saga_reply", reply) == []
        assert command_problems("orders.saga_reply", reply) == []


def test_on_the_slip_catalog_passes_the_credit_step_on_to_users_with_its_attestation(
    published,  # noqa: F811 - the fixture above
    django_capture_on_commit_callbacks,
):
    product = ProductFactory(on_hand=10, price=Decimal("9.50"))
    order_id = str(uuid.uuid4())
    grant = attested(
        claim="users.credit_reserve",
        fields={"order_id": order_id, "customer_id": "7"},
        signer="orders",
    )

    with django_capture_on_commit_callbacks(execute=True):
        stock_reserve_task(
            order_id=order_id,
            lines=[{"product_id": product.pk, "quantity": 2}],
            then={"customer_id": "7", "grant": grant},
        )

    [(task, kwargs)] = published  # no reply to orders: users answers for both steps
    assert task == "users.credit_reserve"
    priced = {
        "lines": [{"product_id": product.pk, "quantity": 2, "unit_price": "9.50"}],
        "total": "19.00",
    }
    assert kwargs == {
        "order_id": order_id,
        "customer_id": "7",
        "amount": "19.00",
        "grant": grant,
        "stock": {**priced, "attestation": kwargs["stock"]["attestation"]},
    }
    attestation_verify(
        claim=STOCK_ATTESTATION,
        fields={"order_id": order_id, **priced},
        attestation=kwargs["stock"]["attestation"],
        signer="catalog",
    )
    assert command_problems("users.credit_reserve", kwargs) == []


def test_a_reply_that_would_break_orders_names_it_and_the_field(replies):
    held = copy.deepcopy(replies[0])
    del held["data"]["total"]
    assert contract_verify("orders.saga_reply", held) == [
        "orders relies on orders.saga_reply data.total: 'total' is a required property"
    ]
    held = copy.deepcopy(replies[0])
    held["data"]["lines"][0]["unit_price"] = 10.0
    assert (
        "orders relies on orders.saga_reply data.lines[0].unit_price: 10.0 is not of type "
        in (contract_verify("orders.saga_reply", held)[0])
    )


def test_catalog_checks_the_events_it_consumes_against_its_part_only():
    assert registered_event_versions("order.cancelled") == [1]
    # What catalog reads is there: the rest of order.cancelled is not its business.
    event_data_validate(
        event_type="order.cancelled", data={"lines": [{"product_id": 1, "quantity": 2}]}, version=1
    )
    with pytest.raises(UnknownEventVersion, match=r"order\.cancelled v2 is not known here"):
        event_data_validate(event_type="order.cancelled", data={}, version=2)
    assert registered_event_versions("order.approved") == []  # nothing catalog reads


def test_every_task_catalog_runs_has_a_schema_file():
    import catalog.tasks  # noqa: F401 - registers the tasks

    tasks = {name for name in current_app.tasks if name.startswith("catalog.")}
    assert tasks
    assert tasks <= {name for name, _ in message_schemas("commands")}

"""The orchestrator's decisions, reply by reply (commands are captured, not sent).

The same flows run over RabbitMQ with real participants in tests/test_saga.py.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from common.signing import SignatureInvalid, attestation_verify
from common.testing.signing import attested
from common.testing.tracing import traceparent_of
from common.tracing import traceparent_current, tracer
from orders.errors import ReplyInconsistent
from orders.models import OrderEvent, OrderStatus, OrderSummary, Saga
from orders.saga import CREDIT_GRANT, STEPS, STOCK_ATTESTATION, saga_deadlines_check, saga_reply
from orders.selectors import order_events, order_get
from orders.services import LineRequest, order_cancel_request, order_place

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """The commands the orchestrator sends, in order: (task, kwargs)."""
    commands: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        "orders.saga.command_send",
        lambda *, service, task, **kwargs: commands.append((task, kwargs)),
    )
    return commands


def place() -> str:
    order, _ = order_place(customer_id="7", lines=[LineRequest(1, 2)])
    return str(order.id)


STOCK_OK = {"lines": [{"product_id": 1, "quantity": 2, "unit_price": "10.00"}], "total": "20.00"}
CREDIT_OK = {"customer_id": "7", "amount": "20.00"}
# Every reply of an approval, in order.
APPROVAL = [
    ("stock_reserve", STOCK_OK),
    ("credit_reserve", CREDIT_OK),
]


APPROVED_HISTORY = [
    "order.placed",
    "order.stock_reserved",
    "order.credit_reserved",
    "order.approved",
]


def approve(order_id: str) -> None:
    for step, data in APPROVAL:
        saga_reply(order_id=order_id, step=step, sender=STEPS[step][0], ok=True, data=data)


def test_the_happy_path_reserves_stock_then_credit_then_approves(sent):
    order_id = place()
    saga_reply(order_id=order_id, step="stock_reserve", sender="catalog", ok=True, data=STOCK_OK)
    saga_reply(order_id=order_id, step="credit_reserve", sender="users", ok=True, data=CREDIT_OK)

    # No commit nor capture command: the participants settle on order.approved.
    assert [task for task, _ in sent] == ["catalog.stock_reserve", "users.credit_reserve"]
    assert sent[1][1] == {"order_id": order_id, "customer_id": "7", "amount": "20.00"}
    order = order_get(order_id=order_id)
    assert order.status == OrderStatus.APPROVED
    assert [kind for kind, _ in order.history] == APPROVED_HISTORY
    approved = OrderEvent.objects.get(order_id=order_id, type="order.approved")
    assert approved.data == {
        "customer_id": "7",
        "total": "20.00",
        "currency": order.currency,
        "lines": [{"product_id": 1, "quantity": 2, "unit_price": "10.00"}],
    }
    assert Saga.objects.get(order_id=order_id).state == Saga.State.DONE


def test_placing_writes_the_event_read_model_and_saga_in_one_round_trip(
    sent, django_assert_num_queries
):
    # One round trip, and 2 for the savepoint the test's own transaction turns atomic into.
    with django_assert_num_queries(3):
        order_id = place()

    saga = Saga.objects.get(order_id=order_id)
    assert (saga.state, saga.snapshot["version"]) == (Saga.State.RESERVING_STOCK, 1)
    assert OrderSummary.objects.get(order_id=order_id).status == OrderStatus.PENDING
    assert [event.type for event in order_events(order_id=order_id)] == ["order.placed"]
    assert [task for task, _ in sent] == ["catalog.stock_reserve"]


def test_the_saga_keeps_the_order_so_a_reply_reads_no_events(sent, django_assert_num_queries):
    order_id = place()
    saga_reply(order_id=order_id, step="stock_reserve", sender="catalog", ok=True, data=STOCK_OK)

    # Lock the saga; insert both events, write the read model, update the saga and notify
    # the relay in one round trip: 2, and 2 for the savepoint the test's own transaction
    # turns atomic into.
    with django_assert_num_queries(4):
        saga_reply(
            order_id=order_id, step="credit_reserve", sender="users", ok=True, data=CREDIT_OK
        )

    saga = Saga.objects.get(order_id=order_id)
    rebuilt = order_get(order_id=order_id)
    assert saga.snapshot["version"] == rebuilt.version == 4
    assert saga.snapshot["status"] == rebuilt.status == OrderStatus.APPROVED
    assert OrderSummary.objects.get(order_id=order_id).version == 4


def test_no_stock_rejects_with_the_reason(sent):
    order_id = place()
    saga_reply(
        order_id=order_id, step="stock_reserve", sender="catalog", ok=False, reason="out_of_stock"
    )
    order = order_get(order_id=order_id)
    assert (order.status, order.rejection_reason) == (OrderStatus.REJECTED, "out_of_stock")
    assert [task for task, _ in sent] == ["catalog.stock_reserve"]


def test_refused_credit_rejects_at_once_and_leaves_the_release_to_the_event(sent):
    order_id = place()
    saga_reply(order_id=order_id, step="stock_reserve", sender="catalog", ok=True, data=STOCK_OK)
    saga_reply(
        order_id=order_id,
        step="credit_reserve",
        sender="users",
        ok=False,
        reason="credit_limit_exceeded",
    )

    order = order_get(order_id=order_id)
    assert (order.status, order.rejection_reason) == (OrderStatus.REJECTED, "credit_limit_exceeded")
    assert [kind for kind, _ in order.history][-2:] == ["order.credit_refused", "order.rejected"]
    assert Saga.objects.get(order_id=order_id).state == Saga.State.DONE
    # Catalog releases the stock when order.rejected reaches it: no command for that.
    assert [task for task, _ in sent] == ["catalog.stock_reserve", "users.credit_reserve"]


def test_every_reply_delivered_twice_gives_the_same_order(sent):
    order_id = place()
    for step, data in APPROVAL:
        saga_reply(order_id=order_id, step=step, sender=STEPS[step][0], ok=True, data=data)
        saga_reply(order_id=order_id, step=step, sender=STEPS[step][0], ok=True, data=data)

    order = order_get(order_id=order_id)
    assert order.status == OrderStatus.APPROVED
    assert len(order.history) == 4  # placed, stock, credit, approved: nothing twice
    assert len(sent) == 2


def test_cancel_releases_stock_and_credit_then_cancels(sent):
    order_id = place()
    approve(order_id)
    order_cancel_request(order_id=order_id, requested_by="7")
    assert order_get(order_id=order_id).status == OrderStatus.APPROVED  # until both are back
    saga_reply(order_id=order_id, step="stock_release", sender="catalog", ok=True)
    saga_reply(order_id=order_id, step="credit_release", sender="users", ok=True)

    order = order_get(order_id=order_id)
    assert order.status == OrderStatus.CANCELLED
    assert OrderSummary.objects.get(order_id=order_id).status == OrderStatus.CANCELLED
    assert {task for task, _ in sent[-2:]} == {"catalog.stock_release", "users.credit_release"}


def test_a_late_reply_is_asked_again_then_the_order_times_out(sent, settings):
    settings.SAGA_MAX_ATTEMPTS = 2
    order_id = place()
    later = timezone.now() + timedelta(hours=1)

    saga_deadlines_check(now=later)  # try 1
    saga_deadlines_check(now=later + timedelta(hours=1))  # try 2
    assert [task for task, _ in sent] == ["catalog.stock_reserve"] * 3
    saga_deadlines_check(now=later + timedelta(hours=2))  # gives up

    # The participants release whatever they hold on order.rejected: no command.
    assert len(sent) == 3
    order = order_get(order_id=order_id)
    assert (order.status, order.rejection_reason) == (OrderStatus.REJECTED, "timeout")
    saga = Saga.objects.get(order_id=order_id)
    assert (saga.state, saga.outcome) == (Saga.State.DONE, "rejected:timeout")

    saga_reply(order_id=order_id, step="stock_reserve", sender="catalog", ok=True, data=STOCK_OK)
    assert order_get(order_id=order_id).version == order.version  # a late reply changes nothing


def test_resends_and_a_timeout_stay_in_the_trace_that_placed_the_order(
    monkeypatch, settings, spans
):
    settings.SAGA_MAX_ATTEMPTS = 1
    traced: list[tuple[str, str]] = []
    monkeypatch.setattr(
        "orders.saga.command_send",
        lambda *, service, task, **kwargs: traced.append((task, traceparent_current())),
    )
    with tracer.start_as_current_span("placing"):
        order_id = place()
    later = timezone.now() + timedelta(hours=1)

    saga_deadlines_check(now=later)  # resend
    saga_deadlines_check(now=later + timedelta(hours=1))  # gives up: timeout

    placing = spans.named("placing").context
    passes = [span for span in spans.all() if span.name == "saga deadline"]
    assert [task for task, _ in traced] == ["catalog.stock_reserve"] * 2
    assert traced[1][1] == traceparent_of(passes[0])
    assert all(span.parent.span_id == placing.span_id for span in passes)
    assert all(span.attributes["order.id"] == order_id for span in passes)
    rejected = OrderEvent.objects.get(order_id=order_id, type="order.rejected")
    assert rejected.trace_context == {"traceparent": traceparent_of(passes[1])}


def test_a_failing_release_of_a_cancel_is_retried_and_flagged(sent):
    order_id = place()
    approve(order_id)
    order_cancel_request(order_id=order_id, requested_by="7")
    saga_reply(order_id=order_id, step="stock_release", sender="catalog", ok=False, reason="broken")

    saga = Saga.objects.get(order_id=order_id, kind=Saga.Kind.CANCEL)
    assert saga.needs_attention
    assert saga.state == Saga.State.CANCELLING
    assert sent[-1][0] == "catalog.stock_release"  # asked again


@pytest.mark.parametrize(
    ("state", "outcome", "status"),
    [
        (Saga.State.APPROVING, "approved", OrderStatus.APPROVED),
        (Saga.State.COMPENSATING, "rejected:credit_limit_exceeded", OrderStatus.REJECTED),
    ],
)
def test_a_saga_left_by_the_previous_design_is_finished_by_its_decision(
    sent, state, outcome, status
):
    """Approving (commit and capture asked) or compensating (a release asked), as sagas
    were before participants settled on events: the next reply or deadline decides."""
    order_id = place()
    saga_reply(order_id=order_id, step="stock_reserve", sender="catalog", ok=True, data=STOCK_OK)
    Saga.objects.filter(order_id=order_id).update(
        state=state,
        snapshot={},
        outcome="credit_limit_exceeded" if state == Saga.State.COMPENSATING else "",
        deadline=timezone.now() - timedelta(seconds=1),
    )

    saga_deadlines_check()

    saga = Saga.objects.get(order_id=order_id)
    assert (saga.state, saga.outcome) == (Saga.State.DONE, outcome)
    assert order_get(order_id=order_id).status == status
    assert OrderSummary.objects.get(order_id=order_id).status == status


# --- replies that do not match what was asked ---------------------------------------


def unchanged(order_id: str) -> tuple:
    """What a refused reply must leave as it was: the order's events and the saga row."""
    saga = Saga.objects.get(order_id=order_id)
    return (
        [event.type for event in order_events(order_id=order_id)],
        saga.state,
        dict(saga.pending),
        saga.attempts,
    )


def reserved_stock(order_id: str) -> str:
    """An order whose stock is reserved: the saga now asks users for 20.00 of credit."""
    saga_reply(order_id=order_id, step="stock_reserve", sender="catalog", ok=True, data=STOCK_OK)
    return order_id


@pytest.mark.parametrize(
    ("claim", "why"),
    [
        (
            {"lines": [{"product_id": 1, "quantity": 1, "unit_price": "10.00"}], "total": "10.00"},
            "not those asked",
        ),
        (
            {"lines": [{"product_id": 2, "quantity": 2, "unit_price": "10.00"}], "total": "20.00"},
            "not those asked",
        ),
        (
            {"lines": [{"product_id": 1, "quantity": 2, "unit_price": "10.00"}], "total": "2.00"},
            "is not its lines'",
        ),
        ({"total": "20.00"}, "lines missing"),
    ],
    ids=["other quantity", "other product", "total does not add up", "no lines"],
)
def test_a_stock_reply_claiming_other_lines_changes_nothing(sent, claim, why):
    order_id = place()
    before = unchanged(order_id)

    with pytest.raises(ReplyInconsistent, match=why):
        saga_reply(order_id=order_id, step="stock_reserve", sender="catalog", ok=True, data=claim)

    assert unchanged(order_id) == before
    assert len(sent) == 1  # only the reserve itself: nothing was asked of users


def test_a_stock_refusal_naming_products_not_asked_for_changes_nothing(sent):
    order_id = place()
    before = unchanged(order_id)

    with pytest.raises(ReplyInconsistent, match="not asked for"):
        saga_reply(
            order_id=order_id,
            step="stock_reserve",
            sender="catalog",
            ok=False,
            reason="out_of_stock",
            data={"product_ids": [99]},
        )

    assert unchanged(order_id) == before


@pytest.mark.parametrize(
    ("claim", "why"),
    [
        ({"customer_id": "7", "amount": "1.00"}, "amount '1.00'"),
        ({"customer_id": "8", "amount": "20.00"}, "customer_id '8'"),
        ({}, "customer_id None"),
    ],
    ids=["other amount", "other customer", "says nothing"],
)
def test_a_credit_reply_for_another_amount_or_customer_changes_nothing(sent, claim, why):
    order_id = reserved_stock(place())
    before = unchanged(order_id)

    with pytest.raises(ReplyInconsistent, match=why):
        saga_reply(order_id=order_id, step="credit_reserve", sender="users", ok=True, data=claim)

    assert unchanged(order_id) == before


@pytest.mark.parametrize(
    ("step", "sender"), [("stock_reserve", "users"), ("stock_reserve", "orders")]
)
def test_a_reply_from_another_participant_than_the_steps_changes_nothing(sent, step, sender):
    order_id = place()
    before = unchanged(order_id)

    with pytest.raises(ReplyInconsistent, match=f"must come from catalog, not {sender}"):
        saga_reply(order_id=order_id, step=step, sender=sender, ok=True, data=STOCK_OK)

    assert unchanged(order_id) == before


def test_a_credit_reply_from_catalog_changes_nothing(sent):
    order_id = reserved_stock(place())
    before = unchanged(order_id)

    with pytest.raises(ReplyInconsistent, match="must come from users, not catalog"):
        saga_reply(
            order_id=order_id, step="credit_reserve", sender="catalog", ok=True, data=CREDIT_OK
        )

    assert unchanged(order_id) == before


def test_a_reply_for_a_step_that_does_not_exist_is_refused(sent):
    order_id = place()

    with pytest.raises(ReplyInconsistent, match="no saga step"):
        saga_reply(order_id=order_id, step="refund_everything", sender="users", ok=True)


def test_a_reply_from_the_wrong_participant_is_refused_even_when_nothing_waits_for_it(sent):
    order_id = place()
    for step, data in APPROVAL:
        saga_reply(order_id=order_id, step=step, sender=STEPS[step][0], ok=True, data=data)

    with pytest.raises(ReplyInconsistent, match="must come from catalog, not users"):
        saga_reply(order_id=order_id, step="stock_release", sender="users", ok=True)


# --- the routing slip: catalog passes the credit step on, users answers for both -------


def slipped_reply(order_id: str, *, ok: bool = True, stock: dict | None = None, **data) -> None:
    """Users' answer to the credit step catalog passed on, with catalog's attested stock."""
    stock = stock or {
        **STOCK_OK,
        "attestation": attested(
            claim=STOCK_ATTESTATION, fields={"order_id": order_id, **STOCK_OK}, signer="catalog"
        ),
    }
    answer = {**(CREDIT_OK if ok else {}), **data, "stock": stock}
    reason = "" if ok else "credit_limit_exceeded"
    saga_reply(
        order_id=order_id, step="credit_reserve", sender="users", ok=ok, reason=reason, data=answer
    )


def test_the_stock_command_carries_the_slip_with_orders_grant_for_the_customer(sent):
    order_id = place()

    [(task, kwargs)] = sent
    assert task == "catalog.stock_reserve"
    assert kwargs["then"]["customer_id"] == "7"
    grant = kwargs["then"]["grant"]
    fields = {"order_id": order_id, "customer_id": "7"}
    attestation_verify(claim=CREDIT_GRANT, fields=fields, attestation=grant, signer="orders")
    with pytest.raises(SignatureInvalid):  # for this order and customer only
        attestation_verify(
            claim=CREDIT_GRANT,
            fields={**fields, "customer_id": "8"},
            attestation=grant,
            signer="orders",
        )


def test_on_the_slip_one_reply_approves_with_the_same_history(sent):
    order_id = place()

    slipped_reply(order_id)

    assert [task for task, _ in sent] == ["catalog.stock_reserve"]  # users was asked by catalog
    order = order_get(order_id=order_id)
    assert order.status == OrderStatus.APPROVED
    assert [kind for kind, _ in order.history] == APPROVED_HISTORY
    events = {e.type: e.data for e in OrderEvent.objects.filter(order_id=order_id)}
    assert events["order.stock_reserved"] == STOCK_OK
    assert events["order.credit_reserved"] == {"amount": "20.00"}
    assert events["order.approved"]["lines"] == STOCK_OK["lines"]
    assert events["order.approved"]["total"] == "20.00"
    assert OrderSummary.objects.get(order_id=order_id).status == OrderStatus.APPROVED
    saga = Saga.objects.get(order_id=order_id)
    assert (saga.state, saga.outcome, saga.pending) == (Saga.State.DONE, "approved", {})
    slipped_reply(order_id)  # a duplicate answer changes nothing
    assert len(order_events(order_id=order_id)) == 4


def test_on_the_slip_a_credit_refusal_records_the_stock_and_rejects(sent):
    order_id = place()

    slipped_reply(order_id, ok=False)

    order = order_get(order_id=order_id)
    assert (order.status, order.rejection_reason) == (
        OrderStatus.REJECTED,
        "credit_limit_exceeded",
    )
    assert [kind for kind, _ in order.history] == [
        "order.placed",
        "order.stock_reserved",
        "order.credit_refused",
        "order.rejected",
    ]


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (lambda stock: stock.update(total="2.00"), "does not verify with catalog's key"),
        (lambda stock: stock.pop("attestation"), "no attestation by catalog"),
        (
            lambda stock: stock["attestation"].update(signer="users"),
            "no attestation by catalog",
        ),
    ],
    ids=["price changed on the way", "no attestation", "users' own"],
)
def test_on_the_slip_a_stock_part_catalog_did_not_attest_changes_nothing(sent, tamper, why):
    order_id = place()
    before = unchanged(order_id)
    stock = {
        **STOCK_OK,
        "attestation": attested(
            claim=STOCK_ATTESTATION, fields={"order_id": order_id, **STOCK_OK}, signer="catalog"
        ),
    }
    tamper(stock)

    with pytest.raises(ReplyInconsistent, match=why):
        slipped_reply(order_id, stock=stock)

    assert unchanged(order_id) == before


def test_on_the_slip_credit_for_another_amount_than_the_attested_total_changes_nothing(sent):
    order_id = place()
    before = unchanged(order_id)

    with pytest.raises(ReplyInconsistent, match=r"amount '1\.00'"):
        slipped_reply(order_id, amount="1.00")

    assert unchanged(order_id) == before


def test_on_the_slip_a_late_answer_is_asked_again_through_catalog(sent):
    order_id = place()

    assert saga_deadlines_check(now=timezone.now() + timedelta(hours=1)) == 1

    assert [task for task, _ in sent] == ["catalog.stock_reserve"] * 2
    assert sent[1][1] == sent[0][1]  # the same slip: catalog passes it on again
    assert sent[1][1]["order_id"] == order_id

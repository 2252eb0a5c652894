"""Business figures on /metrics, read from the orders database at scrape time."""

import math

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from orders.metrics import quantile
from orders.models import Saga
from orders.saga import STEPS, saga_reply
from orders.tests.test_saga import APPROVAL, place

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_commands(monkeypatch):
    monkeypatch.setattr("orders.saga.command_send", lambda **kwargs: None)


def approve(order_id: str) -> None:
    for step, data in APPROVAL:
        saga_reply(order_id=order_id, step=step, sender=STEPS[step][0], ok=True, data=data)


def scrape(*, multiprocess_dir=None, monkeypatch=None) -> dict[tuple[str, tuple], float]:
    if multiprocess_dir is not None:
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(multiprocess_dir))
    response = Client().get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_orders_are_counted_by_status_and_rejections_by_reason():
    approve(place())
    approve(place())
    out_of_stock = place()
    saga_reply(
        order_id=out_of_stock,
        step="stock_reserve",
        sender="catalog",
        ok=False,
        reason="out_of_stock",
    )
    place()  # still pending

    metrics = scrape()

    assert metrics[("orders_by_status", (("status", "APPROVED"),))] == 2
    assert metrics[("orders_by_status", (("status", "REJECTED"),))] == 1
    assert metrics[("orders_by_status", (("status", "PENDING"),))] == 1
    assert metrics[("orders_by_status", (("status", "CANCELLED"),))] == 0
    assert metrics[("orders_rejected_by_reason", (("reason", "out_of_stock"),))] == 1
    assert metrics[("orders_scrape_ok", ())] == 1


def test_decision_time_covers_the_orders_decided_in_the_window():
    approve(place())
    place()  # not decided: not counted

    metrics = scrape()

    assert metrics[("orders_decided_recently", (("outcome", "approved"),))] == 1
    assert metrics[("orders_decided_recently", (("outcome", "rejected"),))] == 0
    p50 = metrics[("orders_decision_seconds", (("outcome", "approved"), ("quantile", "0.5")))]
    assert 0 < p50 < 60
    assert math.isnan(
        metrics[("orders_decision_seconds", (("outcome", "rejected"), ("quantile", "0.5")))]
    )


def test_open_and_flagged_sagas_are_shown():
    waiting = place()
    flagged = place()
    Saga.objects.filter(order_id=flagged).update(needs_attention=True)
    approve(place())

    metrics = scrape()

    assert metrics[("sagas_open", (("kind", "place"), ("state", "reserving_stock")))] == 2
    assert metrics[("sagas_needing_attention", ())] == 1
    assert metrics[("sagas_oldest_open_age_seconds", ())] >= 0
    assert Saga.objects.get(order_id=waiting).state == Saga.State.RESERVING_STOCK


def test_the_figures_are_exported_in_multiprocess_mode_too(tmp_path, monkeypatch):
    approve(place())

    metrics = scrape(multiprocess_dir=tmp_path, monkeypatch=monkeypatch)

    assert metrics[("orders_by_status", (("status", "APPROVED"),))] == 1
    # placed, stock reserved, credit reserved, approved: nothing relayed in this test
    assert metrics[("outbox_unpublished_events", ())] == 4


def test_quantile_is_nearest_rank():
    values = [0.1, 0.2, 0.3, 0.4, 1.0]
    assert quantile(values, 0.5) == 0.3
    assert quantile(values, 0.99) == 1.0
    assert quantile([0.7], 0.5) == 0.7
    assert math.isnan(quantile([], 0.5))

import pytest

from statuspage.figures import (
    DEFAULT_WINDOW_SECONDS,
    backbone_figures,
    metrics_parse,
    order_figures,
    saga_figures,
)
from statuspage.tests.metrics_samples import CATALOG, GATEWAY, ORDERS


def test_queue_depths_are_summed_by_kind_with_dead_letters_apart():
    figures = backbone_figures(scrape=metrics_parse(text=CATALOG))

    assert (figures["commands"], figures["events"], figures["dead_letters"]) == (4, 2, 3)


def test_the_outbox_lag_is_the_oldest_unpublished_events_age():
    figures = backbone_figures(scrape=metrics_parse(text=CATALOG))

    assert (figures["outbox_unpublished"], figures["outbox_lag_seconds"]) == (7, 95.5)


def test_a_broker_the_service_could_not_read_is_reported_not_taken_for_empty_queues():
    figures = backbone_figures(scrape=metrics_parse(text=ORDERS))

    assert figures["broker_ok"] is False
    assert figures["dead_letters"] is None


def test_figures_a_service_does_not_export_are_none():
    figures = backbone_figures(scrape=metrics_parse(text=GATEWAY))

    assert (figures["commands"], figures["broker_ok"], figures["outbox_lag_seconds"]) == (
        None,
        None,
        None,
    )


def test_open_sagas_are_counted_by_kind_and_state():
    sagas = saga_figures(scrape=metrics_parse(text=ORDERS))

    assert sagas == {
        "open": [
            {"kind": "place", "state": "reserving_credit", "count": 1},
            {"kind": "place", "state": "reserving_stock", "count": 2},
        ],
        "open_total": 3,
        "needing_attention": 1,
        "oldest_age_seconds": 42.0,
    }


def test_a_service_without_sagas_has_no_saga_figures():
    assert saga_figures(scrape=metrics_parse(text=CATALOG)) is None


def test_orders_per_minute_spread_the_decided_orders_over_the_window_the_help_names():
    orders = order_figures(scrape=metrics_parse(text=ORDERS))

    assert orders["window_seconds"] == 120
    assert orders["per_minute"] == {"approved": 12.0, "rejected": 0.0}


def test_an_undecided_outcome_has_no_median_rather_than_nan():
    orders = order_figures(scrape=metrics_parse(text=ORDERS))

    medians = {row["outcome"]: row["decision_p50_seconds"] for row in orders["outcomes"]}
    assert medians == {"approved": 0.25, "rejected": None}


def test_a_help_text_without_a_window_falls_back_to_orders_default():
    text = ORDERS.replace("in the last 120 s.", "recently.")

    orders = order_figures(scrape=metrics_parse(text=text))

    assert orders["window_seconds"] == DEFAULT_WINDOW_SECONDS
    assert orders["per_minute"]["approved"] == round(24 * 60 / DEFAULT_WINDOW_SECONDS, 2)


def test_orders_standing_in_each_status_are_listed():
    orders = order_figures(scrape=metrics_parse(text=ORDERS))

    assert orders["by_status"] == {"APPROVED": 30, "PENDING": 2, "REJECTED": 6}


def test_text_that_is_not_prometheus_format_is_refused():
    with pytest.raises(ValueError, match="invalid"):
        metrics_parse(text="<html>502 Bad Gateway</html>\n")

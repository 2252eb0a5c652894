"""Business figures of orders on ``/metrics``, read from the orders database at scrape time.

Read from the database rather than counted in memory: the saga advances in
the Celery worker, the web process answers the scrape, and in a cluster they
are different pods. Each query has an index to use (summaries by status,
sagas by state, events by time and by ``(order_id, version)``); the counts by
status still grow with the number of orders, and the decision times read one
row per order decided in the window (30 000 at 100 orders/s over 300 s).
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min, OuterRef, Subquery
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from common.metrics import DatabaseCollector, age_seconds
from orders.models import OrderEvent, OrderEventType, OrderStatus, OrderSummary, Saga

DECISION_QUANTILES = (0.5, 0.9, 0.99)
_OUTCOMES = {OrderEventType.APPROVED: "approved", OrderEventType.REJECTED: "rejected"}


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list (NaN for none, as Prometheus expects)."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


class OrdersCollector(DatabaseCollector):
    prefix = "orders"

    def families(self) -> list[Metric]:
        window = settings.ORDERS_METRICS_WINDOW_SECONDS
        return [
            GaugeMetricFamily(
                "orders_by_status", "Orders standing in each status.", labels=["status"]
            ),
            GaugeMetricFamily(
                "orders_rejected_by_reason",
                "Rejected orders by reason (out_of_stock, credit_limit_exceeded, timeout...).",
                labels=["reason"],
            ),
            GaugeMetricFamily(
                "orders_decision_seconds",
                f"Time from order.placed to order.approved or order.rejected, over the orders "
                f"decided in the last {window} s (NaN when none).",
                labels=["outcome", "quantile"],
            ),
            GaugeMetricFamily(
                "orders_decided_recently",
                f"Orders approved or rejected in the last {window} s.",
                labels=["outcome"],
            ),
            GaugeMetricFamily(
                "sagas_open", "Sagas not finished, by kind and state.", labels=["kind", "state"]
            ),
            GaugeMetricFamily(
                "sagas_needing_attention",
                "Unfinished sagas flagged for an operator (see manage.py saga_status).",
                labels=[],
            ),
            GaugeMetricFamily(
                "sagas_oldest_open_age_seconds",
                "How long the oldest unfinished saga has run (0 when none).",
                labels=[],
            ),
        ]

    def fill(self, families: dict[str, Metric]) -> None:
        by_status = dict.fromkeys(OrderStatus.values, 0)
        by_status.update(
            OrderSummary.objects.values_list("status").annotate(n=Count("order_id")).order_by()
        )
        for status, count in sorted(by_status.items()):
            families["orders_by_status"].add_metric([status], count)

        reasons = (
            OrderSummary.objects.filter(status=OrderStatus.REJECTED)
            .values_list("rejection_reason")
            .annotate(n=Count("order_id"))
            .order_by("rejection_reason")
        )
        for reason, count in reasons:
            families["orders_rejected_by_reason"].add_metric([reason or "unknown"], count)

        self._fill_decisions(families)

        open_sagas = Saga.objects.exclude(state=Saga.State.DONE)
        by_state = open_sagas.values_list("kind", "state").annotate(n=Count("id"))
        for kind, state, count in by_state.order_by("kind", "state"):
            families["sagas_open"].add_metric([kind, state], count)
        families["sagas_needing_attention"].add_metric(
            [], open_sagas.filter(needs_attention=True).count()
        )
        oldest = open_sagas.aggregate(oldest=Min("started_at"))["oldest"]
        families["sagas_oldest_open_age_seconds"].add_metric([], age_seconds(oldest))

    @staticmethod
    def _fill_decisions(families: dict[str, Metric]) -> None:
        since = timezone.now() - timedelta(seconds=settings.ORDERS_METRICS_WINDOW_SECONDS)
        placed_at = OrderEvent.objects.filter(order_id=OuterRef("order_id"), version=1).values(
            "occurred_at"
        )[:1]
        decided = (
            OrderEvent.objects.filter(occurred_at__gte=since, type__in=list(_OUTCOMES))
            .annotate(placed_at=Subquery(placed_at))
            .values_list("type", "occurred_at", "placed_at")
        )
        durations: dict[str, list[float]] = {outcome: [] for outcome in _OUTCOMES.values()}
        for event_type, occurred_at, placed in decided:
            if placed is not None:
                durations[_OUTCOMES[event_type]].append((occurred_at - placed).total_seconds())
        for outcome, values in durations.items():
            values.sort()
            families["orders_decided_recently"].add_metric([outcome], len(values))
            for q in DECISION_QUANTILES:
                families["orders_decision_seconds"].add_metric(
                    [outcome, str(q)], quantile(values, q)
                )

"""The outbox's backlog on ``/metrics``, read from the service's database at scrape time."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from common.events.outbox import outbox_model
from common.metrics import DatabaseCollector, age_seconds


class OutboxCollector(DatabaseCollector):
    """Events recorded but not yet published, and how long the oldest has waited.

    A growing age means the relay is down, stuck or behind (or the broker is
    away): the events are safe in the database but nobody hears of them.
    Both reads use the outbox's partial index on unpublished rows.
    """

    prefix = "outbox"

    def families(self) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "outbox_unpublished_events",
                "Events committed to the outbox and not yet confirmed by the broker.",
                labels=[],
            ),
            GaugeMetricFamily(
                "outbox_oldest_unpublished_age_seconds",
                "How long the oldest unpublished event has waited (0 when none): the outbox lag.",
                labels=[],
            ),
        ]

    def fill(self, families: dict[str, Metric]) -> None:
        model = outbox_model()
        unpublished = model.objects.filter(published_at__isnull=True)
        oldest = (
            unpublished.order_by(*model.outbox_ordering)
            .values_list(model.outbox_time_field, flat=True)
            .first()
        )
        families["outbox_unpublished_events"].add_metric([], unpublished.count())
        families["outbox_oldest_unpublished_age_seconds"].add_metric([], age_seconds(oldest))

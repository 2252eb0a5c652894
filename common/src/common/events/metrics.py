"""The event backbone on ``/metrics``: the outbox's backlog (from the service's
database) and the service's queues (from the broker), read at scrape time."""

from __future__ import annotations

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric

from common.events.broker import (
    BrokerUnavailable,
    dead_letter_queue_name,
    queue_name,
    queue_sizes,
)
from common.events.outbox import outbox_model
from common.metrics import DatabaseCollector, LiveCollector, age_seconds


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


class QueueCollector(LiveCollector):
    """Messages waiting in this service's queues: its Celery commands, its events, its dead letters.

    A growing command or event queue means the service's worker or consumer
    is down or behind; anything in the dead-letter queue waits for an
    operator (``manage.py dlq``). One short broker connection per scrape.
    """

    prefix = "broker"
    read_errors = (BrokerUnavailable,)

    def families(self) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "broker_queue_messages",
                "Messages ready in this service's queues (commands, events, dead letters).",
                labels=["queue", "kind"],
            )
        ]

    def fill(self, families: dict[str, Metric]) -> None:
        kinds = {
            settings.CELERY_TASK_DEFAULT_QUEUE: "commands",
            # Commands and replies the worker refused (common.commands.VerifiedTask).
            dead_letter_queue_name(kind="commands"): "dead_letters",
        }
        if getattr(settings, "EVENT_HANDLERS", None):
            kinds[queue_name()] = "events"
            kinds[dead_letter_queue_name()] = "dead_letters"
        sizes = queue_sizes(list(kinds))
        for name, kind in kinds.items():
            if name in sizes:
                families["broker_queue_messages"].add_metric([name, kind], sizes[name])

"""``/metrics``: the process's own metrics plus figures read at scrape time.

Some figures are not counted as things happen but read when Prometheus asks:
the gateway's breaker states, the outbox's backlog, the queues' depth, how
many orders stand in each status. Their collectors read live state (memory,
the service's database or its broker, so every web instance reports the same
truth whichever process did the work) and are registered here with
``scrape_collector_register``.

django-prometheus's own view exports only the multiprocess files when
``PROMETHEUS_MULTIPROC_DIR`` is set (as in compose and k8s), which would drop
such collectors exactly where it matters; this view adds them in both modes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from datetime import datetime

import prometheus_client
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)

_scrape_collectors: list[Collector] = []


def scrape_collector_register(collector: Collector) -> Collector:
    """Export ``collector`` on ``/metrics`` in single- and multiprocess mode alike."""
    if collector not in _scrape_collectors:
        _scrape_collectors.append(collector)
        REGISTRY.register(collector)
    return collector


class _Collected(Collector):
    def __init__(self, collectors: Iterable[Collector]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def metrics_view(request: HttpRequest) -> HttpResponse:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_Collected(_scrape_collectors))
    else:
        registry = REGISTRY
    return HttpResponse(
        prometheus_client.generate_latest(registry),
        content_type=prometheus_client.CONTENT_TYPE_LATEST,
    )


class LiveCollector(Collector):
    """A scrape-time collector whose source may be away; a failing read costs its figures only.

    Subclasses declare their (empty) metric families in ``families()`` and
    fill them in ``fill()``. Registration asks only for ``describe()``, so
    nothing is read before the first scrape. When the source does not answer
    (one of ``read_errors``), the scrape still succeeds (the process's other
    metrics matter most then) and ``<prefix>_scrape_ok`` says 0.
    """

    prefix = "live"
    read_errors: tuple[type[BaseException], ...] = ()

    def families(self) -> list[Metric]:
        raise NotImplementedError

    def fill(self, families: dict[str, Metric]) -> None:
        raise NotImplementedError

    def _ok(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            f"{self.prefix}_scrape_ok",
            "1 when the figures below were read at this scrape, 0 when their source failed.",
            labels=[],
        )

    def describe(self) -> Iterator[Metric]:
        yield self._ok()
        yield from self.families()

    def collect(self) -> Iterator[Metric]:
        ok = self._ok()
        families = {family.name: family for family in self.families()}
        try:
            self.fill(families)
        except self.read_errors:
            logger.exception("Metrics of %s could not be read", self.prefix)
            ok.add_metric([], 0)
            yield ok
            return
        ok.add_metric([], 1)
        yield ok
        yield from families.values()


class DatabaseCollector(LiveCollector):
    """Figures read from the service's database at scrape time."""

    prefix = "db"
    read_errors = (DatabaseError,)


def age_seconds(moment: datetime | None) -> float:
    """Seconds since ``moment`` (0 for none): how long the oldest of something has waited."""
    return max(0.0, (timezone.now() - moment).total_seconds()) if moment else 0.0

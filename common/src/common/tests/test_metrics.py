"""``/metrics``: scrape-time collectors, in single- and multiprocess mode; the outbox lag."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError, transaction
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from common.events import event_record
from common.events.models import OutboxMessage
from common.metrics import DatabaseCollector
from common.tests import event_handlers  # noqa: F401 - registers the test.ping event type


def scrape(client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if not sample.labels
    }


@pytest.fixture(params=["single", "multiprocess"])
def mode(request, tmp_path, monkeypatch):
    if request.param == "multiprocess":
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    else:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return request.param


@pytest.mark.django_db
def test_the_outbox_lag_is_the_age_of_the_oldest_unpublished_event(client, mode):
    assert scrape(client)["outbox_unpublished_events"] == 0
    assert scrape(client)["outbox_oldest_unpublished_age_seconds"] == 0

    with transaction.atomic():
        older = event_record(type="test.ping", subject="s-1", data={"n": 1})
        event_record(type="test.ping", subject="s-2", data={"n": 2})
    OutboxMessage.objects.filter(id=older.id).update(
        created_at=timezone.now() - timedelta(seconds=90)
    )
    metrics = scrape(client)

    assert metrics["outbox_unpublished_events"] == 2
    assert 90 <= metrics["outbox_oldest_unpublished_age_seconds"] < 120
    assert metrics["outbox_scrape_ok"] == 1

    OutboxMessage.objects.filter(id=older.id).update(published_at=timezone.now())
    metrics = scrape(client)

    assert metrics["outbox_unpublished_events"] == 1
    assert metrics["outbox_oldest_unpublished_age_seconds"] < 90


class _Unreachable(DatabaseCollector):
    prefix = "unreachable"

    def families(self):
        return [GaugeMetricFamily("unreachable_things", "Never read.", labels=[])]

    def fill(self, families):
        raise OperationalError("connection refused")


def test_a_database_that_does_not_answer_costs_only_its_figures():
    collected = {family.name: family for family in _Unreachable().collect()}

    assert [sample.value for sample in collected["unreachable_scrape_ok"].samples] == [0]
    assert "unreachable_things" not in collected


def test_registration_runs_no_query():
    # describe() alone: registering at start-up must not touch a database
    # that may not be there yet (no django_db mark: a query would fail here).
    names = [family.name for family in _Unreachable().describe()]
    assert names == ["unreachable_scrape_ok", "unreachable_things"]

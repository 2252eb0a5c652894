"""``/ready/``: 200 while the database and the broker answer, 503 (not 500) when one does not."""

from __future__ import annotations

import dataclasses

import pytest
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable

from common import health

pytestmark = pytest.mark.django_db


@dataclasses.dataclass
class BrokerDown(HealthCheck):
    def run(self) -> None:
        raise ServiceUnavailable("The broker refused the connection.")


def test_ready_while_database_and_broker_answer(client):
    response = client.get("/ready/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200


def test_not_ready_is_503_and_names_what_failed(client, monkeypatch):
    monkeypatch.setattr(health, "broker_check", BrokerDown)

    response = client.get("/ready/", HTTP_ACCEPT="application/json")

    assert response.status_code == 503
    assert "The broker refused the connection." in response.content.decode()

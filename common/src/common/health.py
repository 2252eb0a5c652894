"""Liveness (``/health/``) and readiness (``/ready/``: database and broker)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from health_check.base import HealthCheck
from health_check.checks import Database
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView


@dataclasses.dataclass
class FilesystemBroker(HealthCheck):
    """The embedded ``filesystem://`` broker: its folders exist and are writable."""

    def run(self) -> None:
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        for key in ("data_folder_in", "control_folder"):
            folder = Path(options[key])
            if not (folder.is_dir() and os.access(folder, os.W_OK)):
                raise ServiceUnavailable(f"Broker folder {key} is missing or read-only.")


def broker_check() -> HealthCheck:
    """The check that fits the configured broker."""
    url: str = settings.CELERY_BROKER_URL
    if url.startswith(("amqp://", "amqps://", "pyamqp://")):
        from health_check.contrib.rabbitmq import RabbitMQ

        # aio-pika speaks amqp:// only; kombu's pyamqp:// names the same thing.
        return RabbitMQ(amqp_url=url.replace("pyamqp://", "amqp://", 1))
    return FilesystemBroker()


def readiness_checks() -> list[HealthCheck]:
    """What ready means, for ``/ready/`` and the gRPC health service (common.grpc_server)."""
    return [Database(), broker_check()]


class ReadyView(HealthCheckView):
    """Ready to serve: the database answers and the broker accepts connections."""

    def get_checks(self):  # type: ignore[override]
        return readiness_checks()

    async def get(self, request: HttpRequest, *args, **kwargs):  # type: ignore[override]
        # The library answers a failed check with 500; "not ready" is 503 (Service
        # Unavailable), which probes, load balancers and the 5xx alerts tell apart.
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:
            response.status_code = 503
        return response


@never_cache
def health_view(request: HttpRequest) -> JsonResponse:
    """Alive: the process answers. Dependencies are ``/ready/``'s business."""
    return JsonResponse({"status": "ok", "service": settings.SERVICE_NAME})

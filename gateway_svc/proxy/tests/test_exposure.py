"""The operators' surface (admin, metrics, probes, /internal/) answers on the internal port only.

The ASGI application is driven directly (httpx's ASGITransport puts the URL's port in
the scope's ``server``, as uvicorn puts the listening socket's), Django included.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.urls import reverse

from common.discovery.static import StaticDiscovery
from proxy.app import GatewayApp, internal_path
from proxy.runtime import Runtime

PUBLIC_PORT, INTERNAL_PORT = 8000, 8080
# By URL name, so a renamed or moved operators' URL is still checked where it is.
OPERATORS_URLS = [
    "health",
    "ready",
    "prometheus-django-metrics",
    "admin:index",
    "admin:login",
    "admin-status",
    "gateway-status",
]
# What the internal port answers for those that need no database (Django's own answers).
SERVED = {"health": 200, "prometheus-django-metrics": 200, "admin:index": 302}


def gateway(settings, internal_port: int | None) -> GatewayApp:
    settings.GATEWAY = {**settings.GATEWAY, "INTERNAL_PORT": internal_port}
    return GatewayApp(
        get_asgi_application(),
        runtime_factory=lambda: Runtime(
            routes={},
            discovery=StaticDiscovery(urls={}),
            config=settings.GATEWAY,
            num_proxies=0,
        ),
    )


def get(app: GatewayApp, port: int, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as client:
            # A whole URL: "//admin/" relative to a base would name a host.
            return await client.get(f"http://localhost:{port}{path}")

    return asyncio.run(call())


@pytest.mark.parametrize("name", OPERATORS_URLS)
def test_the_public_port_answers_404_for_the_operators_surface(settings, name):
    response = get(gateway(settings, INTERNAL_PORT), PUBLIC_PORT, reverse(name))

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("path", ["/admin", "//admin/", "/%61dmin/", "/metrics/", "/internal/x"])
def test_spellings_of_an_operators_path_are_refused_too(settings, path):
    assert get(gateway(settings, INTERNAL_PORT), PUBLIC_PORT, path).status_code == 404


@pytest.mark.parametrize(("name", "status"), SERVED.items())
def test_the_internal_port_serves_the_operators_surface(settings, transactional_db, name, status):
    # transactional_db: Django answers in another thread, /metrics reads the outbox.
    response = get(gateway(settings, INTERNAL_PORT), INTERNAL_PORT, reverse(name))

    assert response.status_code == status


def test_the_internal_status_reaches_django_on_the_internal_port(settings):
    response = get(gateway(settings, INTERNAL_PORT), INTERNAL_PORT, reverse("gateway-status"))

    assert response.status_code == 401  # Django's answer: it wants a service token
    assert response.json()["code"] == "not_authenticated"


def test_the_public_port_keeps_serving_the_public_surface(settings, gateway_keys):
    app = gateway(settings, INTERNAL_PORT)

    assert get(app, PUBLIC_PORT, reverse("jwks")).status_code == 200
    assert get(app, PUBLIC_PORT, reverse("swagger-ui")).status_code == 200


@pytest.mark.parametrize("port", [PUBLIC_PORT, INTERNAL_PORT])
def test_without_an_internal_port_every_port_serves_everything(settings, transactional_db, port):
    # `make run`: one port per service, admin and metrics on it as on every service.
    metrics = get(gateway(settings, None), port, reverse("prometheus-django-metrics"))

    assert metrics.status_code == 200


def test_only_the_first_path_segment_decides():
    assert internal_path("/admin/orders/")
    assert internal_path("/metrics")
    assert not internal_path("/api/admin/")
    assert not internal_path("/administration/")
    assert not internal_path("/")

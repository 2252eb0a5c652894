"""``/admin/status/``: the status page in the gateway's admin (staff only, see urls.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

from common.discovery import discovery_from_settings
from common.metrics import metrics_view
from statuspage.selectors import status_snapshot

REFRESH_SECONDS = 10


def _runtime_status() -> dict[str, Any] | None:
    """This worker's breakers and bulkheads, as ``/internal/status/`` answers them."""
    from proxy.runtime import StatusCollector

    runtime = StatusCollector.current
    return runtime.status() if runtime is not None else None


def status_page_view(request: HttpRequest) -> HttpResponse:
    """Every service's health and the backbone's figures; ``?format=json`` for the data alone."""
    discovery = discovery_from_settings()
    discovery.start()  # idempotent; the proxy's runtime usually started it already
    snapshot = status_snapshot(
        services=list(settings.GATEWAY["ROUTES"]),
        discovery=discovery,
        runtime=_runtime_status(),
        local_metrics=lambda: metrics_view(request).content.decode(),
    )
    if request.GET.get("format") == "json":
        return JsonResponse(snapshot)
    context = {
        **admin.site.each_context(request),
        "title": "System status",
        "snapshot": snapshot,
        "refresh_seconds": REFRESH_SECONDS,
    }
    return TemplateResponse(request, "statuspage/status.html", context)

"""The URLs every service serves besides its own API."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, path
from drf_spectacular.views import SpectacularSwaggerView

from common.health import ReadyView, health_view
from common.metrics import metrics_view
from common.schema_api import SchemaApi


def service_urlpatterns() -> list[URLPattern | URLResolver]:
    """``/health/``, ``/ready/``, ``/metrics``, ``/api/schema/``, ``/api/docs/``, ``/admin/``."""
    return [
        path("health/", health_view, name="health"),
        path("ready/", ReadyView.as_view(), name="ready"),
        path("metrics", metrics_view, name="prometheus-django-metrics"),
        path("api/schema/", SchemaApi.as_view(), name="schema"),
        path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
        path("admin/", admin.site.urls),
    ]

"""The URLs every service serves besides its own API."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from common.health import ReadyView, health_view


def service_urlpatterns() -> list[URLPattern | URLResolver]:
    """``/health/``, ``/ready/``, ``/metrics``, ``/api/schema/``, ``/api/docs/``, ``/admin/``."""
    return [
        path("health/", health_view, name="health"),
        path("ready/", ReadyView.as_view(), name="ready"),
        path("", include("django_prometheus.urls")),
        path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
        path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
        path("admin/", admin.site.urls),
    ]

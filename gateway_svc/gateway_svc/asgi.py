"""ASGI entry point of the gateway: the lean proxy path in front of Django.

Served by gunicorn with uvicorn workers (see the Procfile and README for why).
"""

import os

from django.core.asgi import get_asgi_application

from common.tracing import tracing_configure

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_svc.settings")
# Before Django loads its middleware: the Django instrumentation adds its own.
tracing_configure(service="gateway")

django_application = get_asgi_application()

from proxy.app import GatewayApp  # noqa: E402 - needs Django set up first

application = GatewayApp(django_application)

"""WSGI entry point of the catalog service (gunicorn catalog_svc.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

from common.tracing import tracing_configure

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_svc.settings")
# Before Django loads its middleware: the Django instrumentation adds its own.
tracing_configure(service="catalog")

application = get_wsgi_application()

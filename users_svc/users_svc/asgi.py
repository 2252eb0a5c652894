"""ASGI entry point of the users service."""

import os

from django.core.asgi import get_asgi_application

from common.tracing import tracing_configure

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "users_svc.settings")
# Before Django loads its middleware: the Django instrumentation adds its own.
tracing_configure(service="users")

application = get_asgi_application()

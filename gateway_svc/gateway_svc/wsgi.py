"""WSGI entry point of the gateway service (gunicorn gateway_svc.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_svc.settings")

application = get_wsgi_application()

"""WSGI entry point of the catalog service (gunicorn catalog_svc.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_svc.settings")

application = get_wsgi_application()

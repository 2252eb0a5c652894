"""WSGI entry point of the users service (gunicorn users_svc.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "users_svc.settings")

application = get_wsgi_application()

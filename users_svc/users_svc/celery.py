"""The users service's Celery app: ``celery -A users_svc worker -Q users``."""

from common.celery import make_celery_app

app = make_celery_app(service="users", settings_module="users_svc.settings")

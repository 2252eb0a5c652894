"""The gateway service's Celery app: ``celery -A gateway_svc worker -Q gateway``."""

from common.celery import make_celery_app

app = make_celery_app(service="gateway", settings_module="gateway_svc.settings")

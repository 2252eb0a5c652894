"""The orders service's Celery app: ``celery -A orders_svc worker -Q orders``."""

from common.celery import make_celery_app

app = make_celery_app(service="orders", settings_module="orders_svc.settings")

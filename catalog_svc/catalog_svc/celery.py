"""The catalog service's Celery app: ``celery -A catalog_svc worker -Q catalog``."""

from common.celery import make_celery_app

app = make_celery_app(service="catalog", settings_module="catalog_svc.settings")

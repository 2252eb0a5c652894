"""Settings of the catalog service: the shared defaults plus its own apps.

Every value comes from the environment; see .env.example at the repository root.
"""

from pathlib import Path

from common.settings import service_defaults

BASE_DIR = Path(__file__).resolve().parent.parent

_defaults = service_defaults(service="catalog", base_dir=BASE_DIR)
globals().update(_defaults)

INSTALLED_APPS = [
    *_defaults["INSTALLED_APPS"],
    "catalog.apps.CatalogConfig",
]
ROOT_URLCONF = "catalog_svc.urls"
# Run by `manage.py consume_events`: a rejected order's units go back to the shelf, a
# cancelled order's out of the sold counts (an approved order needs nothing more).
EVENT_HANDLERS = {
    "order.cancelled": "catalog.handlers.order_cancelled",
    "order.rejected": "catalog.handlers.order_rejected",
}
# Whom the catalog believes (common.signing): saga commands come from orders alone, and
# so do order events; anything else, or unsigned, is dead-lettered.
COMMAND_SENDERS = {"catalog.*": ["orders"]}
EVENT_SOURCES = {"order.*": ["orders"]}
WSGI_APPLICATION = "catalog_svc.wsgi.application"
# What `manage.py grpc_serve` serves (catalog.v1, contracts/proto/catalog/v1/).
GRPC_SERVICERS = ["catalog.grpc_api.register"]

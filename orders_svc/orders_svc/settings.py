"""Settings of the orders service: the shared defaults plus its own apps.

Every value comes from the environment; see .env.example at the repository root.
"""

from pathlib import Path

from common.settings import service_defaults

BASE_DIR = Path(__file__).resolve().parent.parent

_defaults = service_defaults(service="orders", base_dir=BASE_DIR)
globals().update(_defaults)

INSTALLED_APPS = [
    *_defaults["INSTALLED_APPS"],
    "orders.apps.OrdersConfig",
]
ROOT_URLCONF = "orders_svc.urls"
WSGI_APPLICATION = "orders_svc.wsgi.application"

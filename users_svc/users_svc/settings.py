"""Settings of the users service: the shared defaults plus its own apps.

Every value comes from the environment; see .env.example at the repository root.
"""

from pathlib import Path

import environ

from common.settings import service_defaults

BASE_DIR = Path(__file__).resolve().parent.parent

_defaults = service_defaults(service="users", base_dir=BASE_DIR)
globals().update(_defaults)

INSTALLED_APPS = [
    *_defaults["INSTALLED_APPS"],
    "accounts.apps.AccountsConfig",
]
ROOT_URLCONF = "users_svc.urls"
# Run by `manage.py consume_events`: a rejected order's credit comes back, a rejected or
# cancelled order leaves the customer's order count (an approved order needs nothing more).
EVENT_HANDLERS = {
    "order.cancelled": "accounts.handlers.order_cancelled",
    "order.rejected": "accounts.handlers.order_rejected",
}
# Whom users believes (common.signing): credit commands come from orders, and a reserve
# also from catalog passing the saga's routing slip on (with orders' grant, checked by the
# task); order events from orders alone; anything else, or unsigned, is dead-lettered.
COMMAND_SENDERS = {"users.*": ["orders"], "users.credit_reserve": ["catalog"]}
EVENT_SOURCES = {"order.*": ["orders"]}
WSGI_APPLICATION = "users_svc.wsgi.application"
# What `manage.py grpc_serve` serves (users.v1, contracts/proto/users/v1/).
GRPC_SERVICERS = ["accounts.grpc_api.register"]

# Email is the login; the model exists from the first migration so it never has to be swapped.
AUTH_USER_MODEL = "accounts.User"

# Credit every new customer starts with (a decimal string, in CURRENCY).
CUSTOMER_DEFAULT_CREDIT_LIMIT = environ.Env().str(
    "CUSTOMER_DEFAULT_CREDIT_LIMIT", default="1000.00"
)

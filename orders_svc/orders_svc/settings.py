"""Settings of the orders service: the shared defaults plus its own apps.

Every value comes from the environment; see .env.example at the repository root.
"""

from pathlib import Path

import environ

from common.settings import service_defaults

BASE_DIR = Path(__file__).resolve().parent.parent

_defaults = service_defaults(service="orders", base_dir=BASE_DIR)
globals().update(_defaults)

INSTALLED_APPS = [
    *_defaults["INSTALLED_APPS"],
    "orders.apps.OrdersConfig",
]
ROOT_URLCONF = "orders_svc.urls"
# The event store is the outbox: `manage.py outbox_relay` publishes order events from it.
OUTBOX_MODEL = "orders.OrderEvent"
# Whom orders believes (common.signing): saga replies come from its participants, and the
# saga checks that each reply comes from the participant of its step (orders.saga.STEPS).
COMMAND_SENDERS = {"orders.saga_reply": ["catalog", "users"]}
# What `manage.py grpc_serve` serves (orders.v1, contracts/proto/orders/v1/).
GRPC_SERVICERS = ["orders.grpc_api.register"]

_env = environ.Env()
# A saga step with no reply after this long is asked again (commands are idempotent)...
SAGA_STEP_TIMEOUT_SECONDS = _env.float("SAGA_STEP_TIMEOUT_SECONDS", default=10.0)
# ...this many times; then the order is rejected with "timeout" and its holds released.
SAGA_MAX_ATTEMPTS = _env.int("SAGA_MAX_ATTEMPTS", default=3)
# /metrics: orders_decision_seconds covers the orders decided in this last stretch.
ORDERS_METRICS_WINDOW_SECONDS = _env.int("ORDERS_METRICS_WINDOW_SECONDS", default=300)
WSGI_APPLICATION = "orders_svc.wsgi.application"

"""Settings of the gateway: the shared defaults plus token issuing and the upstreams.

Every value comes from the environment; see .env.example at the repository root.
"""

from datetime import timedelta
from pathlib import Path

import environ

from common.settings import service_defaults

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

_defaults = service_defaults(service="gateway", base_dir=BASE_DIR)
globals().update(_defaults)

INSTALLED_APPS = [
    *_defaults["INSTALLED_APPS"],
    "rest_framework_simplejwt.token_blacklist",
    "identity.apps.IdentityConfig",
]
ROOT_URLCONF = "gateway_svc.urls"
WSGI_APPLICATION = "gateway_svc.wsgi.application"

# Where each upstream answers (static discovery; the gateway issue adds etcd and DNS).
SERVICE_URLS = {
    "catalog": env.str("CATALOG_URL", default="http://127.0.0.1:8001"),
    "users": env.str("USERS_URL", default="http://127.0.0.1:8002"),
    "orders": env.str("ORDERS_URL", default="http://127.0.0.1:8003"),
}

# Tokens: SimpleJWT issues them (signed by identity.tokens.KeyedTokenBackend with
# the key files in JWT); every service verifies them with common.auth.
_jwt = _defaults["JWT"]
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=_jwt["ACCESS_TOKEN_MINUTES"]),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=_jwt["REFRESH_TOKEN_DAYS"]),
    "ALGORITHM": "RS256",
    "AUDIENCE": _jwt["AUDIENCE"],
    "ISSUER": _jwt["ISSUER"],
    "USER_ID_CLAIM": "sub",
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
}

REST_FRAMEWORK = {
    **_defaults["REST_FRAMEWORK"],
    # Client addresses: with NUM_PROXIES=0 X-Forwarded-For is ignored (a client
    # could forge it); behind one ingress set 1.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "DEFAULT_THROTTLE_RATES": {
        "login_ip": env.str("LOGIN_RATE_PER_IP", default="30/min"),
        "login_email": env.str("LOGIN_RATE_PER_EMAIL", default="10/min"),
    },
}

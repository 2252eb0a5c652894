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
    # Not SimpleJWT's token_blacklist: it keeps every refresh token's text in the
    # database; identity.models keeps ids (identity's migration 0002 moved its rows).
    "identity.apps.IdentityConfig",
    "proxy.apps.ProxyConfig",
    "statuspage.apps.StatusPageConfig",
]
ROOT_URLCONF = "gateway_svc.urls"
WSGI_APPLICATION = "gateway_svc.wsgi.application"

# The proxy (proxy/): what goes where and on which terms. Upstream addresses come
# from service discovery (DISCOVERY in common settings: static, etcd or dns).
_cache_url = env.str("CACHE_URL", default="")
_registration_rate = env.str(
    "REGISTRATION_RATE_PER_IP", default="" if _defaults["ENVIRONMENT"] == "local" else "20/hour"
)
GATEWAY = {
    "ROUTE_DEFAULTS": {
        "connect_timeout": env.float("GATEWAY_CONNECT_TIMEOUT", default=1.0),
        "read_timeout": env.float("GATEWAY_READ_TIMEOUT", default=10.0),
        "retries": env.int("GATEWAY_RETRIES", default=2),
        "max_body_bytes": env.int("GATEWAY_MAX_BODY_BYTES", default=1_048_576),
        "anonymous_rate": env.str("GATEWAY_RATE_LIMIT_ANONYMOUS", default="300/min"),
        "authenticated_rate": env.str("GATEWAY_RATE_LIMIT_AUTHENTICATED", default="1200/min"),
    },
    # Per service: which requests need no token, and any default to override;
    # GATEWAY_ROUTE_OVERRIDES (JSON) overrides more, e.g. {"orders": {"read_timeout": 5}}.
    "ROUTES": {
        "catalog": {"public": [(["GET", "HEAD", "OPTIONS"], "/api/catalog/")]},
        "users": {
            "public": [(["POST", "OPTIONS"], "/api/users/register/")],
            # Sign-ups per client address, on top of the route's rate: each one costs
            # users_svc half a second of PBKDF2 and makes an account. Counted here, at
            # the edge, where the client's address is known (users_svc sees the
            # gateway's) and the counters are shared already. Off by default locally:
            # test stacks and `make load` sign up many customers from one address.
            "limits": [(["POST"], "/api/users/register/", _registration_rate)]
            if _registration_rate
            else [],
        },
        "orders": {},
    },
    "BULKHEAD_LIMIT": env.int("GATEWAY_BULKHEAD_LIMIT", default=100),
    "BREAKER_FAIL_MAX": env.int("GATEWAY_BREAKER_FAIL_MAX", default=5),
    "BREAKER_RESET_TIMEOUT": env.float("GATEWAY_BREAKER_RESET_TIMEOUT", default=10.0),
    # Pooled upstream connections are closed after this many requests or seconds,
    # so that per-connection balancing (a Kubernetes Service) spreads them afresh.
    "UPSTREAM_MAX_REQUESTS": env.int("GATEWAY_UPSTREAM_MAX_REQUESTS", default=1000),
    "UPSTREAM_MAX_AGE_SECONDS": env.float("GATEWAY_UPSTREAM_MAX_AGE_SECONDS", default=60.0),
    # Shared rate-limit counters and breaker states across workers and replicas.
    "REDIS_URL": env.str(
        "GATEWAY_REDIS_URL", default=_cache_url if _cache_url.startswith("redis") else ""
    ),
    # Key prefix in Redis, so several gateways (or test runs) can share one server.
    "REDIS_PREFIX": env.str("GATEWAY_REDIS_PREFIX", default="gateway"),
    "ACCESS_LOG": env.bool("ACCESS_LOG", default=True),
    "SCHEMA_TTL_SECONDS": env.float("GATEWAY_SCHEMA_TTL_SECONDS", default=30.0),
    "DISCOVERY_BACKEND": _defaults["DISCOVERY"]["BACKEND"],
    # A second port for the operators' surface (INTERNAL_SEGMENTS: admin, metrics,
    # probes, /internal/). Set (compose, k8s), those paths are served on it only and
    # answer 404 on every other port, the published one; unset (`make run`), one port
    # serves everything, as every other service does.
    "INTERNAL_PORT": env.int("GATEWAY_INTERNAL_PORT", default=None),
}
for _service, _overrides in env.json("GATEWAY_ROUTE_OVERRIDES", default={}).items():
    GATEWAY["ROUTES"].setdefault(_service, {}).update(_overrides)

# The gateway's gRPC calls (rpc/): users for logins and customer summaries, catalog
# for the composition's products, orders for the status page's sagas. Breakers are
# GATEWAY's (BREAKER_FAIL_MAX...).
GATEWAY_GRPC = {
    # host:port of each service's `manage.py grpc_serve` (a DNS name with several
    # addresses, a Kubernetes Service, is one target: the channel spreads calls).
    "TARGETS": {
        "users": env.str("USERS_GRPC_URL", default="127.0.0.1:50052"),
        "catalog": env.str("CATALOG_GRPC_URL", default="127.0.0.1:50051"),
        "orders": env.str("ORDERS_GRPC_URL", default="127.0.0.1:50053"),
    },
    # Every call's deadline; a login's is longer: users hashes the password on purpose slowly.
    "DEADLINE_SECONDS": env.float("GATEWAY_GRPC_DEADLINE_SECONDS", default=2.0),
    "LOGIN_DEADLINE_SECONDS": env.float("GATEWAY_GRPC_LOGIN_DEADLINE_SECONDS", default=5.0),
    # More tries of an idempotent call after UNAVAILABLE (rpc.client).
    "RETRIES": env.int("GATEWAY_GRPC_RETRIES", default=2),
}

# The order status push channel, GET /api/orders/{id}/events/ (proxy/order_stream.py).
GATEWAY_PUSH = {
    # A comment line this often keeps proxies and load balancers from closing the stream.
    "HEARTBEAT_SECONDS": env.float("GATEWAY_PUSH_HEARTBEAT_SECONDS", default=15.0),
    # How often a stream reads its order while the broker subscription is down...
    "POLL_SECONDS": env.float("GATEWAY_PUSH_POLL_SECONDS", default=2.0),
    # ...and while it is up, in case an event was lost on the way.
    "RESYNC_SECONDS": env.float("GATEWAY_PUSH_RESYNC_SECONDS", default=30.0),
    # How long a first stream waits for its worker's subscription before reading anyway.
    "READY_WAIT_SECONDS": env.float("GATEWAY_PUSH_READY_WAIT_SECONDS", default=3.0),
    "RETRY_MILLISECONDS": env.int("GATEWAY_PUSH_RETRY_MILLISECONDS", default=2000),
    # A stream ends after this long at the latest; its client reconnects and resumes.
    "MAX_SECONDS": env.float("GATEWAY_PUSH_MAX_SECONDS", default=300.0),
}
# The order events the push channel hears: believed from orders only (common.signing).
EVENT_SOURCES = {"order.*": ["orders"]}

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
    # Rotation, reuse detection and revocation: identity.services (identity.models).
    "ROTATE_REFRESH_TOKENS": True,
}

# Logins: failed password checks are counted (identity/login_attempts.py, in the
# default cache: Redis with a redis:// CACHE_URL). Each allowance is "failures/period":
# reaching it locks out for the period, doubling per further lockout up to the maximum.
LOGIN_THROTTLE = {
    # One client address, whatever the accounts.
    "CLIENT": env.str("LOGIN_RATE_PER_IP", default="30/min"),
    # One account from one client address; a successful login clears it.
    "ACCOUNT_CLIENT": env.str("LOGIN_RATE_PER_EMAIL", default="10/min"),
    # One account from every address: past it, addresses that never logged in to
    # the account get one failure per lockout; nobody is refused for others' failures.
    "ACCOUNT": env.str("LOGIN_RATE_PER_ACCOUNT", default="20/10min"),
    "LOCKOUT_MAX_SECONDS": env.int("LOGIN_LOCKOUT_MAX_SECONDS", default=900),
    # How long past lockouts count towards doubling the next one.
    "FORGET_SECONDS": env.int("LOGIN_FAILURES_FORGET_SECONDS", default=86400),
    "KNOWN_CLIENT_DAYS": env.int("LOGIN_KNOWN_CLIENT_DAYS", default=30),
}

REST_FRAMEWORK = {
    **_defaults["REST_FRAMEWORK"],
    # Client addresses: with NUM_PROXIES=0 X-Forwarded-For is ignored (a client
    # could forge it); behind one ingress set 1.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    # Every request, per client address (DRF throttles, default cache).
    "DEFAULT_THROTTLE_RATES": {
        "token_refresh": env.str("TOKEN_REFRESH_RATE_PER_IP", default="120/min"),
        "logout": env.str("LOGOUT_RATE_PER_IP", default="60/min"),
    },
}

# The storefront (storefront/): the shop's HTML pages at `/`, livelier with htmx
# (served from django-htmx's package: no CDN); request.htmx tells its partial requests.
INSTALLED_APPS += ["django_htmx", "storefront.apps.StorefrontConfig"]
MIDDLEWARE = [*_defaults["MIDDLEWARE"], "django_htmx.middleware.HtmxMiddleware"]

# GraphQL reads at /graphql/ (graphql_api/): strawberry over the services' APIs.
INSTALLED_APPS += ["graphql_api.apps.GraphqlApiConfig"]

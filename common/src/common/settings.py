"""Settings every service shares, read from the environment in one place.

A service's settings module starts with::

    globals().update(service_defaults(service="catalog", base_dir=BASE_DIR))

and then adds its own apps. With no environment at all the defaults give the
embedded local setup (a SQLite file per service, kombu's ``filesystem://``
broker under ``var/``); ``DATABASE_URL`` and ``BROKER_URL`` switch the same code
to PostgreSQL and RabbitMQ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from common.api_versions import OPENAPI_VERSIONING, VERSIONING_DESCRIPTION
from common.broker_access import celery_routing_settings
from common.filesystem_broker import transport_for
from common.quorum import celery_queue_settings

# Local-only fallback; production settings refuse to start without SECRET_KEY.
_LOCAL_SECRET_KEY = "local-insecure-key-do-not-use-in-production"

_ENGINE_WITH_METRICS = {
    "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
    "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
}


def repo_root(base_dir: Path) -> Path:
    """The repository root: a service's project folder sits right under it."""
    return base_dir.parent


def database_config(*, env: environ.Env, service: str, var_dir: Path) -> dict[str, Any]:
    """The default database: ``<SERVICE>_DATABASE_URL``, else ``DATABASE_URL``, else SQLite.

    The per-service variable lets one shared ``.env`` file hold every
    service's database; a container or pod sets plain ``DATABASE_URL``.
    """
    url = env.str(f"{service.upper()}_DATABASE_URL", default="") or env.str(
        "DATABASE_URL", default=""
    )
    if not url:
        url = f"sqlite:///{var_dir / f'{service}.sqlite3'}"
    config = environ.Env.db_url_config(url)
    config["ENGINE"] = _ENGINE_WITH_METRICS.get(config["ENGINE"], config["ENGINE"])
    if config["ENGINE"].endswith("sqlite3"):
        # Web threads and workers write at once: WAL lets readers go on, and
        # IMMEDIATE takes the write lock up front so transactions queue
        # instead of failing with "database is locked" halfway through.
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    else:
        config["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
        config["CONN_HEALTH_CHECKS"] = True
    return config


def broker_config(
    *, env: environ.Env, var_dir: Path, service: str = ""
) -> tuple[str, str | None, dict[str, Any]]:
    """The broker URL, the kombu transport class when it is not the URL's own (the
    embedded one), and the transport options (the filesystem folders when embedded)."""
    url = env.str("BROKER_URL", default="filesystem://")
    options: dict[str, Any] = {}
    transport = transport_for(url)
    if url.startswith("filesystem://"):
        broker_dir = Path(env.str("BROKER_FOLDER", default=str(var_dir / "broker")))
        queues = broker_dir / "queues"
        control = broker_dir / "control"
        processed = broker_dir / "processed"
        for folder in (queues, control, processed):
            folder.mkdir(parents=True, exist_ok=True)
        # One shared control folder holds the exchange bindings, so topic and
        # fanout routing work across processes (kombu >= 5.7).
        options = {
            "data_folder_in": str(queues),
            "data_folder_out": str(queues),
            "control_folder": str(control),
            "processed_folder": str(processed),
            "store_processed": False,
            "polling_interval": env.float("BROKER_POLLING_INTERVAL", default=0.01),
            # A file in a queue that is not a readable message goes to the service's
            # dead-letter queue (named as common.events.broker names it), with the reason.
            "unreadable_queue": f"{env.str('QUEUE_PREFIX', default='')}{service}.events.dlq"
            if service
            else "unreadable.dlq",
        }
    return url, transport, options


def jwt_config(*, env: environ.Env, var_dir: Path) -> dict[str, Any]:
    """Where token keys live and what tokens must say (see common.auth).

    Locally the gateway writes its keys under ``var/jwt/`` and every service
    reads the public ones from there; in a cluster services use the JWKS URL.
    """
    keys = var_dir / "jwt"
    return {
        "ISSUER": env.str("JWT_ISSUER", default="eshop-gateway"),
        "AUDIENCE": env.str("JWT_AUDIENCE", default="eshop"),
        "PUBLIC_KEY_FILES": env.list("JWT_PUBLIC_KEY", default=[str(keys / "public.pem")]),
        "RETIRED_KEYS_DIR": env.str("JWT_RETIRED_KEYS", default=str(keys / "retired")),
        "JWKS_URL": env.str("JWT_JWKS_URL", default=""),
        "PRIVATE_KEY_FILE": env.str("JWT_PRIVATE_KEY", default=str(keys / "private.pem")),
        "LEEWAY_SECONDS": env.int("JWT_LEEWAY_SECONDS", default=5),
        "KEYS_RELOAD_SECONDS": env.float("JWT_KEYS_RELOAD_SECONDS", default=10.0),
        "ACCESS_TOKEN_MINUTES": env.int("JWT_ACCESS_TOKEN_MINUTES", default=15),
        "REFRESH_TOKEN_DAYS": env.int("JWT_REFRESH_TOKEN_DAYS", default=7),
        "SERVICE_TOKEN_MINUTES": env.int("JWT_SERVICE_TOKEN_MINUTES", default=5),
    }


def signing_config(*, env: environ.Env, var_dir: Path, service: str) -> dict[str, Any]:
    """Signed messages (common.signing): this service's key, the others' public keys, and
    whom it believes.

    ``MESSAGE_SIGNING_KEY`` is the file of this service's Ed25519 private key and
    ``MESSAGE_SIGNING_PUBLIC_KEYS`` the folder of the public keys of the services it
    hears from, one ``<service>.pem`` each; locally both are under ``var/signing/``,
    made by ``manage.py generate_signing_keys`` (``make run`` does it), in compose and
    k8s they are Secrets. ``COMMAND_SENDERS`` and ``EVENT_SOURCES`` are code, not
    environment: each receiving service's settings say which services may send it
    which tasks (``{"catalog.*": ["orders"]}``) and which event types
    (``{"order.*": ["orders"]}``); the defaults believe nobody.
    """
    keys = var_dir / "signing"
    return {
        "MESSAGE_SIGNING": {
            "KEY": env.str("MESSAGE_SIGNING_KEY", default=str(keys / f"{service}.pem")),
            "PUBLIC_KEYS": env.str("MESSAGE_SIGNING_PUBLIC_KEYS", default=str(keys / "public")),
        },
        "COMMAND_SENDERS": {},
        "EVENT_SOURCES": {},
    }


def events_config(*, env: environ.Env, database_engine: str) -> dict[str, Any]:
    """Settings of the event backbone (common.events): relay, consumers, retries.

    ``EVENT_HANDLERS`` is code, not environment: a service's settings set it
    (``{"order.rejected": "catalog.handlers.order_rejected"}``, topic
    wildcards allowed). The relay's fallback poll is slow on PostgreSQL,
    where LISTEN/NOTIFY wakes it on every commit, and fast on SQLite, where
    polling is all there is.
    """
    postgres = "postgresql" in database_engine
    config: dict[str, Any] = {
        "EVENT_EXCHANGE": env.str("EVENT_EXCHANGE", default="events"),
        "EVENT_HANDLERS": {},
        "EVENT_MAX_ATTEMPTS": env.int("EVENT_MAX_ATTEMPTS", default=5),
        "EVENT_RETRY_BACKOFF_SECONDS": env.float("EVENT_RETRY_BACKOFF_SECONDS", default=0.5),
        "EVENT_RETRY_BACKOFF_MAX_SECONDS": env.float(
            "EVENT_RETRY_BACKOFF_MAX_SECONDS", default=10.0
        ),
        "EVENT_RECONNECT_MAX_SECONDS": env.float("EVENT_RECONNECT_MAX_SECONDS", default=10.0),
        "OUTBOX_POLL_SECONDS": env.float("OUTBOX_POLL_SECONDS", default=1.0 if postgres else 0.1),
        "OUTBOX_BATCH_SIZE": env.int("OUTBOX_BATCH_SIZE", default=100),
        # The process that records events publishes them once its transaction commits;
        # the relay sweeps what it could not, rows older than OUTBOX_SWEEP_AFTER_SECONDS
        # (common.events.publish_on_commit). Off: the relay publishes everything.
        "OUTBOX_PUBLISH_ON_COMMIT": env.bool("OUTBOX_PUBLISH_ON_COMMIT", default=True),
        "OUTBOX_SWEEP_AFTER_SECONDS": env.float("OUTBOX_SWEEP_AFTER_SECONDS", default=5.0),
        # The table the relay publishes from: the shared outbox, or a service's
        # own event store (a model extending common.events.models.OutboxRecord).
        "OUTBOX_MODEL": "common.OutboxMessage",
        # Chaos testing only: publish every event and send every command twice.
        "CHAOS_DUPLICATE_DELIVERY": env.bool("CHAOS_DUPLICATE_DELIVERY", default=False),
    }
    for name in ("EVENT_MAX_ATTEMPTS", "OUTBOX_BATCH_SIZE"):
        if config[name] < 1:
            raise ImproperlyConfigured(f"{name} must be at least 1 (got {config[name]}).")
    for name in ("OUTBOX_POLL_SECONDS", "EVENT_RECONNECT_MAX_SECONDS"):
        if config[name] <= 0:
            raise ImproperlyConfigured(f"{name} must be positive (got {config[name]}).")
    if config["OUTBOX_SWEEP_AFTER_SECONDS"] < 0:
        raise ImproperlyConfigured(
            f"OUTBOX_SWEEP_AFTER_SECONDS must not be negative "
            f"(got {config['OUTBOX_SWEEP_AFTER_SECONDS']})."
        )
    return config


# Paths that plain-http callers inside the cluster use, never redirected to https:
# probes (/health/, /ready/) and Prometheus (/metrics) reach pods by IP, the
# gateway calls users' /internal/... and fetches every /api/schema/, and the
# services fetch the gateway's JWKS. (Regexes on the path without its leading
# slash, as SECURE_REDIRECT_EXEMPT wants them.) Requests the gateway proxies
# carry the client's own scheme in X-Forwarded-Proto and are redirected only
# when the client used plain http.
PLAIN_HTTP_PATHS = [
    r"^health/$",
    r"^ready/$",
    r"^metrics$",
    r"^internal/",
    r"^api/schema/$",
    r"^\.well-known/jwks\.json$",
]


def https_config(*, env: environ.Env, local: bool) -> dict[str, Any]:
    """HTTPS settings: on outside ``ENVIRONMENT=local`` (so ``check --deploy`` is clean).

    TLS ends in front of the gateway (an ingress), which says so in
    ``X-Forwarded-Proto``. A deployment without TLS (a compose stack on
    localhost) sets ``SECURE_SSL_REDIRECT=false``; HSTS's subdomains and
    preload parts are for domains whose every host is on https.
    """
    secure = not local
    return {
        # Behind the gateway or an ingress the original scheme arrives here.
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
        "SECURE_SSL_REDIRECT": env.bool("SECURE_SSL_REDIRECT", default=secure),
        "SECURE_REDIRECT_EXEMPT": env.list("SECURE_REDIRECT_EXEMPT", default=PLAIN_HTTP_PATHS),
        "SECURE_HSTS_SECONDS": env.int("SECURE_HSTS_SECONDS", default=31_536_000 if secure else 0),
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": env.bool(
            "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=secure
        ),
        "SECURE_HSTS_PRELOAD": env.bool("SECURE_HSTS_PRELOAD", default=secure),
        "SESSION_COOKIE_SECURE": env.bool("SESSION_COOKIE_SECURE", default=secure),
        "CSRF_COOKIE_SECURE": env.bool("CSRF_COOKIE_SECURE", default=secure),
    }


# Services the gateway finds through discovery, with their local defaults.
DISCOVERED_SERVICES = {"catalog": 8001, "users": 8002, "orders": 8003}
DISCOVERY_BACKENDS = ("static", "etcd", "dns")


def _check_base_url(url: str, *, variable: str) -> str:
    """A base URL without a trailing slash, or a clear error naming the variable."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(f"{variable}: {url!r} is not an http(s)://host[:port] URL.")
    return url.rstrip("/")


def discovery_config(*, env: environ.Env) -> dict[str, Any]:
    """How the gateway finds service instances (see common.discovery).

    One backend per process: ``static`` reads addresses from the environment
    (several comma-separated URLs mean several instances), ``etcd`` watches the
    instances that ``manage.py register_service`` keeps registered, ``dns``
    resolves Kubernetes Service names. A mistyped value stops boot here rather
    than leaving the gateway with no upstreams.
    """
    backend = env.str("DISCOVERY", default="static").strip().lower()
    if backend not in DISCOVERY_BACKENDS:
        raise ImproperlyConfigured(
            f"DISCOVERY={backend!r} is not a discovery backend; use one of "
            f"{', '.join(DISCOVERY_BACKENDS)}."
        )
    static: dict[str, list[str]] = {}
    dns: dict[str, str] = {}
    for service, port in DISCOVERED_SERVICES.items():
        variable = f"{service.upper()}_URL"
        urls = env.list(variable, default=[f"http://127.0.0.1:{port}"])
        static[service] = [
            _check_base_url(url.strip(), variable=variable) for url in urls if url.strip()
        ]
        target = env.str(f"{service.upper()}_DNS", default=f"{service}:{port}").strip()
        host, _, dns_port = target.rpartition(":")
        if not host or not dns_port.isdigit():
            raise ImproperlyConfigured(f"{service.upper()}_DNS: {target!r} is not host:port.")
        dns[service] = target
    etcd_url = _check_base_url(
        env.str("ETCD_URL", default="http://127.0.0.1:2379"), variable="ETCD_URL"
    )
    lease_ttl = env.int("DISCOVERY_LEASE_TTL", default=10)
    if lease_ttl < 2:
        # The sidecar refreshes every ttl/3 s; under 2 s one slow round would drop the instance.
        raise ImproperlyConfigured(f"DISCOVERY_LEASE_TTL must be at least 2 (got {lease_ttl}).")
    dns_refresh = env.float("DNS_REFRESH_SECONDS", default=5.0)
    if dns_refresh <= 0:
        raise ImproperlyConfigured(f"DNS_REFRESH_SECONDS must be positive (got {dns_refresh}).")
    prefix = env.str("ETCD_PREFIX", default="/services/")
    return {
        "BACKEND": backend,
        "STATIC": static,
        "ETCD_URL": etcd_url,
        "ETCD_PREFIX": prefix if prefix.endswith("/") else f"{prefix}/",
        "LEASE_TTL": lease_ttl,
        "DNS": dns,
        "DNS_REFRESH_SECONDS": dns_refresh,
    }


# Each service's gRPC port (manage.py grpc_serve), unless GRPC_BIND says otherwise.
GRPC_DEFAULT_PORTS = {"catalog": 50051, "users": 50052, "orders": 50053}


def grpc_config(*, env: environ.Env, service: str) -> dict[str, Any]:
    """The service's gRPC server (common.grpc_server): address, threads, health cadence."""
    port = GRPC_DEFAULT_PORTS.get(service, 0)
    return {
        "GRPC_BIND": env.str("GRPC_BIND", default=f"127.0.0.1:{port}"),
        # Calls are short reads (a login, a lookup): a few threads keep a core busy.
        "GRPC_WORKERS": env.int("GRPC_WORKERS", default=8),
        # How often the health service re-runs /ready/'s checks (SERVING or NOT_SERVING).
        "GRPC_HEALTH_INTERVAL_SECONDS": env.float("GRPC_HEALTH_INTERVAL_SECONDS", default=5.0),
    }


def observability_config(*, env: environ.Env, service: str) -> dict[str, Any]:
    """Logging: JSON lines (``LOG_FORMAT=json``, or ``plain``) stamped with the service,
    request, trace and span ids (common.observability), at ``LOG_LEVEL``.

    Tracing is not a Django setting: ``common.tracing`` reads the standard
    ``OTEL_*`` variables itself, in every process (web, worker, relay,
    consumers, watchdog), the way every OpenTelemetry SDK does.
    """
    return {
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {
                "context": {"()": "common.observability.LogContextFilter", "service": service}
            },
            "formatters": {
                "json": {"()": "common.observability.JsonFormatter"},
                "plain": {
                    "format": "%(asctime)s %(levelname)s %(name)s "
                    "[%(request_id)s %(trace_id)s %(span_id)s] %(message)s"
                },
            },
            "handlers": {
                "console": {
                    "class": "logging.StreamHandler",
                    "filters": ["context"],
                    "formatter": env.str("LOG_FORMAT", default="json"),
                }
            },
            "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
            "loggers": {
                "django.db.backends": {"level": "INFO"},
                "health_check": {"level": "ERROR"},
                # On quorum queues Celery's workers set up native delayed delivery and
                # warn at every start that our direct task exchanges cannot use it; we
                # send no ETA/countdown tasks (Celery still warns if one is ever sent).
                "kombu.transport.native_delayed_delivery": {"level": "ERROR"},
                # Celery's "Task ... received" and "... succeeded" lines, two per task:
                # 5-6 % of a saga worker's CPU in a profile. The saga's own log lines and
                # spans tell the same story; CELERY_TASK_LOG_LEVEL=INFO brings them back.
                **{
                    name: {"level": env.str("CELERY_TASK_LOG_LEVEL", default="WARNING")}
                    for name in ("celery.app.trace", "celery.worker.strategy")
                },
            },
        },
    }


def service_defaults(*, service: str, base_dir: Path) -> dict[str, Any]:
    """Every Django setting the services share, for the service named ``service``."""
    env = environ.Env()
    root = repo_root(base_dir)
    var_dir = Path(env.str("VAR_DIR", default=str(root / "var")))
    static_root = var_dir / "static" / service
    static_root.mkdir(parents=True, exist_ok=True)  # whitenoise warns on a missing folder

    environment = env.str("ENVIRONMENT", default="local")
    local = environment == "local"
    secret_key = env.str("SECRET_KEY", default=_LOCAL_SECRET_KEY if local else "")
    if not secret_key:
        raise ImproperlyConfigured(
            f"SECRET_KEY must be set when ENVIRONMENT={environment!r} (only 'local' has a default)."
        )
    allowed_hosts = env.list("ALLOWED_HOSTS", default=["*"] if local else [])
    if not allowed_hosts:
        raise ImproperlyConfigured(f"ALLOWED_HOSTS must be set when ENVIRONMENT={environment!r}.")
    broker_url, broker_transport, broker_options = broker_config(
        env=env, var_dir=var_dir, service=service
    )
    database = database_config(env=env, service=service, var_dir=var_dir)

    return {
        "SERVICE_NAME": service,
        "ENVIRONMENT": environment,
        "BASE_DIR": base_dir,
        "VAR_DIR": var_dir,
        "SECRET_KEY": secret_key,
        "DEBUG": env.bool("DEBUG", default=False),
        "ALLOWED_HOSTS": allowed_hosts,
        "CSRF_TRUSTED_ORIGINS": env.list("CSRF_TRUSTED_ORIGINS", default=[]),
        **https_config(env=env, local=local),
        "USE_X_FORWARDED_HOST": True,
        "INSTALLED_APPS": [
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "whitenoise.runserver_nostatic",
            "django.contrib.staticfiles",
            "rest_framework",
            "django_filters",
            "drf_spectacular",
            "drf_spectacular_sidecar",
            "django_prometheus",
            "health_check",
            "common",
        ],
        "MIDDLEWARE": [
            "django_prometheus.middleware.PrometheusBeforeMiddleware",
            "common.observability.RequestIdMiddleware",
            "django.middleware.security.SecurityMiddleware",
            "whitenoise.middleware.WhiteNoiseMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
            "django_prometheus.middleware.PrometheusAfterMiddleware",
        ],
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [],
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        "DATABASES": {"default": database},
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "AUTH_PASSWORD_VALIDATORS": [
            {"NAME": f"django.contrib.auth.password_validation.{name}"}
            for name in (
                "UserAttributeSimilarityValidator",
                "MinimumLengthValidator",
                "CommonPasswordValidator",
                "NumericPasswordValidator",
            )
        ],
        "CACHES": {"default": env.cache_url("CACHE_URL", default="locmemcache://")},
        "LANGUAGE_CODE": "en-us",
        "TIME_ZONE": "UTC",
        "USE_I18N": True,
        "USE_TZ": True,
        "STATIC_URL": f"/static/{service}/",
        "STATIC_ROOT": static_root,
        # Serving from the finders means no collectstatic step is needed for
        # tests or `make run`; a container image runs collectstatic instead.
        "WHITENOISE_USE_FINDERS": env.bool("WHITENOISE_USE_FINDERS", default=True),
        "CURRENCY": env.str("CURRENCY", default="EUR"),
        "REST_FRAMEWORK": {
            # Bearer tokens for clients and services; the session only so a
            # signed-in admin can use the browsable API.
            "DEFAULT_AUTHENTICATION_CLASSES": [
                "common.auth.JWTAuthentication",
                "rest_framework.authentication.SessionAuthentication",
            ],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
            "DEFAULT_RENDERER_CLASSES": [
                "rest_framework.renderers.JSONRenderer",
                "rest_framework.renderers.BrowsableAPIRenderer",
            ],
            "DEFAULT_PARSER_CLASSES": [
                "rest_framework.parsers.JSONParser",
                "rest_framework.parsers.FormParser",
                "rest_framework.parsers.MultiPartParser",
            ],
            "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
            "DEFAULT_PAGINATION_CLASS": "common.pagination.PageNumberPagination",
            "PAGE_SIZE": env.int("PAGE_SIZE", default=20),
            "DEFAULT_SCHEMA_CLASS": "common.schema.AutoSchema",
            # Accept: application/json; version=1 (none means 1): see common.versioning.
            "DEFAULT_VERSIONING_CLASS": "common.versioning.MediaTypeVersioning",
            "EXCEPTION_HANDLER": "common.problems.exception_handler",
            "TEST_REQUEST_DEFAULT_FORMAT": "json",
        },
        "SPECTACULAR_SETTINGS": {
            "TITLE": f"{service} service API",
            "DESCRIPTION": f"The {service} service of the e-commerce platform. "
            + VERSIONING_DESCRIPTION,
            # The API version the document describes ("1"), set by common.schema.info_version.
            "VERSION": None,
            "POSTPROCESSING_HOOKS": [
                "drf_spectacular.hooks.postprocess_schema_enums",
                "common.schema.info_version",
            ],
            "EXTENSIONS_INFO": {"x-api-versioning": OPENAPI_VERSIONING},
            "SERVE_INCLUDE_SCHEMA": False,
            "COMPONENT_SPLIT_REQUEST": True,
            # Swagger UI and ReDoc come from the sidecar package: no CDN needed.
            "SWAGGER_UI_DIST": "SIDECAR",
            "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
            "REDOC_DIST": "SIDECAR",
        },
        "JWT": jwt_config(env=env, var_dir=var_dir),
        "DISCOVERY": discovery_config(env=env),
        "CELERY_BROKER_URL": broker_url,
        "CELERY_BROKER_TRANSPORT": broker_transport,
        "CELERY_BROKER_TRANSPORT_OPTIONS": broker_options,
        "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP": True,
        # QUEUE_PREFIX keeps deployments (or test runs) sharing one broker apart.
        "QUEUE_PREFIX": env.str("QUEUE_PREFIX", default=""),
        "CELERY_TASK_DEFAULT_QUEUE": env.str("QUEUE_PREFIX", default="") + service,
        # Quorum task queues on RabbitMQ (per-consumer prefetch); classic elsewhere.
        # A broker holding classic queues of these names refuses the redeclare
        # (PRECONDITION_FAILED): see common.quorum.
        **celery_queue_settings(broker_url),
        # Each task to its queue's own exchange, others' queues never declared, no shared
        # pidbox or delayed-delivery exchanges: one broker user per service (broker_access).
        **celery_routing_settings(
            service=service, prefix=env.str("QUEUE_PREFIX", default=""), broker_url=broker_url
        ),
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 1,
        "CELERY_TASK_SERIALIZER": "json",
        "CELERY_ACCEPT_CONTENT": ["json"],
        "CELERY_RESULT_BACKEND": None,
        "CELERY_TASK_IGNORE_RESULT": True,
        # Celery's Django fixup closes the database connection around every task,
        # whatever CONN_MAX_AGE says: a new PostgreSQL backend per saga step (a
        # sixth of a worker's time in a profile). Its own recycling is pushed out
        # of the way; common.celery applies CONN_MAX_AGE and health checks per task.
        "CELERY_DB_REUSE_MAX": env.int("CELERY_DB_REUSE_MAX", default=1_000_000),
        # Workers log like every other process (JSON lines with service, request, trace
        # and span ids: observability_config) instead of Celery replacing the root logger.
        "CELERY_WORKER_HIJACK_ROOT_LOGGER": False,
        **events_config(env=env, database_engine=database["ENGINE"]),
        **signing_config(env=env, var_dir=var_dir, service=service),
        **observability_config(env=env, service=service),
        **grpc_config(env=env, service=service),
    }

"""gunicorn settings shared by every service: ``gunicorn -c python:common.gunicorn_conf``.

gthread workers keep client connections alive (sync workers close each one,
so a keep-alive pool in front never reuses a connection). With more than one
worker, Prometheus metrics are aggregated across workers through
``PROMETHEUS_MULTIPROC_DIR``, which is emptied at start-up.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import environ
from gunicorn import glogging

_env = environ.Env()

workers = _env.int("WEB_CONCURRENCY", default=1)
threads = _env.int("WEB_THREADS", default=8)
worker_class = "gthread"
timeout = _env.int("WEB_TIMEOUT", default=30)
graceful_timeout = 10
keepalive = 75
# gunicorn's largest request line (its default, 4094, is half of it): past it gunicorn
# answers 414 itself, in HTML and outside every API document. A product list with its
# filters and 100 ids fits well within either; the contract fuzzing's negative cases
# (schemathesis) wrote query strings of 4,173 and 5,990 bytes, which now reach the view
# and get its documented 400.
limit_request_line = 8190
_access_log = _env.bool("ACCESS_LOG", default=True)
accesslog = "-" if _access_log else None


class _AccessLogOff(glogging.Logger):
    """gunicorn's logger, writing no access lines: with a ``logconfig_dict`` (as below)
    gunicorn writes them even without ``accesslog``, so ACCESS_LOG=false did nothing
    (7 % of the orders POST's CPU under the saga bench, which asks for it off)."""

    @property
    def access_log_enabled(self) -> bool:
        return False


if not _access_log:
    logger_class = _AccessLogOff
errorlog = "-"
# Several services run side by side on one machine; a shared control socket would clash.
control_socket_disable = True

# LOG_FORMAT=json (the default): gunicorn's own lines and its access lines are JSON like
# every other line of the service, through the same formatter and context filter.
if _env.str("LOG_FORMAT", default="json") == "json":
    _service = os.environ.get("SERVICE") or Path.cwd().name.removesuffix("_svc")
    access_log_format = "%(m)s %(U)s %(s)s %(M)sms"
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "access": {"()": "common.observability.GunicornAccessFields"},
            "context": {"()": "common.observability.LogContextFilter", "service": _service},
        },
        "formatters": {"json": {"()": "common.observability.JsonFormatter"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
                "filters": ["access", "context"],
            },
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["context"],
            },
        },
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }

_multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def on_starting(server) -> None:
    if _multiproc_dir:
        shutil.rmtree(_multiproc_dir, ignore_errors=True)
        Path(_multiproc_dir).mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    if _multiproc_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

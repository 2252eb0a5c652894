"""Request ids and JSON log lines carrying service, request, trace and span ids.

Traces are OpenTelemetry's (``common.tracing``): every log line written
inside a span names its trace and span, so a trace found in the tracing
backend leads to its log lines and back.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse

from common.tracing import trace_ids_current

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_META = "HTTP_X_REQUEST_ID"
# A client may pass its own id; anything odd is replaced rather than logged.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# Where a request's trace and span ids wait for gunicorn's access line (WSGI environ):
# gunicorn writes it after the response, when the request's span has ended.
TRACE_IDS_ENVIRON = "eshop.trace_ids"


def current_request_id() -> str:
    """The id of the request being handled in this context, or ``-``."""
    return request_id_var.get()


def context_headers() -> dict[str, str]:
    """Headers that carry this request's id to a service it calls over HTTP.

    The trace context goes by itself: the httpx instrumentation adds it.
    """
    if (request_id := current_request_id()) != "-":
        return {REQUEST_ID_HEADER: request_id}
    return {}


class RequestIdMiddleware:
    """Take ``X-Request-ID`` from the client or make one; echo it and log with it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get(_REQUEST_ID_META, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        request.META[TRACE_IDS_ENVIRON] = trace_ids_current()
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class LogContextFilter(logging.Filter):
    """Stamp every record with the service name, the current request id, trace id and span id.

    The ids are the current OpenTelemetry span's (``-`` outside any span).
    """

    def __init__(self, service: str = "-") -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        if not hasattr(
            record, "request_id"
        ):  # a logger call may name it (the gateway's access log)
            record.request_id = current_request_id()
        if not hasattr(record, "trace_id"):  # the gateway's access line names its own
            record.trace_id, span_id = trace_ids_current()
            if not hasattr(record, "span_id"):
                record.span_id = span_id
        elif not hasattr(record, "span_id"):
            record.span_id = "-"
        return True


_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class GunicornAccessFields(logging.Filter):
    """gunicorn's access lines as fields of the JSON line: ``method``, ``path``, ``status``,
    ``duration_ms``, ``client``, ``user_agent``, the ``request_id`` the service answered
    with, and the request's ``trace_id`` and ``span_id`` (``RequestIdMiddleware`` left them
    in the environ). gunicorn hands its access atoms to the logger as the record's
    arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        if not isinstance(atoms, Mapping):
            return True
        query = atoms.get("q") or ""
        record.method = atoms.get("m", "-")
        record.path = f"{atoms.get('U', '')}?{query}" if query else atoms.get("U", "-")
        record.status = int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else atoms.get("s")
        record.duration_ms = round(int(atoms.get("D", 0)) / 1000, 3)
        record.client = atoms.get("h", "-")
        record.user_agent = atoms.get("a", "-")
        answered = atoms.get("{x-request-id}o", "-")
        if answered and answered != "-":
            record.request_id = answered
        trace_ids = atoms.get("{%s}e" % TRACE_IDS_ENVIRON)  # noqa: UP031 (gunicorn's atom names)
        if isinstance(trace_ids, tuple) and len(trace_ids) == 2:
            record.trace_id, record.span_id = trace_ids
        return True


# supervisord (``make run``) names the process in each child's environment.
_PROCESS_NAME_VARIABLE = "SUPERVISOR_PROCESS_NAME"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields given to the logger are kept.

    Under supervisord a line also says which process wrote it (``"process":
    "catalog_worker"``, from ``SUPERVISOR_PROCESS_NAME``): there every process
    writes to the same terminal.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if process := os.environ.get(_PROCESS_NAME_VARIABLE):
            line["process"] = process
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)

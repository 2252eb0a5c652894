"""Request ids, W3C trace context and JSON log lines carrying service, request and trace ids.

Trace context (``traceparent``, https://www.w3.org/TR/trace-context/) is
carried without a tracing SDK: the gateway starts a trace or continues the
client's, every service continues it for the request it serves
(``RequestIdMiddleware``), Celery commands and replies carry it in a message
header (``common.celery``), events in their envelope, and every log line
names the trace. Each hop gets a span id of its own, as the standard asks;
an OpenTelemetry SDK, where one is installed, finds the same header.
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

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_META = "HTTP_X_REQUEST_ID"
# A client may pass its own id; anything odd is replaced rather than logged.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def current_request_id() -> str:
    """The id of the request being handled in this context, or ``-``."""
    return request_id_var.get()


# The W3C trace context (``traceparent``) of the work being done in this
# context, or "". Events recorded here carry it, and an event consumer sets it
# from the event it handles, so a trace follows a change across services even
# before a tracing library fills it from incoming requests.
traceparent_var: contextvars.ContextVar[str] = contextvars.ContextVar("traceparent", default="")
_VALID_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16


def traceparent_valid(value: str | None) -> bool:
    """Well formed, version 00-compatible, and neither id all zeros (W3C trace context)."""
    return bool(
        value
        and _VALID_TRACEPARENT.match(value)
        and not value.startswith("ff")
        and value[3:35] != _INVALID_TRACE_ID
        and value[36:52] != _INVALID_SPAN_ID
    )


def current_traceparent() -> str:
    """The ``traceparent`` known in this context if it is well formed, else ""."""
    value = traceparent_var.get()
    return value if traceparent_valid(value) else ""


def trace_continue(incoming: str | None) -> str:
    """The ``traceparent`` for work done here on behalf of ``incoming``.

    The caller's trace with a new span id (its flags kept), or a new sampled
    trace when the caller sent none or a malformed one.
    """
    if incoming is not None and traceparent_valid(incoming):
        return f"00-{incoming[3:35]}-{os.urandom(8).hex()}-{incoming[53:55]}"
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def trace_id(traceparent: str) -> str:
    """The trace id of a ``traceparent`` (``-`` for none): what log lines are searched by."""
    return traceparent[3:35] if traceparent_valid(traceparent) else "-"


def context_headers() -> dict[str, str]:
    """Headers that carry this request's id and trace to a service it calls over HTTP."""
    headers = {}
    if (request_id := current_request_id()) != "-":
        headers[REQUEST_ID_HEADER] = request_id
    if traceparent := current_traceparent():
        headers["traceparent"] = trace_continue(traceparent)
    return headers


class RequestIdMiddleware:
    """Take ``X-Request-ID`` from the client or make one; echo it and log with it.

    The request's trace context too: the caller's ``traceparent`` continued
    (or a new trace), so events recorded and commands sent while serving the
    request carry it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get(_REQUEST_ID_META, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        trace_token = traceparent_var.set(trace_continue(request.META.get("HTTP_TRACEPARENT")))
        try:
            response = self.get_response(request)
        finally:
            traceparent_var.reset(trace_token)
            request_id_var.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class LogContextFilter(logging.Filter):
    """Stamp every record with the service name, the current request id and trace id."""

    def __init__(self, service: str = "-") -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        if not hasattr(
            record, "request_id"
        ):  # a logger call may name it (the gateway's access log)
            record.request_id = current_request_id()
        if not hasattr(record, "trace_id"):
            record.trace_id = trace_id(traceparent_var.get())
        return True


_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class GunicornAccessFields(logging.Filter):
    """gunicorn's access lines as fields of the JSON line: ``method``, ``path``, ``status``,
    ``duration_ms``, ``client``, ``user_agent`` and the ``request_id`` the service answered
    with. gunicorn hands its access atoms to the logger as the record's arguments."""

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

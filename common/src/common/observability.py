"""Request ids and JSON log lines carrying the service name and request id."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Callable
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


def current_traceparent() -> str:
    """The ``traceparent`` known in this context if it is well formed, else ""."""
    value = traceparent_var.get()
    return value if _VALID_TRACEPARENT.match(value) else ""


class RequestIdMiddleware:
    """Take ``X-Request-ID`` from the client or make one; echo it and log with it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get(_REQUEST_ID_META, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class LogContextFilter(logging.Filter):
    """Stamp every record with the service name and the current request id."""

    def __init__(self, service: str = "-") -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        if not hasattr(
            record, "request_id"
        ):  # a logger call may name it (the gateway's access log)
            record.request_id = current_request_id()
        return True


_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields given to the logger are kept."""

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
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)

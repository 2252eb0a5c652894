"""Settings, ETags, request ids, JSON logs and the operator commands of ``common``."""

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import environ
import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from rest_framework.test import APIRequestFactory

from common.http import client_has_current, etag_for
from common.observability import (
    GunicornAccessFields,
    JsonFormatter,
    LogContextFilter,
    RequestIdMiddleware,
    context_headers,
    request_id_var,
)
from common.settings import broker_config, database_config, service_defaults
from common.tracing import tracer


def test_etag_ignores_key_order_but_not_values():
    assert etag_for({"a": 1, "b": 2}) == etag_for({"b": 2, "a": 1})
    assert etag_for({"a": 1}) != etag_for({"a": 2})


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        ("*", True),
        ('"other"', False),
    ],
)
def test_if_none_match_comparison(header, matches):
    headers = {"HTTP_IF_NONE_MATCH": header} if header else {}
    request = APIRequestFactory().get("/", **headers)
    assert client_has_current(request, '"abc"') is matches


def test_a_client_request_id_with_odd_characters_is_replaced(client):
    response = client.get("/health/", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert response["X-Request-ID"] != "bad id\nwith newline"
    assert len(response["X-Request-ID"]) == 32


def test_log_lines_are_json_with_service_and_request_id():
    record = logging.makeLogRecord(
        {"msg": "hello %s", "args": ("world",), "levelname": "INFO", "name": "t", "order_id": "o-1"}
    )
    token = request_id_var.set("req-9")
    try:
        LogContextFilter(service="catalog").filter(record)
    finally:
        request_id_var.reset(token)

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "hello world"
    assert (line["service"], line["request_id"], line["order_id"]) == ("catalog", "req-9", "o-1")


def test_log_lines_name_the_process_under_supervisord(monkeypatch):
    record = logging.makeLogRecord({"msg": "x", "levelname": "INFO", "name": "t"})

    monkeypatch.delenv("SUPERVISOR_PROCESS_NAME", raising=False)
    assert "process" not in json.loads(JsonFormatter().format(record))

    monkeypatch.setenv("SUPERVISOR_PROCESS_NAME", "catalog_worker")
    assert json.loads(JsonFormatter().format(record))["process"] == "catalog_worker"


def test_gunicorn_access_lines_are_json_fields():
    # gunicorn logs access lines with its atoms (a mapping) as the record's arguments.
    atoms = {
        "m": "GET",
        "U": "/api/catalog/products/",
        "q": "page=2",
        "s": "200",
        "D": "12500",
        "M": "12",
        "h": "10.0.0.7",
        "a": "curl/8",
        "{x-request-id}o": "req-42",
    }
    record = logging.makeLogRecord(
        {"msg": "%(m)s %(U)s %(s)s %(M)sms", "levelname": "INFO", "name": "gunicorn.access"}
    )
    record.args = atoms  # makeLogRecord would unpack a one-mapping tuple the same way
    GunicornAccessFields().filter(record)
    LogContextFilter(service="catalog").filter(record)

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "GET /api/catalog/products/ 200 12ms"
    assert line["path"] == "/api/catalog/products/?page=2"
    assert (line["method"], line["status"], line["duration_ms"]) == ("GET", 200, 12.5)
    assert (line["client"], line["request_id"]) == ("10.0.0.7", "req-42")
    assert line["service"] == "catalog"


def test_gunicorn_access_lines_name_the_trace_and_span_of_the_request(spans):
    # gunicorn writes the line after the response, outside the request's span: the
    # middleware leaves the ids in the WSGI environ, which gunicorn's atoms include.
    from datetime import timedelta
    from types import SimpleNamespace

    from django.http import HttpResponse
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    request = APIRequestFactory().get("/api/catalog/products/")
    with tracer.start_as_current_span("GET products") as span:
        response = RequestIdMiddleware(lambda _: HttpResponse("[]"))(request)
    atoms = Logger(Config()).atoms(
        SimpleNamespace(status="200 OK", headers=list(response.items()), sent=2),
        SimpleNamespace(headers=[]),
        {**request.META, "RAW_URI": "/api/catalog/products/", "SERVER_PROTOCOL": "HTTP/1.1"},
        timedelta(milliseconds=3),
    )
    record = logging.makeLogRecord({"msg": "%(m)s", "levelname": "INFO", "name": "access"})
    record.args = atoms
    GunicornAccessFields().filter(record)
    LogContextFilter(service="catalog").filter(record)  # outside any span, as in gunicorn

    line = json.loads(JsonFormatter().format(record))

    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert line["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert line["request_id"] == response["X-Request-ID"]


def test_gunicorn_logging_config_loads(tmp_path):
    # The config gunicorn hands to dictConfig: loaded in a child, so this process's
    # logging stays as pytest set it.
    script = (
        "import logging, logging.config, gunicorn.glogging as g, common.gunicorn_conf as c\n"
        "config = {**g.CONFIG_DEFAULTS, **c.logconfig_dict}\n"
        "logging.config.dictConfig(config)\n"
        "logging.getLogger('gunicorn.error').info('up')\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "LOG_FORMAT": "json", "SERVICE": "users"},
        cwd=tmp_path,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert (line["logger"], line["message"], line["service"]) == ("gunicorn.error", "up", "users")


@pytest.mark.parametrize(("access_log", "lines"), [("true", 1), ("false", 0)])
def test_gunicorn_writes_access_lines_only_when_asked(tmp_path, access_log, lines):
    (tmp_path / "tiny.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "gunicorn", "-c", "python:common.gunicorn_conf"]
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and config
        [*command, "--bind", f"127.0.0.1:{port}", "tiny:app"],
        cwd=tmp_path,
        env={**os.environ, "ACCESS_LOG": access_log, "LOG_FORMAT": "json", "SERVICE": "tiny"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # until it listens
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("gunicorn did not start")
                time.sleep(0.05)
        assert answer.text == "ok"
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=15)

    access = [json.loads(line) for line in out.splitlines() if "/ping" in line]
    assert len(access) == lines
    if lines:
        assert (access[0]["logger"], access[0]["service"]) == ("gunicorn.access", "tiny")


def env_with(monkeypatch, **values):
    for key in ("DATABASE_URL", "CATALOG_DATABASE_URL", "BROKER_URL", "SECRET_KEY", "ENVIRONMENT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return environ.Env()


def test_database_defaults_to_a_sqlite_file_per_service(monkeypatch, tmp_path):
    config = database_config(env=env_with(monkeypatch), service="catalog", var_dir=tmp_path)
    assert config["ENGINE"] == "django_prometheus.db.backends.sqlite3"
    assert config["NAME"] == str(tmp_path / "catalog.sqlite3")
    assert config["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_the_service_database_url_wins_over_the_shared_one(monkeypatch, tmp_path):
    env = env_with(
        monkeypatch,
        DATABASE_URL="postgres://u@h:5432/shared",
        CATALOG_DATABASE_URL="postgres://u@h:5432/catalog",
    )
    config = database_config(env=env, service="catalog", var_dir=tmp_path)
    assert config["ENGINE"] == "django_prometheus.db.backends.postgresql"
    assert config["NAME"] == "catalog"
    assert config["CONN_HEALTH_CHECKS"] is True


def test_embedded_broker_uses_shared_folders(monkeypatch, tmp_path):
    url, transport, options = broker_config(
        env=env_with(monkeypatch), var_dir=tmp_path, service="catalog"
    )
    assert url == "filesystem://"
    assert transport == "common.filesystem_broker:Transport"
    assert options["unreadable_queue"] == "catalog.events.dlq"
    assert Path(options["control_folder"]).is_dir()
    assert options["data_folder_in"] == options["data_folder_out"]
    assert options["polling_interval"] == pytest.approx(0.01)


def test_production_refuses_to_start_without_a_secret_key(monkeypatch, tmp_path):
    env_with(monkeypatch, ENVIRONMENT="production", VAR_DIR=str(tmp_path))
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        service_defaults(service="catalog", base_dir=tmp_path / "catalog_svc")


@pytest.mark.django_db
def test_ensure_admin_creates_then_updates_one_staff_user():
    call_command("ensure_admin", email="boss@example.com", password="one", stdout=io.StringIO())
    call_command("ensure_admin", email="boss@example.com", password="two", stdout=io.StringIO())

    users = get_user_model().objects.all()
    assert users.count() == 1
    assert users[0].is_staff
    assert users[0].is_superuser
    assert users[0].check_password("two")


def log_line(**extra: str) -> dict:
    record = logging.makeLogRecord({"msg": "x", "levelname": "INFO", "name": "t", **extra})
    LogContextFilter(service="orders").filter(record)
    return json.loads(JsonFormatter().format(record))


def test_log_lines_carry_the_trace_and_span_ids_of_the_current_span(spans):
    with tracer.start_as_current_span("work") as span:
        line = log_line()

    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert line["span_id"] == f"{span.get_span_context().span_id:016x}"


def test_log_lines_outside_any_span_say_so():
    line = log_line()

    assert (line["trace_id"], line["span_id"]) == ("-", "-")


def test_a_trace_id_the_logger_was_given_is_kept():
    line = log_line(trace_id="0af7651916cd43dd8448eb211c80319c")  # the gateway's access line

    assert (line["trace_id"], line["span_id"]) == ("0af7651916cd43dd8448eb211c80319c", "-")


def test_calls_to_other_services_carry_the_request_id():
    assert context_headers() == {}  # outside a request: nothing to carry

    request_token = request_id_var.set("req-7")
    try:
        headers = context_headers()
    finally:
        request_id_var.reset(request_token)

    # The trace context is the httpx instrumentation's to add.
    assert headers == {"X-Request-ID": "req-7"}

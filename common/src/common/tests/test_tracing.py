"""Tracing set up from the standard OTEL_* variables, and W3C context in and out."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from common.testing.tracing import traceparent_of
from common.tracing import (
    LoneClientSpansSkipped,
    trace_context_extract,
    trace_context_inject,
    traceparent_current,
    tracer,
    tracer_provider_build,
    tracing_configure,
    tracing_export_endpoint,
)

CLIENT_TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def otel_env(monkeypatch):
    for name in (
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def processors(provider) -> list:
    return list(provider._active_span_processor._span_processors)


def test_a_process_is_named_after_its_service_and_role(otel_env):
    assert tracer_provider_build(service="orders").resource.attributes["service.name"] == "orders"
    relay = tracer_provider_build(service="orders", role="relay")
    assert relay.resource.attributes["service.name"] == "orders-relay"


def test_otel_service_name_overrides_the_default_name(otel_env):
    otel_env.setenv("OTEL_SERVICE_NAME", "shop-orders")

    provider = tracer_provider_build(service="orders", role="worker")

    assert provider.resource.attributes["service.name"] == "shop-orders"


def test_without_an_endpoint_nothing_is_exported(otel_env):
    assert tracing_export_endpoint() == ""
    assert processors(tracer_provider_build(service="orders")) == []


def test_without_an_endpoint_a_trace_started_here_has_ids_but_is_not_recorded(otel_env):
    local = tracer_provider_build(service="orders").get_tracer("test")

    with local.start_as_current_span("root") as root:
        assert not root.is_recording()
        assert root.get_span_context().is_valid  # ids for propagation and log lines
        assert not root.get_span_context().trace_flags.sampled
    caller = trace_context_extract({"traceparent": CLIENT_TRACE})  # sampled by an exporter
    with local.start_as_current_span("child", context=caller) as child:
        assert child.is_recording()  # so the trace goes on into processes that export
        assert child.get_span_context().trace_flags.sampled


@pytest.fixture
def otlp_sink() -> Iterator[str]:
    """A loopback OTLP/HTTP endpoint that takes every export: what a test's spans go to."""

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_with_an_endpoint_the_sdk_sampler_records_every_trace(otel_env, otlp_sink):
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_sink)
    provider = tracer_provider_build(service="orders")

    with provider.get_tracer("test").start_as_current_span("root") as root:
        assert root.is_recording()
    provider.shutdown()  # its span goes to the sink now, not to nowhere after the test


def test_an_otlp_endpoint_gets_a_batching_exporter(otel_env):
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")

    (processor,) = processors(tracer_provider_build(service="orders"))

    batching = processor._processor
    assert isinstance(batching, BatchSpanProcessor)
    assert batching._batch_processor._exporter._endpoint == "http://127.0.0.1:4318/v1/traces"


def test_the_traces_endpoint_wins_and_the_none_exporter_turns_export_off(otel_env):
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:14318/v1/traces")
    assert tracing_export_endpoint() == "http://127.0.0.1:14318/v1/traces"

    otel_env.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing_export_endpoint() == ""


def test_a_provider_in_place_is_kept():
    installed = trace.get_tracer_provider()  # the test session's in-memory one

    assert tracing_configure(service="orders") is False
    assert trace.get_tracer_provider() is installed


def test_the_context_written_is_the_current_spans_and_reads_back(spans):
    with tracer.start_as_current_span("work"):
        carrier = trace_context_inject()
        traceparent = traceparent_current()

    work = spans.named("work")
    assert carrier == {"traceparent": traceparent}
    assert traceparent == traceparent_of(work)
    work = work.context
    read = trace.get_current_span(trace_context_extract(carrier)).get_span_context()
    assert (read.trace_id, read.span_id) == (work.trace_id, work.span_id)


def test_a_span_continues_a_callers_trace(spans):
    with tracer.start_as_current_span(
        "here", context=trace_context_extract({"traceparent": CLIENT_TRACE})
    ):
        pass

    here = spans.named("here")
    assert trace.format_trace_id(here.context.trace_id) == "0af7651916cd43dd8448eb211c80319c"
    assert trace.format_span_id(here.parent.span_id) == "b7ad6b7169203331"


@pytest.mark.parametrize("carrier", [None, {}, {"traceparent": "garbage"}])
def test_outside_any_span_there_is_no_context_to_carry(carrier):
    assert traceparent_current() == ""
    assert not trace.get_current_span(trace_context_extract(carrier)).get_span_context().is_valid


class Kept(SpanProcessor):
    def __init__(self) -> None:
        self.names: list[str] = []

    def on_end(self, span) -> None:
        self.names.append(span.name)


def test_client_spans_that_start_a_trace_are_not_exported():
    kept = Kept()
    provider = TracerProvider()
    provider.add_span_processor(LoneClientSpansSkipped(kept))
    local = provider.get_tracer("test")

    with local.start_as_current_span("SELECT poll", kind=trace.SpanKind.CLIENT):
        pass
    with (
        local.start_as_current_span("work"),
        local.start_as_current_span("SELECT order", kind=trace.SpanKind.CLIENT),
    ):
        pass

    assert kept.names == ["SELECT order", "work"]


CONFIGURE_IN_A_FRESH_PROCESS = """
from opentelemetry import trace
from common.tracing import tracing_configure
print(tracing_configure(service="orders"), type(trace.get_tracer_provider()).__name__)
"""


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "False ProxyTracerProvider"),  # make run: nothing exported, nothing instrumented
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, "True TracerProvider"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, "True TracerProvider"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"},
            "False ProxyTracerProvider",
        ),
    ],
)
def test_a_process_is_instrumented_only_when_its_spans_can_go_somewhere(variables, expected):
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("OTEL_")
    }
    finished = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", CONFIGURE_IN_A_FRESH_PROCESS],
        env={**environment, **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert finished.stdout.split("\n")[-2] == expected

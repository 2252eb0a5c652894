"""OpenTelemetry tracing for every process, configured by the standard ``OTEL_*`` variables.

``tracing_configure`` is called once per process, before it does any work:
web processes in their ``wsgi.py``/``asgi.py`` (before Django loads its
middleware, which the Django instrumentation extends), Celery workers at
``worker_init`` (``common.celery``), and the long-running commands (outbox
relay, event consumers, saga watchdog) at the start of ``handle``. Everything
else (``migrate``, ``shell``, tests) keeps the API's no-op tracer.

What the variables decide (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/):

- ``OTEL_SERVICE_NAME``: defaults to the service (``orders``) for web processes
  and ``<service>-<role>`` for the others (``orders-worker``, ``orders-relay``).
- ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``:
  spans are sent there over OTLP/HTTP (protobuf) in batches
  (``OTEL_BSP_SCHEDULE_DELAY``...). With neither set (``make run``) nothing is
  exported and nothing is instrumented: the process keeps the API's no-op
  tracer, as with ``OTEL_SDK_DISABLED=true``. Measured with
  ``bench/tracing_cost.py``: the instrumentations alone, recording nothing,
  added about 16 % to the CPU of a catalog request, about as much as
  recording and exporting every span (bench/README.md).
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``: the SDK's own
  (``parentbased_always_on`` by default when exporting). Set with no
  endpoint, the process is instrumented all the same: with
  ``parentbased_always_off`` traces started here are not recorded, yet every
  span has ids, so context propagates on to processes that export and log
  lines name their trace and span. ``OTEL_TRACES_EXPORTER=none`` turns
  export off; ``OTEL_SDK_DISABLED=true`` leaves the no-op tracer in place.

Trace context between processes travels in the W3C form the global
propagator (``OTEL_PROPAGATORS``) writes: HTTP headers (Django, httpx and the
gateway's own proxy), Celery message headers (``common.commands``), and the
``trace`` field of an event's envelope (``common.events``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

logger = logging.getLogger(__name__)

# The tracer of the code in this repository (spans the instrumentations do not make:
# event publishing and handling, command sends, the saga's deadlines, the gateway's proxy).
tracer = trace.get_tracer("eshop")

_configured = False
_configure_lock = threading.Lock()


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def tracing_export_endpoint() -> str:
    """The OTLP endpoint spans go to, or "" when nothing is to be exported."""
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return ""
    return (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def tracing_configure(*, service: str, role: str = "") -> bool:
    """Install the SDK's tracer provider and the instrumentations for this process, once.

    True when this call configured tracing; False when an earlier call did,
    ``OTEL_SDK_DISABLED`` is set, nothing is to be exported and no sampler is
    asked for, or a tracer provider is in place already (``opentelemetry-instrument``,
    or a test's in-memory one): that one is kept.
    """
    global _configured
    with _configure_lock:
        if _configured:
            return False
        _configured = True
    if _truthy("OTEL_SDK_DISABLED"):
        return False
    if not tracing_export_endpoint() and not os.environ.get("OTEL_TRACES_SAMPLER"):
        return False  # spans would go nowhere; the instrumentations would still cost
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False

    provider = tracer_provider_build(service=service, role=role)
    trace.set_tracer_provider(provider)
    _instrument()
    return True


def tracer_provider_build(*, service: str, role: str = "") -> TracerProvider:
    """The SDK's tracer provider as the ``OTEL_*`` variables describe it, for this process."""
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or (
        f"{service}-{role}" if role else service
    )
    endpoint = tracing_export_endpoint()
    sampler = None  # the SDK's: OTEL_TRACES_SAMPLER (parentbased_always_on by default)
    if not endpoint and not os.environ.get("OTEL_TRACES_SAMPLER"):
        # Nothing leaves this process: a trace started here is not recorded (its
        # spans still have ids, for propagation and log lines), which keeps the
        # instrumentations' cost small; a caller's sampled trace still is, so it
        # goes on into processes that do export.
        sampler = ParentBased(root=ALWAYS_OFF)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}), sampler=sampler)
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # The exporter reads the endpoint, headers, timeout and compression from
        # OTEL_EXPORTER_OTLP_*; the processor its queue and delay from OTEL_BSP_*.
        provider.add_span_processor(LoneClientSpansSkipped(BatchSpanProcessor(OTLPSpanExporter())))
        logger.info("tracing: %s exports spans to %s", name, endpoint)
    return provider


class LoneClientSpansSkipped(SpanProcessor):
    """Hands every ended span on to ``processor`` but the CLIENT spans that start a trace.

    A database query or an HTTP call made outside any traced work is
    background chatter: the relay's and the watchdog's polls, a metrics
    scrape's queries (probes and ``/metrics`` get no server span), the JWKS
    refresh, the discovery lease. Exported, each would be a trace of one span
    drowning the traces of real work.
    """

    def __init__(self, processor: SpanProcessor) -> None:
        self._processor = processor

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if span.parent is None and span.kind is trace.SpanKind.CLIENT:
            return
        self._processor.on_end(span)

    def shutdown(self) -> None:
        self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._processor.force_flush(timeout_millis)


def _instrument() -> None:
    from celery import signals
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor

    # Probes and scrapes are not work anyone traces (OTEL_PYTHON_DJANGO_EXCLUDED_URLS overrides).
    DjangoInstrumentor().instrument(
        excluded_urls=os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", "health/,ready/,metrics")
    )
    # psycopg2-binary is what is installed; the instrumentation names plain psycopg2.
    Psycopg2Instrumentor().instrument(skip_dep_check=True)
    HTTPXClientInstrumentor().instrument()
    celery = CeleryInstrumentor()
    celery.instrument()
    # Its publish side keeps the PRODUCER span open from before_task_publish to
    # after_task_publish only for tasks registered in the sending process; a command
    # sent by name to another service's task (all of ours) would leave the span open
    # and attached to the thread. common.commands makes that span itself; the
    # worker side (task_prerun/postrun: a CONSUMER span per task run) stays.
    signals.before_task_publish.disconnect(celery._trace_before_publish)
    signals.after_task_publish.disconnect(celery._trace_after_publish)


def trace_context_inject(context: Context | None = None) -> dict[str, str]:
    """The W3C fields (``traceparent``, ``tracestate``...) of ``context`` (default: the current).

    Empty when there is no valid span in the context (tracing not configured).
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier


def trace_context_extract(carrier: Mapping[str, str] | None) -> Context:
    """The context carried by W3C fields as ``trace_context_inject`` wrote them."""
    return propagate.extract(dict(carrier or {}))


def traceparent_current() -> str:
    """The ``traceparent`` of the current span, as the propagator writes it, or ""."""
    return trace_context_inject().get("traceparent", "")


def trace_ids_current() -> tuple[str, str]:
    """The current trace and span ids in hex (``-`` for none): what log lines carry."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return "-", "-"
    return trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id)

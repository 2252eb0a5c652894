"""A test session's tracer provider, with the spans it ended kept in memory.

Import the fixture into a service's conftest: ``from common.testing.tracing import spans``.
Importing this module installs the provider for the whole session, so
``common.tracing.tracing_configure`` (called by commands that tests run)
leaves the process as it is: no exporter, no instrumentation.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_exporter = InMemorySpanExporter()
if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(_exporter))
    trace.set_tracer_provider(_provider)


class FinishedSpans:
    """The spans ended since the test started, oldest first."""

    def all(self) -> list[ReadableSpan]:
        return list(_exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        """The one ended span called ``name`` (fails when there is none or several)."""
        found = [span for span in self.all() if span.name == name]
        assert len(found) == 1, [span.name for span in self.all()]
        return found[0]


@pytest.fixture
def spans() -> Iterator[FinishedSpans]:
    _exporter.clear()
    yield FinishedSpans()
    _exporter.clear()


def traceparent_of(span: ReadableSpan) -> str:
    """The W3C ``traceparent`` the propagator writes for an ended span."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

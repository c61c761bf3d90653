"""The bench service with a recording OpenTelemetry SDK (spans batched, then dropped).

For measuring ``zmsg serve --otel`` with tracing really on, not only installed:

    zmsg serve traced_bench_service:service --otel   (from scripts/observability)
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from zmsg.bench.service import service

__all__ = ["service"]


class _Drop(SpanExporter):
    """Every span is recorded and exported, to nowhere: the cost of tracing without a collector's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


_provider = TracerProvider()
_provider.add_span_processor(BatchSpanProcessor(_Drop()))
trace.set_tracer_provider(_provider)

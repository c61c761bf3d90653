"""A service for the observability tests, served with ``zmsg serve --otel --metrics-bind ...``.

It configures the OpenTelemetry SDK the way an application would (a global tracer provider),
with the SDK's in-memory exporter, and answers ``test.spans`` with the spans it finished so the
test process can check parent/child links across the two processes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import zmsg

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

log = logging.getLogger("observedsvc")

service = zmsg.Service("observed")
noted: list[Any] = []


@service.message_pattern("add")
def add(data: list[int]) -> int:
    return sum(data)


@service.message_pattern({"cmd": "slow"})
async def slow(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@service.message_pattern("missing")
def missing(key: str) -> None:
    raise zmsg.RpcException({"status": 404, "message": f"no {key}"})


@service.message_pattern("boom")
def boom() -> None:
    raise ValueError("boom")


@service.message_pattern("chatty")
async def chatty(word: str) -> str:
    log.warning("handling %s", word)
    return word


@service.event_pattern("noted")
def note(data: Any) -> None:
    noted.append(data)


@service.message_pattern("test.noted")
def count_noted() -> int:
    return len(noted)


def _span(span: Any) -> dict[str, Any]:
    ctx = span.get_span_context()
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent is not None else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [event.name for event in span.events],
    }


@service.message_pattern("test.spans")
def spans() -> list[dict[str, Any]]:
    return [_span(span) for span in exporter.get_finished_spans()]

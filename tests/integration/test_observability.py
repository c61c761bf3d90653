"""Metrics, tracing and call logs over real processes (tests/services/observedsvc.py).

The service runs as ``zmsg serve --otel --metrics-bind 127.0.0.1:0 ...``: metrics are checked
by scraping its ``/metrics`` over HTTP and parsing the exposition text; spans by the SDK's
in-memory exporters, one in this process (the client's) and one in the service's (returned by
its ``test.spans`` pattern), so a parent/child link is checked across the two processes.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import zmsg
import zmsg.metrics
import zmsg.otel
from tests.conftest import SERVICES_DIR, ServedProcess

_METRICS_LINE = re.compile(r"zmsg: metrics on (?P<url>\S+)")


def _metrics_url(served: ServedProcess) -> str:
    for line in list(served._lines):
        match = _METRICS_LINE.search(line)
        if match:
            return match["url"]
    raise AssertionError(f"no metrics line in {served._lines}")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a real ``/metrics`` scrape, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted({"service": "observed", **labels}.items()))))


def _eventually(probe: Callable[[], Any], expected: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture
def observed(serve_process: Callable[..., ServedProcess]) -> ServedProcess:
    return serve_process("observedsvc:service", "--otel", "--metrics-bind", "127.0.0.1:0", "--access-log",
                         "--log-format", "json")


def test_metrics_are_scraped_over_http(observed: ServedProcess) -> None:
    url = _metrics_url(observed)
    with zmsg.SyncClientProxy(observed.endpoint, timeout=10) as client:
        for n in range(3):
            assert client.send("add", [n, 1]) == n + 1
        with pytest.raises(zmsg.RpcException):
            client.send("missing", "k")
        with pytest.raises(zmsg.RpcException):
            client.send("boom")
        for name in ("nope-1", "nope-2"):  # unknown patterns: one label, however many names
            with pytest.raises(zmsg.RpcException):
                client.send(name)
        client.emit("noted", {"n": 1})
        assert _eventually(lambda: client.send("test.noted"), 1) == 1
    garbage = zmq.Context.instance().socket(zmq.DEALER)
    garbage.setsockopt(zmq.LINGER, 0)
    try:
        garbage.connect(observed.endpoint)
        garbage.send(b"\xffnot a zmsg record")
        assert _eventually(lambda: sample(scrape(url), "zmsg_malformed_messages_total"), 1) == 1
    finally:
        garbage.close()

    samples = scrape(url)
    assert sample(samples, "zmsg_malformed_messages_total") == 1
    assert sample(samples, "zmsg_requests_total", pattern="add", outcome="ok") == 3
    assert sample(samples, "zmsg_requests_total", pattern="add", outcome="error") == 0
    assert sample(samples, "zmsg_requests_total", pattern="missing", outcome="error") == 1
    assert sample(samples, "zmsg_requests_total", pattern="boom", outcome="error") == 1
    assert sample(samples, "zmsg_requests_total", pattern="other", outcome="rejected") == 2
    assert sample(samples, "zmsg_request_duration_seconds_count", pattern="add") == 3
    assert sample(samples, "zmsg_request_duration_seconds_bucket", pattern="add", le="+Inf") == 3
    assert sample(samples, "zmsg_requests_in_flight") == 0
    assert sample(samples, "zmsg_events_total", pattern="noted", outcome="ok") == 1
    assert sample(samples, "zmsg_events_missed_total") == 0
    # bounded cardinality: the declared patterns and "other", nothing named after what callers sent
    patterns = {dict(labels).get("pattern") for (name, labels) in samples if name == "zmsg_requests_total"}
    assert patterns == {"add", '{"cmd":"slow"}', "missing", "boom", "chatty", "test.noted", "test.spans", "other"}
    assert all(outcome in zmsg.metrics.OUTCOMES for (name, labels) in samples if name == "zmsg_requests_total"
               for key, outcome in labels if key == "outcome")


@pytest.mark.anyio
async def test_cancelled_requests_are_counted(observed: ServedProcess) -> None:
    url = _metrics_url(observed)
    registry = CollectorRegistry()
    async with zmsg.ClientProxy(observed.endpoint, timeout=10) as client:
        zmsg.metrics.instrument(client, registry)
        with pytest.raises(zmsg.RequestTimeout):
            await client.send({"cmd": "slow"}, 30, timeout=0.2)  # the proxy cancels it on timeout
        counted = None
        for _ in range(300):
            counted = sample(scrape(url), "zmsg_requests_total", pattern='{"cmd":"slow"}', outcome="cancelled")
            if counted:
                break
            await client.send("add", [])  # a round trip, not a sleep: the cancel has arrived by then
    assert counted == 1
    assert sample(scrape(url), "zmsg_requests_in_flight") == 0
    # the proxy's own side: its timeouts (and retries) when it is instrumented
    assert registry.get_sample_value("zmsg_client_timeouts_total", {"service": "observed"}) == 1
    assert registry.get_sample_value("zmsg_client_retries_total", {"service": "observed"}) == 0
    assert registry.get_sample_value("zmsg_client_resent_total", {"service": "observed"}) == 0


@pytest.mark.anyio
async def test_requests_cancelled_before_they_start_are_counted(serve_process: Callable[..., ServedProcess]) -> None:
    served = serve_process("observedsvc:service", "--metrics-bind", "127.0.0.1:0", "--max-concurrency", "1")
    url = _metrics_url(served)
    async with zmsg.ClientProxy(served.endpoint, timeout=10) as client:
        # "add" waits for the one slot behind "slow"; its caller gives up and cancels it there.
        slow, late = await asyncio.gather(client.send({"cmd": "slow"}, 0.5), client.send("add", [1], timeout=0.1),
                                          return_exceptions=True)
        assert slow == 0.5 and isinstance(late, zmsg.RequestTimeout)
        info = await client.send("$zmsg.info")
    assert info["stats"]["cancelled"] == 1
    samples = scrape(url)
    cancelled = sum(value for (name, labels), value in samples.items()
                    if name == "zmsg_requests_total" and ("outcome", "cancelled") in labels)
    assert cancelled == 1  # under "other" when it never started, under "add" if it had
    assert sample(samples, "zmsg_requests_total", pattern="add", outcome="ok") == 0
    assert sample(samples, "zmsg_requests_total", pattern='{"cmd":"slow"}', outcome="ok") == 1


@pytest.fixture
def client_spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _by_name(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [span for span in spans if span["name"] == name]


def test_service_span_is_a_child_of_the_callers_across_processes(observed: ServedProcess, client_spans: Any) -> None:
    provider, exporter = client_spans
    with zmsg.SyncClientProxy(observed.endpoint, timeout=10) as client:
        zmsg.otel.instrument(client, tracer_provider=provider)
        assert client.send("add", [2, 3]) == 5
        with pytest.raises(zmsg.RpcException):
            client.send("missing", "x")
        client.emit("noted", {"n": 2})
        assert _eventually(lambda: len(_by_name(client.send("test.spans"), "noted")), 1) == 1
        served = client.send("test.spans")

    mine = {span.name: span for span in exporter.get_finished_spans()}
    call = mine["add"]
    assert call.kind.name == "CLIENT"
    assert call.attributes["rpc.system"] == "zmsg" and call.attributes["rpc.method"] == "add"
    assert call.attributes["server.address"] == "127.0.0.1"
    (server,) = _by_name(served, "add")
    assert server["kind"] == "SERVER"
    assert server["trace_id"] == format(call.context.trace_id, "032x")
    assert server["parent_span_id"] == format(call.context.span_id, "016x")
    assert server["attributes"]["rpc.system"] == "zmsg" and server["attributes"]["rpc.method"] == "add"
    assert server["status"] == "UNSET"

    failed = mine["missing"]
    assert failed.status.status_code.name == "ERROR"
    (server_failed,) = _by_name(served, "missing")
    assert server_failed["status"] == "ERROR" and "exception" in server_failed["events"]
    assert server_failed["attributes"]["rpc.response.status_code"] == "404"
    assert server_failed["parent_span_id"] == format(failed.context.span_id, "016x")

    produced = mine["noted"]
    assert produced.kind.name == "PRODUCER"
    (consumed,) = _by_name(served, "noted")
    assert consumed["kind"] == "CONSUMER"
    assert consumed["parent_span_id"] == format(produced.context.span_id, "016x")


@pytest.mark.anyio
async def test_async_proxy_spans_link_to_the_service(observed: ServedProcess, client_spans: Any) -> None:
    provider, exporter = client_spans
    async with zmsg.ClientProxy(observed.endpoint, timeout=10) as client:
        zmsg.otel.instrument(client, tracer_provider=provider)
        assert await client.send("add", [1, 1]) == 2
        await client.emit("noted", {"n": 3})
        served: list[dict[str, Any]] = []
        for _ in range(300):
            served = await client.send("test.spans")
            if _by_name(served, "noted"):
                break
    mine = {span.name: span for span in exporter.get_finished_spans()}
    (server,) = _by_name(served, "add")
    assert server["parent_span_id"] == format(mine["add"].context.span_id, "016x")
    assert mine["add"].kind.name == "CLIENT"
    (consumed,) = _by_name(served, "noted")
    assert consumed["parent_span_id"] == format(mine["noted"].context.span_id, "016x")


def test_json_logs_carry_the_call_and_the_access_log(observed: ServedProcess, client_spans: Any) -> None:
    provider, exporter = client_spans
    with zmsg.SyncClientProxy(observed.endpoint, timeout=10) as client:
        zmsg.otel.instrument(client, tracer_provider=provider)
        assert client.send("chatty", "hello") == "hello"
        with pytest.raises(zmsg.RpcException):
            client.send("boom")
    assert observed.terminate() == 0
    lines = [json.loads(line) for line in observed.output().splitlines() if line.startswith("{")]
    spans = {s.name: s for s in exporter.get_finished_spans()}
    trace_id = format(spans["chatty"].context.trace_id, "032x")

    (handler_line,) = [line for line in lines if line["logger"] == "observedsvc"]
    assert handler_line["message"] == "handling hello"
    assert handler_line["pattern"] == "chatty" and handler_line["kind"] == "request"
    assert isinstance(handler_line["correlation_id"], int) and handler_line["correlation_id"] > 0
    assert handler_line["trace_id"] == trace_id

    access = [line for line in lines if line["logger"] == "zmsg.access"]
    (chatty,) = [line for line in access if line["pattern"] == "chatty"]
    assert chatty["outcome"] == "ok" and chatty["duration_ms"] >= 0
    assert chatty["correlation_id"] == handler_line["correlation_id"] and chatty["trace_id"] == trace_id
    (failed,) = [line for line in access if line["pattern"] == "boom"]
    assert failed["outcome"] == "error"

    (failure,) = [line for line in lines if line["logger"] == "zmsg.service" and line["level"] == "error"]
    assert failure["pattern"] == "boom" and failure["correlation_id"] == failed["correlation_id"]
    assert failure["trace_id"] == format(spans["boom"].context.trace_id, "032x")
    assert "ValueError: boom" in failure["exception"]


def test_a_bad_metrics_bind_is_a_clear_error() -> None:
    done = subprocess.run([sys.executable, "-m", "zmsg", "serve", "observedsvc:service", "--metrics-bind", "9464"],
                          cwd=SERVICES_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "HOST:PORT" in done.stderr and "Traceback" not in done.stderr

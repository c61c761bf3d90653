"""Prometheus metrics for a ``Service`` and for client proxies (optional extra ``metrics``).

Theory of operation: ``instrument(service)`` adds one service middleware (``service.use``) that
counts each handled call by pattern and outcome, times it into a histogram and tracks the calls
in flight, and registers one collector that reads everything else from the counters the service
keeps anyway (``ServiceStats``: malformed messages, missed events, rejected and expired
requests). Counting happens in plain ints on the loop thread; the collector reads them when
``/metrics`` is scraped (from prometheus-client's HTTP thread; reading an int is atomic under
the GIL), so the only per-call cost is the middleware itself, and only when instrumented.

Label cardinality is bounded: the ``pattern`` label takes the service's declared patterns
(fixed at ``instrument`` time, the handlers are registered by then) and ``OTHER`` for anything
else: unknown patterns, and the outcomes the service decides before a handler is chosen
(rejected, timeout), which its counters do not break down by pattern.

``serve_metrics(bind, registry)`` serves ``/metrics`` with prometheus-client's own HTTP server on
a daemon thread (what ``zmsg serve --metrics-bind HOST:PORT`` starts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Histogram, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("zmsg.metrics needs prometheus-client: pip install 'zmsg[metrics]'") from exc

if TYPE_CHECKING:
    from zmsg.client import ClientProxy
    from zmsg.service import Service
    from zmsg.sync_client import SyncClientProxy

__all__ = ["OTHER", "OUTCOMES", "EVENT_OUTCOMES", "instrument", "instrument_client", "serve_metrics"]

OTHER = "other"
"""The ``pattern`` label of everything that is not one of the service's declared patterns."""
OUTCOMES = ("ok", "error", "timeout", "cancelled", "rejected")
EVENT_OUTCOMES = ("ok", "error")
# Handlers here take microseconds to seconds: fine buckets at the low end, or every quantile is 50 us.
DURATION_BUCKETS = (0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _PatternCounts:
    """Per-outcome counts of one pattern (plain ints, incremented on the loop thread)."""

    __slots__ = ("ok", "error", "timeout", "cancelled", "rejected", "duration")

    def __init__(self, duration: Any) -> None:
        self.ok = self.error = self.timeout = self.cancelled = self.rejected = 0
        self.duration = duration  # a Histogram child, bound once


class ServiceMetrics:
    """The middleware and collector one instrumented service uses (see the module docstring)."""

    def __init__(self, service: Service, registry: CollectorRegistry) -> None:
        self.service = service
        self.registry = registry
        self.in_flight = 0
        name = service.name
        self._histogram = Histogram("zmsg_request_duration_seconds", "Time to handle a request, by pattern",
                                    ["service", "pattern"], buckets=DURATION_BUCKETS, registry=registry)
        self._requests = {p: _PatternCounts(self._histogram.labels(name, p)) for p in service.message_patterns}
        self._other = _PatternCounts(self._histogram.labels(name, OTHER))
        self._events: dict[str, list[int]] = {p: [0, 0] for p in service.event_patterns}
        self._other_events = [0, 0]
        self._collector = _ServiceCollector(self)
        registry.register(self._collector)

    async def middleware(self, ctx: Any, call_next: Callable[[], Any]) -> Any:
        if ctx.kind == "event":
            counts = self._events.get(ctx.pattern, self._other_events)
            try:
                result = await call_next()
            except BaseException:
                counts[1] += 1
                raise
            counts[0] += 1
            return result
        stats = self._requests.get(ctx.pattern, self._other)
        self.in_flight += 1
        started = time.perf_counter()
        try:
            result = await call_next()
        except asyncio.CancelledError:
            stats.cancelled += 1
            raise
        except BaseException:
            stats.error += 1
            raise
        else:
            stats.ok += 1
            return result
        finally:
            self.in_flight -= 1
            stats.duration.observe(time.perf_counter() - started)

    def collect(self) -> Iterator[Any]:
        name = self.service.name
        st = self.service.stats
        requests = CounterMetricFamily("zmsg_requests", "Requests by pattern and outcome",
                                       labels=["service", "pattern", "outcome"])
        seen_cancelled = self._other.cancelled + sum(c.cancelled for c in self._requests.values())
        for pattern, counts in [*self._requests.items(), (OTHER, self._other)]:
            for outcome in OUTCOMES:
                value = getattr(counts, outcome)
                if pattern == OTHER:
                    # Decided before any handler (and middleware) ran: from the service's counters.
                    if outcome == "rejected":
                        value += st.unknown_patterns + st.invalid_payloads + getattr(st, "malformed_metadata", 0)
                    elif outcome == "timeout":
                        value += st.deadline_expired
                    elif outcome == "cancelled":
                        # Cancelled by their callers before they started (waiting for a slot under
                        # max_concurrency, or a task not yet run): the service counted them, no
                        # middleware saw them.
                        value += max(0, st.cancelled - seen_cancelled)
                requests.add_metric([name, pattern, outcome], value)
        yield requests
        in_flight = GaugeMetricFamily("zmsg_requests_in_flight", "Requests being handled now", labels=["service"])
        in_flight.add_metric([name], self.in_flight)
        yield in_flight
        events = CounterMetricFamily("zmsg_events", "Events handled, by pattern and outcome",
                                     labels=["service", "pattern", "outcome"])
        for pattern, (ok, error) in [*self._events.items(), (OTHER, self._other_events)]:
            events.add_metric([name, pattern, "ok"], ok)
            events.add_metric([name, pattern, "error"], error)
        yield events
        for metric, doc, value in (
            ("zmsg_events_missed", "Events lost on the way (gaps in emitters' sequence numbers)", st.events_missed),
            ("zmsg_malformed_messages", "Messages rejected as malformed", st.malformed_messages),
            ("zmsg_events_received", "Event records received, handled or not", st.events),
            ("zmsg_dropped_replies", "Replies dropped for a client that was not reading", st.dropped_replies),
        ):
            family = CounterMetricFamily(metric, doc, labels=["service"])
            family.add_metric([name], value)
            yield family


class _ServiceCollector(Collector):
    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Any]:
        return self._metrics.collect()


def instrument(service: Service | ClientProxy | SyncClientProxy,
               registry: CollectorRegistry | None = None) -> ServiceMetrics | Collector:
    """Count ``service``'s calls into ``registry`` (prometheus-client's default one if None).

    Call it once the handlers are registered and before the service starts (middleware is fixed
    at start); one service per registry. Returns the ``ServiceMetrics`` (its ``registry`` is
    what to serve). Given a ``ClientProxy`` or ``SyncClientProxy`` instead, exports that
    proxy's timeouts and retries (``instrument_client``).
    """
    from zmsg.service import Service

    if not isinstance(service, Service):
        return instrument_client(service, registry)
    if service.running:
        raise RuntimeError("instrument the service before it starts")
    metrics = ServiceMetrics(service, REGISTRY if registry is None else registry)
    service.use(metrics.middleware)
    return metrics


class _ClientCollector(Collector):
    """The proxy's own counters: timeouts and retries (and what else it keeps)."""

    def __init__(self, proxy: ClientProxy | SyncClientProxy) -> None:
        self._proxy = proxy

    def collect(self) -> Iterable[Any]:
        proxy = self._proxy
        service = getattr(proxy, "service_name", None) or ""
        stats: Any = getattr(proxy, "stats", None)
        if stats is not None:  # ClientProxy
            timeouts, retries, malformed = stats.timeouts, stats.retries, stats.malformed_messages
            resent, cuts = stats.resent, stats.send_window_cuts
        else:  # SyncClientProxy keeps them as attributes (one request per thread: no window)
            timeouts, retries, malformed = getattr(proxy, "timeouts", 0), getattr(proxy, "retried", 0), 0
            resent, cuts = getattr(proxy, "resent", 0), 0
        for metric, doc, value in (
            ("zmsg_client_timeouts", "Requests that raised RequestTimeout", timeouts),
            ("zmsg_client_retries", "Requests retried (idempotent calls only)", retries),
            ("zmsg_client_resent", "Requests sent again after the service refused them unrun (429)", resent),
            ("zmsg_client_send_window_cuts", "Times refusals or SLOW_DOWN replies halved the requests kept in flight", cuts),
            ("zmsg_client_malformed_messages", "Reply messages dropped as malformed", malformed),
        ):
            family = CounterMetricFamily(metric, doc, labels=["service"])
            family.add_metric([service], value)
            yield family


def instrument_client(proxy: ClientProxy | SyncClientProxy, registry: CollectorRegistry | None = None) -> Collector:
    """Export ``proxy``'s timeouts and retries into ``registry`` (the default one if None)."""
    collector = _ClientCollector(proxy)
    (REGISTRY if registry is None else registry).register(collector)
    return collector


def serve_metrics(bind: str, registry: CollectorRegistry | None = None) -> tuple[str, Callable[[], None]]:
    """Serve ``/metrics`` on ``HOST:PORT`` (port 0 picks one) from a daemon thread.

    Returns the URL actually served and a function that stops the server.
    """
    host, sep, port_text = bind.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT for the metrics endpoint, got {bind!r}")
    host = host.strip("[]")
    server, thread = start_http_server(int(port_text), addr=host, registry=REGISTRY if registry is None else registry)
    bound_port = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return f"http://{shown}:{bound_port}/metrics", stop

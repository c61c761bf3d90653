"""OpenTelemetry tracing for services and client proxies (optional extra ``otel``).

Theory of operation: ``instrument(obj)`` adds one middleware to a ``Service`` (``service.use``),
a ``ClientProxy`` or a ``SyncClientProxy`` (put outermost in the proxy's chain). The client's
middleware starts a CLIENT span for a request (PRODUCER for an event) and injects the W3C trace
context (``traceparent``, ``tracestate``) into the call's metadata with the globally configured
propagator; the service's middleware extracts it from ``ctx.metadata`` and starts the SERVER
span (CONSUMER for an event) as its child, so one trace crosses processes and hosts. Spans are
named after the pattern and follow the OpenTelemetry RPC and messaging conventions
(``rpc.system`` = ``"zmsg"``, ``rpc.method`` = the pattern); a failure records the exception
and sets the span's status to ERROR.

Only the API (``opentelemetry-api``) is imported: the application configures a tracer provider
and exporter (the SDK). Without one, spans are non-recording and cheap; without ``instrument``
nothing here runs at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("zmsg.otel needs opentelemetry-api: pip install 'zmsg[otel]'") from exc

from zmsg import __version__
from zmsg.codec import encode_pattern, pattern_repr
from zmsg.errors import RpcException

if TYPE_CHECKING:
    from zmsg.client import ClientProxy
    from zmsg.service import Service
    from zmsg.sync_client import SyncClientProxy

__all__ = ["instrument", "SYSTEM"]

SYSTEM = "zmsg"
_TRACER_NAME = "zmsg"


def _tracer(provider: Any) -> trace.Tracer:
    return trace.get_tracer(_TRACER_NAME, __version__, tracer_provider=provider)


def _pattern_text(pattern: Any) -> str:
    return pattern if isinstance(pattern, str) else pattern_repr(encode_pattern(pattern))


def _fail(span: trace.Span, exc: BaseException) -> None:
    if isinstance(exc, asyncio.CancelledError):
        span.set_attribute("zmsg.outcome", "cancelled")
        span.set_status(Status(StatusCode.ERROR, "cancelled"))
        return
    span.record_exception(exc)
    if isinstance(exc, RpcException) and isinstance(exc.error, dict):
        status = exc.error.get("status")
        if isinstance(status, int):
            span.set_attribute("rpc.response.status_code", str(status))
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class _ServiceTracing:
    def __init__(self, service: Service, provider: Any) -> None:
        self.service_name = service.name
        self.tracer = _tracer(provider)

    def _start(self, ctx: Any) -> Any:
        request = ctx.kind == "request"
        attributes: dict[str, Any] = {"rpc.system": SYSTEM, "rpc.service": self.service_name,
                                      "rpc.method": ctx.pattern}
        if request:
            attributes["zmsg.correlation_id"] = ctx.correlation_id
        else:
            attributes.update({"messaging.system": SYSTEM, "messaging.destination.name": ctx.pattern,
                               "messaging.operation.type": "process"})
        parent = propagate.extract(ctx.metadata) if ctx.metadata else None
        return self.tracer.start_as_current_span(
            ctx.pattern, context=parent, kind=SpanKind.SERVER if request else SpanKind.CONSUMER,
            attributes=attributes, record_exception=False, set_status_on_exception=False)

    async def middleware(self, ctx: Any, call_next: Callable[[], Any]) -> Any:
        with self._start(ctx) as span:
            try:
                return await call_next()
            except BaseException as exc:
                _fail(span, exc)
                raise


class _ClientTracing:
    def __init__(self, proxy: Any, provider: Any) -> None:
        self.proxy = proxy
        self.tracer = _tracer(provider)
        endpoint = proxy.endpoints[0] if getattr(proxy, "endpoints", None) else ""
        parts = urlsplit(endpoint) if "://" in endpoint else None
        self.address = parts.hostname if parts is not None else None
        self.port = parts.port if parts is not None else None

    def _start(self, call: Any) -> Any:
        name = _pattern_text(call.pattern)
        request = call.kind == "request"
        attributes: dict[str, Any] = {"rpc.system": SYSTEM, "rpc.method": name}
        service = getattr(self.proxy, "service_name", None)
        if service:
            attributes["rpc.service"] = service
        if self.address:
            attributes["server.address"] = self.address
        if self.port:
            attributes["server.port"] = self.port
        if not request:
            attributes.update({"messaging.system": SYSTEM, "messaging.destination.name": name,
                               "messaging.operation.type": "send"})
        return self.tracer.start_as_current_span(
            name, kind=SpanKind.CLIENT if request else SpanKind.PRODUCER, attributes=attributes,
            record_exception=False, set_status_on_exception=False)

    def _inject(self, call: Any) -> None:
        if call.metadata is None:  # pragma: no cover - the pipeline always gives a dict
            call.metadata = {}
        propagate.inject(call.metadata)

    async def middleware(self, call: Any, call_next: Callable[[], Any]) -> Any:
        with self._start(call) as span:
            self._inject(call)
            try:
                return await call_next()
            except BaseException as exc:
                _fail(span, exc)
                raise

    def sync_middleware(self, call: Any, call_next: Callable[[], Any]) -> Any:
        with self._start(call) as span:
            self._inject(call)
            try:
                return call_next()
            except BaseException as exc:
                _fail(span, exc)
                raise


def instrument(obj: Service | ClientProxy | SyncClientProxy, *, tracer_provider: Any = None) -> Any:
    """Trace every call ``obj`` (a ``Service``, ``ClientProxy`` or ``SyncClientProxy``) makes or handles.

    ``tracer_provider`` defaults to the global one (``opentelemetry.trace.set_tracer_provider``).
    A service must be instrumented before it starts; a proxy's tracing becomes the outermost of
    its middleware. Returns ``obj``.
    """
    from zmsg.client import ClientProxy
    from zmsg.service import Service
    from zmsg.sync_client import SyncClientProxy

    if isinstance(obj, Service):
        if obj.running:
            raise RuntimeError("instrument the service before it starts")
        obj.use(_ServiceTracing(obj, tracer_provider).middleware)
    elif isinstance(obj, ClientProxy):
        obj._middleware = (_ClientTracing(obj, tracer_provider).middleware, *obj._middleware)
    elif isinstance(obj, SyncClientProxy):
        obj._middleware = (_ClientTracing(obj, tracer_provider).sync_middleware, *obj._middleware)
    else:
        raise TypeError(f"zmsg.otel.instrument takes a Service, ClientProxy or SyncClientProxy, not {type(obj).__name__}")
    return obj


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside a recording span (for logs)."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None

"""What ``zmsg serve`` does: find the Service, set up logging, run it until a signal drains it.

Kept out of ``zmsg.cli`` so that other launchers (a process manager, a test, an embedding
application) get the same import rules and the same drain behaviour as the command.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zmsg.allocator import tune_allocator
from zmsg.config import ServeSettings
from zmsg.errors import ConfigError, ServiceLoadError
from zmsg.logfields import FIELDS, CallFieldsFilter, CallLog
from zmsg.runtime import run, uvloop_available
from zmsg.service import Service

__all__ = ["ServiceLoadError", "load_service", "prepare_service", "configure_logging", "serve", "Ready",
           "JsonFormatter"]


def load_service(target: str) -> Service:
    """Import ``MODULE:ATTR`` (the current directory on the path, as uvicorn does) to a Service.

    ``ATTR`` may be dotted (``app:services.users``) and may name a factory that returns one.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"expected MODULE:ATTR (for example users:service), got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ServiceLoadError(f"cannot import module {module_name!r}: not found") from None
        raise ServiceLoadError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:  # the module itself raised while importing: report, don't dump
        raise ServiceLoadError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ServiceLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Service) and callable(obj) and not isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:
            raise ServiceLoadError(
                f"calling the factory {target}() failed: {type(exc).__name__}: {exc}"
            ) from None
    if not isinstance(obj, Service):
        what = f"the class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise ServiceLoadError(f"{target} is {what}, not a zmsg.Service (or a factory returning one)")
    return obj


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, for log shippers (``--log-format json``)."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:  # the call's fields (zmsg.logfields), when the line is about one
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if self.worker is not None:
            entry["worker"] = self.worker
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, fmt: str, worker: int | None = None) -> None:
    """Send zmsg's (and the application's) logs to stderr as text or JSON lines; a worker of
    ``zmsg serve --workers`` says which one it is on every line."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        tag = f" [worker {worker}]" if worker is not None else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s"))
    handler.addFilter(CallFieldsFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


MetricsStarter = Callable[[Callable[[str], None] | None], Callable[[], None]]
"""Starts the ``/metrics`` server (reporting its URL to the callback) and returns its stop."""


def instrument(service: Service, settings: ServeSettings) -> MetricsStarter | None:
    """Add what ``--otel``, ``--metrics-bind``, ``--access-log`` and JSON logs ask for, in that order
    (tracing outermost, so the metrics and log lines of a call fall inside its span).

    Returns a function that starts the ``/metrics`` server (given the URL callback) when asked for.
    """
    if settings.otel:
        try:
            from zmsg import otel
        except ImportError as exc:
            raise ConfigError(f"--otel needs the otel extra: {exc}") from None
        otel.instrument(service)
    start_metrics = None
    if settings.metrics_bind is not None:
        try:
            from prometheus_client import CollectorRegistry

            from zmsg import metrics
        except ImportError as exc:
            raise ConfigError(f"--metrics-bind needs the metrics extra: {exc}") from None
        registry = CollectorRegistry()
        metrics.instrument(service, registry)
        bind = settings.metrics_bind

        def start_metrics(report: Callable[[str], None] | None) -> Callable[[], None]:
            try:
                url, stop = metrics.serve_metrics(bind, registry)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot serve metrics on {bind!r}: {exc}") from None
            if report is not None:
                report(url)
            return stop

    if settings.access_log or settings.log_format == "json":
        service.use(CallLog(access=settings.access_log).middleware)
    return start_metrics


@dataclass(frozen=True)
class Ready:
    """What ``serve`` tells its ``on_ready`` callback once every process takes requests."""

    name: str
    endpoint: str
    events: str
    workers: int = 1
    instances: tuple[str, ...] = ()


def prepare_service(settings: ServeSettings) -> Service:
    """Load ``settings.app`` and apply the deployment settings to it (one process or a worker)."""
    # Before the application allocates anything: large payload buffers stay in the heap.
    tune_allocator()
    service = load_service(settings.app or "")
    # Deployment settings win over what the code constructed the Service with.
    if settings.max_message_size is not None:
        service.max_message_size = settings.max_message_size
    if settings.max_concurrency is not None:
        service.max_concurrency = settings.max_concurrency
    if settings.max_peer_buffer is not None:
        service.max_peer_buffer = settings.max_peer_buffer
    if settings.reply_hwm is not None:
        service.reply_hwm = settings.reply_hwm
    security = settings.security()
    if security is not None:
        service.security = security
    if settings.insecure:
        service.insecure = True
    if settings.allow_from:
        service.allow_from = settings.allow_from
    return service


def check_settings(settings: ServeSettings) -> None:
    if not settings.app:
        raise ConfigError("nothing to serve: give MODULE:ATTR, ZMSG_SERVE_APP or app in [serve] of zmsg.toml")
    if settings.loop == "uvloop" and not uvloop_available():
        raise ConfigError("loop 'uvloop' was asked for but uvloop is not installed")
    if settings.metrics_bind is not None and settings.worker_count() > 1:
        raise ConfigError("--metrics-bind with --workers is not supported yet (each worker would need its own "
                          "/metrics port); serve the workers' metrics one process at a time or drop --workers")


def serve(settings: ServeSettings, on_ready: Callable[[Ready], None] | None = None,
          on_metrics: Callable[[str], None] | None = None) -> None:
    """Load ``settings.app`` and serve it in the foreground until SIGINT/SIGTERM, then drain.

    The first signal stops new work (new requests get a 503 error), waits up to
    ``settings.grace`` seconds for in-flight handlers and flushes their replies; a second
    signal exits at once. With ``settings.workers`` above 1 this process is the supervisor of
    that many worker processes (``zmsg.workers``) and drains them all.
    """
    check_settings(settings)
    if settings.worker_count() > 1:
        from zmsg.workers import supervise

        supervise(settings, on_ready)
        return
    configure_logging(settings.log_level, settings.log_format)
    service = prepare_service(settings)
    start_metrics = instrument(service, settings)

    def ready(endpoint: str) -> None:
        if on_ready is not None:
            on_ready(Ready(service.name, endpoint, service.events_endpoint))

    stop_metrics = start_metrics(on_metrics) if start_metrics is not None else None
    try:
        serving = service.serve(settings.bind, events_endpoint=settings.events_bind, on_ready=ready,
                                grace=settings.grace)
        run(serving, use_uvloop=settings.loop != "asyncio")
    finally:
        if stop_metrics is not None:
            stop_metrics()

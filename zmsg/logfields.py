"""Log lines that carry the call: pattern, correlation id, trace id; and the access log.

Theory of operation: ``CallLog`` is a service middleware. Around each call it puts the call's
fields (kind, pattern, correlation id) in a context variable, so every line logged while the
call runs (by the handler, by zmsg) can carry them; ``CallFieldsFilter``, installed on the
handler ``zmsg serve`` logs through, copies them onto each record, with the current trace id
when tracing is on (``zmsg.otel``). With ``access_log`` on, ``CallLog`` also writes one line per
handled call to the ``zmsg.access`` logger: pattern, outcome, duration. ``JsonFormatter`` (in
zmsg.serving) writes these fields as JSON keys.

Nothing here runs unless ``zmsg serve`` is asked for JSON logs, an access log or tracing.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

__all__ = ["CALL_FIELDS", "CallFieldsFilter", "CallLog", "FIELDS", "access_log", "call_extra"]

access_log = logging.getLogger("zmsg.access")

CALL_FIELDS: ContextVar[dict[str, Any] | None] = ContextVar("zmsg_call_fields", default=None)
"""The fields of the call being handled in this context (None outside a call)."""

FIELDS = ("kind", "pattern", "correlation_id", "trace_id", "outcome", "duration_ms")
"""Record attributes a formatter may find: from ``extra=`` or from the current call."""


def _trace_id() -> str | None:
    # Only when the application (or --otel) imported zmsg.otel: logging never imports the extra.
    otel = sys.modules.get("zmsg.otel")
    return otel.current_trace_id() if otel is not None else None


_EXC_ATTR = "_zmsg_call_fields"


def call_extra(pattern: str, correlation_id: int, exc: BaseException | None = None) -> dict[str, Any]:
    """``extra=`` for a line the service logs about a call after it ended (a failed handler):
    the call's fields, and the trace id ``CallLog`` noted on the exception while the span was
    current."""
    extra: dict[str, Any] = {"pattern": pattern, "correlation_id": correlation_id}
    noted = getattr(exc, _EXC_ATTR, None) if exc is not None else None
    if noted is not None:
        extra.update(noted)
    return extra


class CallFieldsFilter(logging.Filter):
    """Adds the current call's fields (and trace id) to records that do not already have them."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = CALL_FIELDS.get()
        if fields is not None:
            for key, value in fields.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        if not hasattr(record, "trace_id"):
            trace_id = _trace_id()
            if trace_id is not None:
                record.trace_id = trace_id
        return True


class CallLog:
    """Service middleware: the call's fields for every line logged during it, and the access log."""

    def __init__(self, *, access: bool = False) -> None:
        self.access = access

    async def middleware(self, ctx: Any, call_next: Callable[[], Any]) -> Any:
        fields = {"kind": ctx.kind, "pattern": ctx.pattern, "correlation_id": ctx.correlation_id}
        token = CALL_FIELDS.set(fields)
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await call_next()
            outcome = "ok"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as exc:
            # The service logs the failure once the call is over: leave it the fields of the call.
            trace_id = _trace_id()
            try:
                setattr(exc, _EXC_ATTR, {**fields, "trace_id": trace_id} if trace_id else fields)
            except AttributeError:  # an exception type with __slots__: the line goes without
                pass
            raise
        finally:
            if self.access:
                duration_ms = round((time.perf_counter() - started) * 1000, 3)
                access_log.info("%s %s %s %.3f ms", ctx.kind, ctx.pattern, outcome, duration_ms,
                                extra={"outcome": outcome, "duration_ms": duration_ms})
            CALL_FIELDS.reset(token)

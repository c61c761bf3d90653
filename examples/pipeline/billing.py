"""A billing service with the request pipeline: an auth guard, a timing interceptor and an
exception handler, around plain handlers that know nothing of either.

Serve it with ``zmsg serve billing:service`` from this directory; ``main.py`` does that for you.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec

import zmsg
from zmsg.pipeline import CallNext

log = logging.getLogger("billing")
service = zmsg.Service("billing", version="1.0.0")

TOKENS = {"Bearer s3cret": "alice"}  # a real service would verify a signed token here


class Invoice(msgspec.Struct):
    id: int
    customer: str
    total: float


class InvoiceNotFound(LookupError):
    """A domain error: the handlers raise it, the exception handler below maps it for callers."""


INVOICES = {1: Invoice(1, "alice", 120.0), 2: Invoice(2, "alice", 42.5)}


# -- middleware: outermost first, in the order added -------------------------------------------


async def timing(ctx: zmsg.Context, call_next: CallNext) -> Any:
    """An interceptor: times every handler, and the rest of the chain, whatever it returns or raises."""
    started = time.perf_counter()
    try:
        return await call_next()
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info("%s %s took %.2f ms (trace %s)", ctx.kind, ctx.pattern, elapsed_ms, ctx.metadata.get("trace-id", "-"))


async def auth_guard(ctx: zmsg.Context, call_next: CallNext) -> Any:
    """A guard: requests need a known token in their metadata; the handler never runs otherwise."""
    if ctx.kind == "request" and ctx.metadata.get("authorization") not in TOKENS:
        raise zmsg.RpcException({"status": 401, "message": "a valid authorization token is required"})
    return await call_next()


service.use(timing)
service.use(auth_guard)


# -- exception handlers: the most specific class in the exception's MRO wins -------------------


@service.exception_handler(InvoiceNotFound)
def invoice_not_found(exc: InvoiceNotFound, ctx: zmsg.Context) -> dict[str, Any]:
    return {"status": 404, "message": str(exc), "pattern": ctx.pattern}


# -- handlers ----------------------------------------------------------------------------------


@service.message_pattern({"cmd": "get_invoice"})
def get_invoice(invoice_id: int) -> Invoice:
    invoice = INVOICES.get(invoice_id)
    if invoice is None:
        raise InvoiceNotFound(f"no invoice {invoice_id}")
    return invoice


@service.message_pattern({"cmd": "whoami"})
def whoami(ctx: zmsg.Context) -> str:
    return TOKENS[ctx.metadata["authorization"]]


@service.event_pattern("invoice_paid")
def invoice_paid(invoice_id: int, ctx: zmsg.Context) -> None:
    log.info("invoice %d paid (trace %s)", invoice_id, ctx.metadata.get("trace-id", "-"))

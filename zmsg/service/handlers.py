"""Decorators that mark handlers, and the introspection that binds them.

Decorators only attach metadata (``__zmsg_routes__``) to the function, so they work on plain
functions and on methods of a controller class alike; a ``Service`` binds them when they are
registered or included. Binding reads the signature once: which parameter receives the payload
(and its annotated type, for which a typed msgspec decoder is built now, not per message) and
which one wants the ``Context``, and whether it streams (an async generator function or a plain
generator function: each value it yields is one item of a stream). ``use=[...]`` attaches the
handler's own middleware; a ``ChainedHandler`` (built by the service at start, only when
middleware applies) runs the pipeline around the bound handler.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, TypeVar

import msgspec

from zmsg.codec import Pattern, encode_pattern, typed_decoder
from zmsg.pipeline import Middleware, check_middleware, run_chain
from zmsg.protocol import RESERVED_PREFIX
from zmsg.service.context import Context

__all__ = [
    "message_pattern",
    "event_pattern",
    "Handler",
    "ChainedHandler",
    "bind_handler",
    "check_use",
    "ROUTES_ATTR",
    "MESSAGE",
    "EVENT",
    "BROADCAST_EVENT",
]

ROUTES_ATTR = "__zmsg_routes__"
MESSAGE = "message"
EVENT = "event"
BROADCAST_EVENT = "broadcast_event"  # an event handler that runs on every instance of the service

F = TypeVar("F", bound=Callable[..., Any])


def check_use(use: Sequence[Middleware] | None) -> tuple[Middleware, ...]:
    """Validate a decorator's ``use=[...]`` now, so a wrong middleware fails at import, not per call."""
    if use is None:
        return ()
    if isinstance(use, (str, bytes)) or not isinstance(use, Sequence):
        raise TypeError(f"use= takes a list of middleware, not {use!r}")
    return tuple(check_middleware(mw) for mw in use)


def _mark(role: str, pattern: Pattern, use: Sequence[Middleware] | None = None) -> Callable[[F], F]:
    route = encode_pattern(pattern)  # validates the pattern at decoration time
    if route.decode("utf-8", "replace").startswith(RESERVED_PREFIX):
        raise ValueError(f"patterns starting with {RESERVED_PREFIX!r} are reserved for zmsg itself")
    chain = check_use(use)

    def decorate(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@{role}_pattern must decorate a callable, not {func!r}")
        routes: list[tuple[str, bytes, tuple[Middleware, ...]]] = list(getattr(func, ROUTES_ATTR, ()))
        routes.append((role, route, chain))
        try:
            setattr(func, ROUTES_ATTR, routes)
        except AttributeError:  # bound methods: mark the underlying function
            setattr(func.__func__, ROUTES_ATTR, routes)  # type: ignore[attr-defined]
        return func

    return decorate


def message_pattern(pattern: Pattern, *, use: Sequence[Middleware] | None = None) -> Callable[[F], F]:
    """Mark a function or controller method as the request-reply handler of ``pattern``.

    ``use`` lists middleware run around this handler only, inside the service-wide ones.
    """
    return _mark(MESSAGE, pattern, use)


def event_pattern(pattern: Pattern, *, broadcast: bool = False,
                  use: Sequence[Middleware] | None = None) -> Callable[[F], F]:
    """Mark a function or controller method as a handler of the event ``pattern``.

    With several instances of the service an event runs its handlers on one instance only;
    ``broadcast=True`` makes this handler run on every instance (e.g. to drop a local cache).
    ``use`` lists middleware run around this handler only, inside the service-wide ones.
    """
    return _mark(BROADCAST_EVENT if broadcast else EVENT, pattern, use)


@dataclass(slots=True)
class Handler:
    """A bound handler: how to call it and how to decode its payload."""

    func: Callable[..., Any]
    name: str
    is_async: bool
    decoder: msgspec.msgpack.Decoder[Any] | None  # None: the handler takes no payload
    payload_param: str | None
    context_param: str | None
    positional_payload: bool
    broadcast: bool = False  # event handlers: run on every instance, not only the chosen one
    use: tuple[Middleware, ...] = ()  # the handler's own middleware (``use=[...]``)
    # Dispatch builds a Context only when someone reads it: the handler, a middleware or an
    # exception handler (the service sets this at start).
    wants_context: bool = False
    is_stream: bool = False  # a generator function: called with ``client.stream``, not ``send``
    payload_type: Any = Any  # the payload parameter's annotation (the request/event schema)
    return_type: Any = Any  # the return annotation (the reply schema; a stream's: one item's type)

    def call(self, payload: Any, context: Context | None) -> Any:
        if self.context_param is None:
            if self.payload_param is None:
                return self.func()
            if self.positional_payload:
                return self.func(payload)
            return self.func(**{self.payload_param: payload})
        kwargs: dict[str, Any] = {self.context_param: context}
        if self.payload_param is not None:
            kwargs[self.payload_param] = payload
        return self.func(**kwargs)


@dataclass(slots=True)
class ChainedHandler(Handler):
    """A handler with middleware: ``call`` returns the pipeline's coroutine (so it is async).

    Built by the service at start from a bound ``Handler`` only when middleware applies to it,
    so handlers without middleware keep their direct (and for sync ones, inline) call.
    """

    chain: tuple[Middleware, ...] = ()
    inner: Handler | None = None

    @classmethod
    def around(cls, inner: Handler, chain: tuple[Middleware, ...]) -> ChainedHandler:
        # Every field of the plain handler (its schema types too), whatever fields it grows.
        same = {f.name: getattr(inner, f.name) for f in fields(Handler)}
        return cls(**{**same, "is_async": True, "wants_context": True}, chain=chain, inner=inner)

    def call(self, payload: Any, context: Context | None) -> Any:
        inner = self.inner
        assert inner is not None
        endpoint = partial(inner.call, payload, context if inner.context_param is not None else None)
        return run_chain(self.chain, context, endpoint)


def bind_handler(func: Callable[..., Any], use: Sequence[Middleware] | None = None) -> Handler:
    """Inspect ``func`` once and build what dispatch needs to call it fast."""
    target = inspect.unwrap(func)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot inspect handler {func!r}: {exc}") from None
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception as exc:  # unresolved forward references and the like
        raise TypeError(f"cannot resolve the type hints of handler {func!r}: {exc}") from None

    payload_param: str | None = None
    payload_type: Any = Any
    context_param: str | None = None
    positional_payload = False
    for index, (name, param) in enumerate(signature.parameters.items()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        hint = hints.get(name, Any)
        if hint is Context:
            context_param = name
        elif payload_param is None:
            payload_param = name
            payload_type = hint
            positional_payload = index == 0 and param.kind != param.KEYWORD_ONLY
        elif param.default is param.empty:
            raise TypeError(
                f"handler {func.__qualname__} has more than one required parameter besides the Context "
                f"({payload_param!r} and {name!r}); a handler receives one payload"
            )
    decoder = typed_decoder(payload_type) if payload_param is not None else None
    is_stream = (inspect.isasyncgenfunction(target) or inspect.isgeneratorfunction(target)
                 or inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func))
    return_type = hints.get("return", Any)
    if is_stream:  # what one item is: AsyncIterator[T], Iterator[T], (Async)Generator[T, ...]
        args = typing.get_args(return_type)
        return_type = args[0] if args else Any
    return Handler(
        func=func,
        name=getattr(func, "__qualname__", repr(func)),
        is_async=inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(func),
        decoder=decoder,
        payload_param=payload_param,
        context_param=context_param,
        positional_payload=positional_payload,
        use=check_use(use),
        wants_context=context_param is not None,
        is_stream=is_stream,
        payload_type=payload_type,
        return_type=return_type,
    )

"""The request pipeline: middleware around handlers, and exception handlers mapping errors.

Theory of operation: a service hands a call to ``run_chain`` with its ``Context`` and an
*endpoint*, a zero-argument callable that runs the handler on the already validated payload.
Each middleware receives the context and a ``call_next`` that runs the rest of the chain and
returns the handler's result, so a middleware may transform the result, answer without calling
``call_next`` (a cache), or raise (a guard). The chain runs outermost first: service-wide
middleware in the order added, then the handler's own ``use=[...]``.

With no middleware configured this module is not on the hot path at all: the service calls the
handler directly, and sync handlers keep running inline. With middleware, a call is a coroutine.

Clients run the same chains around their calls (``mw(call, call_next)`` where ``call`` is a
``zmsg.Call``): ``run_chain`` for ``ClientProxy``, ``run_chain_sync`` (plain functions, no loop)
for ``SyncClientProxy``.

``ExceptionHandlers`` maps an exception raised by a handler or a middleware to the error object
the caller's ``RpcException`` carries: the most specific registered class in the exception's MRO
wins. This module knows no socket, loop or wire format (only ``await``), so the service and an
in-memory test client run the very same pipeline.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from zmsg.errors import RpcException

__all__ = [
    "CallNext",
    "Middleware",
    "ExceptionHandler",
    "ExceptionHandlers",
    "NO_MATCH",
    "SyncCallNext",
    "SyncMiddleware",
    "check_middleware",
    "check_sync_middleware",
    "run_chain",
    "run_chain_sync",
]

CallNext = Callable[[], Awaitable[Any]]
# ``async def middleware(ctx: zmsg.Context, call_next) -> Any``
Middleware = Callable[[Any, CallNext], Awaitable[Any]]
SyncCallNext = Callable[[], Any]
# ``def middleware(call: zmsg.Call, call_next) -> Any`` (SyncClientProxy)
SyncMiddleware = Callable[[Any, SyncCallNext], Any]
# ``def handler(exc, ctx) -> dict | str`` (or async)
ExceptionHandler = Callable[[Any, Any], Any]


def _is_async_callable(func: Any) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    # an instance whose class defines ``async def __call__``
    return not inspect.isroutine(func) and inspect.iscoroutinefunction(type(func).__call__)


def check_middleware(middleware: Any) -> Middleware:
    """Refuse, at registration, anything that is not ``async def mw(ctx, call_next)``."""
    if not callable(middleware):
        raise TypeError(f"middleware must be an async function (ctx, call_next), not {middleware!r}")
    if not _is_async_callable(middleware):
        raise TypeError(
            f"middleware {getattr(middleware, '__qualname__', middleware)!r} must be an async function "
            "`async def middleware(ctx, call_next)`: it awaits call_next()"
        )
    return middleware  # type: ignore[no-any-return]


def check_sync_middleware(middleware: Any) -> SyncMiddleware:
    """Refuse, at construction, anything that is not a plain ``def mw(call, call_next)``."""
    if not callable(middleware) or _is_async_callable(middleware):
        raise TypeError(
            f"SyncClientProxy middleware must be a plain function `def middleware(call, call_next)`, "
            f"not {getattr(middleware, '__qualname__', middleware)!r}"
        )
    return middleware  # type: ignore[no-any-return]


def run_chain_sync(chain: Sequence[SyncMiddleware], call: Any, endpoint: SyncCallNext) -> Any:
    """``run_chain`` for blocking callers: each middleware calls ``call_next()`` directly."""

    def step(index: int) -> SyncCallNext:
        if index == len(chain):
            return endpoint
        middleware = chain[index]
        following = step(index + 1)
        return lambda: middleware(call, following)

    return step(0)()


def _step(chain: Sequence[Middleware], index: int, ctx: Any, endpoint: Callable[[], Any]) -> CallNext:
    async def call_next() -> Any:
        if index == len(chain):
            result = endpoint()
            if inspect.isawaitable(result):
                result = await result
            return result
        return await chain[index](ctx, _step(chain, index + 1, ctx, endpoint))

    return call_next


async def run_chain(chain: Sequence[Middleware], ctx: Any, endpoint: Callable[[], Any]) -> Any:
    """Run ``chain`` (outermost first) around ``endpoint`` and return what the outermost returns.

    ``endpoint`` may return a value (a sync handler) or an awaitable (an async one).
    """
    return await _step(chain, 0, ctx, endpoint)()


class _NoMatch:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_MATCH"


NO_MATCH: Any = _NoMatch()
"""What ``ExceptionHandlers.handle`` returns when no registered class matches: today's rules apply."""


class ExceptionHandlers:
    """Exception classes mapped to the functions that turn them into error objects."""

    __slots__ = ("_handlers", "_resolved")

    def __init__(self) -> None:
        self._handlers: dict[type[BaseException], ExceptionHandler] = {}
        self._resolved: dict[type[BaseException], ExceptionHandler | None] = {}

    def add(self, exc_type: type[BaseException], handler: ExceptionHandler) -> None:
        if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
            raise TypeError(f"exception_handler takes an Exception subclass, not {exc_type!r}")
        if not callable(handler):
            raise TypeError(f"an exception handler must be callable (exc, ctx), not {handler!r}")
        existing = self._handlers.get(exc_type)
        if existing is not None and existing is not handler:
            raise ValueError(f"{exc_type.__name__} already has an exception handler ({existing!r})")
        self._handlers[exc_type] = handler
        self._resolved.clear()

    def __bool__(self) -> bool:
        return bool(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    def find(self, exc_type: type[BaseException]) -> ExceptionHandler | None:
        """The handler of the most specific registered class in ``exc_type``'s MRO (cached per type)."""
        try:
            return self._resolved[exc_type]
        except KeyError:
            pass
        found = None
        for klass in exc_type.__mro__:
            found = self._handlers.get(klass)
            if found is not None:
                break
        self._resolved[exc_type] = found
        return found

    def handle(self, exc: BaseException, ctx: Any) -> Any:
        """The error object for ``exc``: a value, an awaitable of one, or ``NO_MATCH``.

        A handler that raises ``RpcException`` (for instance re-raising the one it received)
        gives that exception's error object. A handler that returns something other than a dict
        or a str, or raises anything else, raises here: the caller answers it as an unexpected
        failure (500).
        """
        handler = self.find(type(exc))
        if handler is None:
            return NO_MATCH
        try:
            result = handler(exc, ctx)
        except RpcException as raised:
            return raised.error
        if inspect.isawaitable(result):
            return self._finish(result, handler)
        return _error_object(result, handler)

    @staticmethod
    async def _finish(result: Awaitable[Any], handler: ExceptionHandler) -> Any:
        try:
            value = await result
        except RpcException as raised:
            return raised.error
        return _error_object(value, handler)


def _error_object(value: Any, handler: ExceptionHandler) -> str | dict[str, Any]:
    if isinstance(value, (str, dict)):
        return value
    name = getattr(handler, "__qualname__", repr(handler))
    raise TypeError(f"exception handler {name} returned {type(value).__name__}; it must return a dict or a str")

"""``Service``: handlers bound to patterns, served on a ROUTER (requests) and a SUB (events).

Theory of operation: each ROUTER message is a batch of records from one client. Records are
dispatched in order: a sync handler runs inline and its reply record is appended to that
client's pending reply batch; an async handler becomes a task whose reply joins the pending
batch when it finishes. Pending batches are flushed when the reader has drained the socket (so
one batch of requests is answered by one reply message) and once per loop iteration for replies
of async handlers. Events arrive on the SUB socket (and, for clients without a publisher, on the
ROUTER) and go to every handler of their pattern; their failures stay here (logged, counted).
Nothing malformed reaches a handler or stops a reader: it is counted and, where a reply can be
addressed, answered with an error record.

Requests carry the caller's remaining time (``ttl_ms``): a request whose deadline has passed
before its handler could start (it waited behind ``max_concurrency``, or behind slow sync
handlers in the same batch) is skipped, since its caller has already given up. A cancel record
from the caller cancels the handler's task if it is still running, and no reply is sent.
Events carry their emitter's id and sequence number; a jump in the sequence is counted as
missed events for that emitter (``event_gaps``) and logged.

A generator handler streams (zmsg/service/streams.py): a stream request starts it as a task that
sends one stream-item record per yielded value, batched per caller like replies, as far as the
caller's credit allows. Streams are not counted against ``max_concurrency`` (they are long-lived
and mostly suspended); the credit window bounds what each one holds.

Metadata, middleware and exception handlers (zmsg/pipeline.py) cost nothing when unused: a record
without FLAG_METADATA takes the path it always took, and a handler no middleware applies to is
called directly (sync ones inline). At start, each handler with middleware is wrapped once in a
``ChainedHandler`` whose call is the pipeline's coroutine; exception handlers are consulted only
on the failure path.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import os
import secrets
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import partial
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from zmsg import __version__ as _zmsg_version, codec
from zmsg._framing import IMPLEMENTATION as FRAMING_IMPLEMENTATION
from zmsg.codec import (
    INTERNAL_ERROR,
    Pattern,
    PayloadError,
    encode_pattern,
    error_object,
    pattern_repr,
    refusal_object,
)
from zmsg.defaults import DEFAULT_HEARTBEAT, DEFAULT_HWM
from zmsg.endpoints import is_local_endpoint, parse_networks
from zmsg.errors import FrameError, InsecureBindError, RpcException, SecurityError, ZmsgError
from zmsg.event_sequence import IN_ORDER, EventGaps
from zmsg.logfields import call_extra
from zmsg.pipeline import NO_MATCH, ExceptionHandlers, Middleware, check_middleware
from zmsg.protocol import (
    BROADCAST_TOPIC,
    EMPTY_METADATA,
    FLAG_BROADCAST_ONLY,
    FLAG_METADATA,
    FLAG_SLOW_DOWN,
    FLAG_STREAM,
    FLUSH_EXTERNAL_BYTES,
    HEALTH_PATTERN,
    HELLO_PATTERN,
    INFO_PATTERN,
    KIND_CANCEL,
    KIND_CREDIT,
    KIND_ERROR,
    KIND_EVENT,
    KIND_NAMES,
    KIND_REPLY,
    KIND_REQUEST,
    KIND_STREAM_END,
    KIND_STREAM_ITEM,
    RESERVED_PREFIX,
    SCHEMA_PATTERN,
    VERSION,
    BatchBuilder,
    decode_metadata,
    event_batch_start,
    instance_topic,
    parse_frames,
)
from zmsg.runtime import ShutdownSignals, run
from zmsg.service.context import Context
from zmsg.service.handlers import (
    BROADCAST_EVENT,
    EVENT,
    MESSAGE,
    ROUTES_ATTR,
    ChainedHandler,
    Handler,
    bind_handler,
    event_pattern,
    message_pattern,
)
from zmsg.service.ratelimit import RateLimitedLog
from zmsg.service.streams import STREAM_FLUSH_AT, Streams
from zmsg.transport import Channel, bind_router, bind_subscriber, events_bind_endpoint
from zmsg.transport.monitor import AcceptMonitor
from zmsg.transport.security import (
    AccessPolicy,
    CurveServer,
    KeyGuard,
    apply_policy,
    release_policy,
)
from zmsg.transport.sockets import too_many_files_message

__all__ = ["Service", "ServiceStats"]

DEFAULT_MAX_PEER_BUFFER = 64 * 1024 * 1024
"""Bytes of unsent replies one client may have waiting in zmsg before its requests are refused."""
DEFAULT_REPLY_HWM = 16
"""Reply messages ZeroMQ itself queues per client (SNDHWM): what zmsg cannot count in bytes, so small.
Small has a price: libzmq wakes the writer every SNDHWM/2 messages its I/O thread reads (1-4 % of
requests/s at one 64 KiB request in flight, against 1000; docs/cli.md)."""
DEFAULT_EVENT_HWM = DEFAULT_HWM
"""Event messages (batches of up to the emitter's flush_at events) ZeroMQ queues per emitter.
Large on purpose for now: events queued at the emitter instead are lost if it closes before they
leave (its XPUB closes with linger 0); see docs/limits.md."""
MAX_EVENT_TASKS = 1024
"""Async event handlers running at once (``max_concurrency`` when smaller); past it the event
socket is not read, so events wait in ZeroMQ and then push back on emitters."""
_REFUSAL_ALLOWANCE = 1024 * 1024
"""Bytes of 429 refusals queued for an over-budget client, then silence. Large enough that a client
pipelining hundreds of requests for large replies, which re-sends what was refused, hears about
every one (a 429 is about 170 bytes); small next to the budget a client that stopped reading may use."""

log = logging.getLogger("zmsg.service")


def _slow_down(backlog: int, budget: int) -> int:
    """The flag a reply carries when its client's unsent replies (``backlog`` bytes) are over
    half its ``max_peer_buffer``: a pipelining client then keeps fewer requests out before it
    reaches the budget, where its requests are refused (and it would send them twice)."""
    return FLAG_SLOW_DOWN if backlog > budget >> 1 else 0


F = TypeVar("F", bound=Callable[..., Any])
E = TypeVar("E", bound=Callable[..., Any])


class RequestRoute(Protocol):
    """What the service needs of its request socket: a ``Channel`` on its ROUTER, or the
    in-memory stand-in of ``zmsg.testing.TestClient`` (same records, no socket)."""

    on_idle: Callable[[], None] | None
    unroutable: int
    dropped: int

    inspect: Any

    @property
    def queued(self) -> int: ...

    @property
    def backlogged_bytes(self) -> int: ...

    def send_to(self, peer: bytes, frames: list[Any]) -> None: ...

    def backlog_bytes(self, peer: bytes) -> int: ...

    def close(self, linger_ms: int = 0) -> None: ...


@dataclass
class ServiceStats:
    """Counters a running service keeps; every rejected or failed record is counted here."""

    requests: int = 0
    replies: int = 0
    errors_sent: int = 0
    events: int = 0
    handler_errors: int = 0
    event_handler_errors: int = 0
    unknown_patterns: int = 0
    invalid_payloads: int = 0
    malformed_messages: int = 0
    unsupported_kinds: int = 0
    unroutable_replies: int = 0
    dropped_replies: int = 0
    cancelled: int = 0
    deadline_expired: int = 0
    queued: int = 0
    events_missed: int = 0
    events_out_of_order: int = 0
    streams: int = 0
    stream_items: int = 0
    stream_mismatches: int = 0
    stale_credits: int = 0
    malformed_credits: int = 0
    malformed_metadata: int = 0
    exceptions_handled: int = 0
    peer_buffer_exceeded: int = 0
    """Times a client went over ``max_peer_buffer`` (unread replies); see ``requests_refused``."""
    auth_failures: int = 0
    """Peers refused by ZAP (key or address not allowed), and messages of connections whose
    CURVE key a reload removed (those connections are then closed)."""
    accept_failures: int = 0
    """Connections ZeroMQ could not accept (usually: out of file descriptors); they wait and
    are accepted once descriptors are free."""
    requests_refused: int = 0
    """Requests not run because their client was over ``max_peer_buffer`` (answered 429 while
    the refusals themselves fit, then dropped)."""

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Service:
    """A named set of handlers, started on an endpoint (NestJS's microservice)."""

    def __init__(
        self,
        name: str,
        *,
        version: str = "0.0.0",
        max_message_size: int = 64 * 1024 * 1024,
        max_concurrency: int | None = None,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        security: CurveServer | None = None,
        event_hwm: int = DEFAULT_EVENT_HWM,
        reply_hwm: int = DEFAULT_REPLY_HWM,
        max_peer_buffer: int = DEFAULT_MAX_PEER_BUFFER,
        insecure: bool = False,
        allow_from: Iterable[str] | None = None,
    ) -> None:
        """``max_concurrency`` caps async handlers running at once (the rest wait in order);
        ``max_message_size`` caps one frame (larger ones disconnect their sender);
        ``heartbeat`` is the ZMTP heartbeat interval in seconds (None: off);
        ``security`` a ``CurveServer`` to require CURVE and an allow-list of client keys;
        ``event_hwm`` the event messages (batches) queued here per emitter before emitters are
        pushed back;
        ``reply_hwm`` the reply messages ZeroMQ queues for one client that is not reading (then
        zmsg's own per-client backlog);
        ``max_peer_buffer`` the bytes of that backlog one client may have: while its unread
        replies exceed it, the client's new requests are refused with a 429 error and not run (clients send them again)
        (see README, "Bounded memory");
        ``insecure=True`` lets the service bind an address other hosts can reach without CURVE
        (refused otherwise, with ``InsecureBindError``);
        ``allow_from`` networks (CIDR text such as ``"10.1.0.0/16"``): without CURVE, only peers
        from these addresses complete a handshake, on both sockets."""
        if not name or not isinstance(name, str):
            raise ValueError("a Service needs a non-empty name")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1 (or None for no cap)")
        if not isinstance(max_peer_buffer, int) or max_peer_buffer < 1:
            raise ValueError("max_peer_buffer must be a positive number of bytes")
        if not isinstance(reply_hwm, int) or reply_hwm < 1:
            raise ValueError("reply_hwm must be at least 1 message")
        self.max_peer_buffer = max_peer_buffer
        self.insecure = insecure
        self._guard: KeyGuard | None = None
        self.allow_from: tuple[str, ...] = parse_networks(allow_from or ())
        self._over_budget: set[bytes] = set()
        self._event_tasks = 0
        self._accept_monitors: list[AcceptMonitor] = []
        self.max_concurrency = max_concurrency
        self.heartbeat = heartbeat
        self.security = security
        self.event_hwm = event_hwm
        self.reply_hwm = reply_hwm
        self._running: dict[tuple[bytes, int], asyncio.Task[Any]] = {}
        self._received_at = 0.0
        self._peer_log = RateLimitedLog(log)
        self._waiting: deque[tuple[bytes, int, Handler, Any, Context | None, float | None]] = deque()
        self._gaps = EventGaps()
        self._streams = Streams(self)
        self.name = name
        self.version = version
        self.max_message_size = max_message_size
        self.stats = ServiceStats()
        self._message_handlers: dict[bytes, Handler] = {}
        self._middleware: list[Middleware] = []
        self._exception_handlers = ExceptionHandlers()
        self._event_handlers: dict[bytes, list[Handler]] = {}
        self._router: RequestRoute | None = None
        self._subscriber: Channel | None = None
        self._endpoint: str | None = None
        self._events_endpoint: str | None = None
        self._pending: dict[bytes, BatchBuilder] = {}
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._draining = False
        self._started_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.instance_id = ""
        """This running instance's id (new at every start): events are addressed to it."""
        self.instances: list[str] = []
        """Request endpoints of every instance this one belongs with (the workers of one
        ``zmsg serve``), told to clients in the hello so they connect to all of them."""
        self.workers: list[dict[str, Any]] | None = None
        """What the supervisor of ``zmsg serve --workers`` reports about its workers."""
        self._builtins: dict[bytes, Callable[[], Any]] = {
            HELLO_PATTERN.encode(): self._hello,
            HEALTH_PATTERN.encode(): self._health,
            INFO_PATTERN.encode(): self._info,
            SCHEMA_PATTERN.encode(): self._schema,
        }

    # -- registration ----------------------------------------------------------------------

    def message_pattern(self, pattern: Pattern, *, use: Sequence[Middleware] | None = None) -> Callable[[F], F]:
        """Register the decorated function as the request-reply handler of ``pattern``.

        ``use`` lists middleware run around this handler only, inside the service-wide ones.
        """
        mark = message_pattern(pattern, use=use)

        def decorate(func: F) -> F:
            self._add(MESSAGE, encode_pattern(pattern), func, use)
            return mark(func)

        return decorate

    def event_pattern(self, pattern: Pattern, *, broadcast: bool = False,
                      use: Sequence[Middleware] | None = None) -> Callable[[F], F]:
        """Register the decorated function as a handler of the event ``pattern``.

        Several instances of a service (workers, hosts) handle each event once, on one of them;
        ``broadcast=True`` runs this handler on every instance instead. ``use`` lists middleware
        run around this handler only, inside the service-wide ones.
        """
        mark = event_pattern(pattern, broadcast=broadcast, use=use)

        def decorate(func: F) -> F:
            self._add(BROADCAST_EVENT if broadcast else EVENT, encode_pattern(pattern), func, use)
            return mark(func)

        return decorate

    def use(self, middleware: Middleware) -> Middleware:
        """Run ``async def middleware(ctx, call_next)`` around every message and event handler.

        Middleware runs outermost first in the order added, around each handler's own
        ``use=[...]``. ``await call_next()`` runs the rest of the chain and returns the
        handler's result; a middleware may transform it, answer without calling ``call_next``,
        or raise (``RpcException`` reaches the caller as it is). Returns ``middleware``.
        """
        if self._router is not None:
            raise RuntimeError("middleware must be added before the service starts")
        self._middleware.append(check_middleware(middleware))
        return middleware

    def exception_handler(self, exc_type: type[BaseException]) -> Callable[[E], E]:
        """Register ``def handler(exc, ctx) -> dict | str`` (sync or async) for ``exc_type``.

        Its return value is the error object the caller's ``RpcException`` carries; for events
        it is only logged. The most specific registered class in the exception's MRO wins, for
        exceptions raised by handlers and by middleware alike (``RpcException`` too, when a
        handler for it or one of its bases is registered; re-raise it to keep it as it is).
        Without a match, today's rules apply.
        """
        if self._router is not None:
            raise RuntimeError("exception handlers must be registered before the service starts")

        def decorate(func: E) -> E:
            self._exception_handlers.add(exc_type, func)
            return func

        return decorate

    def include(self, controller: object) -> object:
        """Register every method of ``controller`` marked with ``zmsg.message_pattern`` / ``event_pattern``."""
        found = 0
        for attr in dir(type(controller)):
            member = getattr(type(controller), attr, None)
            routes = getattr(member, ROUTES_ATTR, None)
            if not routes:
                continue
            bound = getattr(controller, attr)
            for role, route, use in routes:
                self._add(role, route, bound, use)
                found += 1
        if not found:
            raise ValueError(f"{type(controller).__name__} has no @message_pattern or @event_pattern methods")
        return controller

    def _add(self, role: str, route: bytes, func: Callable[..., Any], use: Sequence[Middleware] | None = None) -> None:
        if self._router is not None:
            raise RuntimeError("handlers must be registered before the service starts")
        if route.decode("utf-8", "replace").startswith(RESERVED_PREFIX):
            raise ValueError(f"patterns starting with {RESERVED_PREFIX!r} are reserved for zmsg itself")
        handler = bind_handler(func, use)
        if role == MESSAGE:
            existing = self._message_handlers.get(route)
            if existing is not None and existing.func != func:
                raise ValueError(
                    f"pattern {pattern_repr(route)!r} already has a message handler ({existing.name}); "
                    "a message pattern has exactly one responder"
                )
            self._message_handlers[route] = handler
        else:
            handler.broadcast = role == BROADCAST_EVENT
            self._event_handlers.setdefault(route, []).append(handler)

    def _bind_pipeline(self) -> None:
        """Wrap, once, each handler that middleware applies to; leave the others as they are."""
        service_wide = tuple(self._middleware)
        with_context = bool(self._exception_handlers)

        def bound(handler: Handler) -> Handler:
            if isinstance(handler, ChainedHandler):  # started before: rebuild from the plain one
                assert handler.inner is not None
                handler = handler.inner
            handler.wants_context = handler.context_param is not None or with_context
            chain = service_wide + handler.use
            return ChainedHandler.around(handler, chain) if chain else handler

        for route, handler in self._message_handlers.items():
            self._message_handlers[route] = bound(handler)
        for handlers in self._event_handlers.values():
            handlers[:] = [bound(handler) for handler in handlers]

    @property
    def message_patterns(self) -> list[str]:
        return sorted(pattern_repr(p) for p in self._message_handlers)

    @property
    def event_patterns(self) -> list[str]:
        return sorted(pattern_repr(p) for p in self._event_handlers)

    @property
    def broadcast_patterns(self) -> list[str]:
        """Event patterns with a ``broadcast=True`` handler: every instance gets a copy of these."""
        return sorted(pattern_repr(p) for p, hs in self._event_handlers.items() if any(h.broadcast for h in hs))

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The request endpoint actually bound, in the form a client should connect to."""
        if self._endpoint is None:
            raise RuntimeError(f"service {self.name!r} is not started")
        return self._endpoint

    @property
    def events_endpoint(self) -> str:
        if self._events_endpoint is None:
            raise RuntimeError(f"service {self.name!r} is not started")
        return self._events_endpoint

    @property
    def running(self) -> bool:
        return self._router is not None

    @property
    def uptime(self) -> float:
        return time.monotonic() - self._started_at if self.running else 0.0

    async def start(self, endpoint: str = "tcp://127.0.0.1:0", *, events_endpoint: str | None = None,
                    listen_fd: int | None = None) -> str:
        """Bind and start serving; returns the bound endpoint (port 0 picks a free port).

        ``listen_fd``: a TCP socket already listening on ``endpoint`` (given by a supervisor) to
        accept on instead of binding a new one.
        """
        if self._router is not None:
            raise RuntimeError(f"service {self.name!r} is already started")
        events_endpoint = events_endpoint or events_bind_endpoint(endpoint)
        for address in (endpoint, events_endpoint):
            self._check_exposure(address)
        self._loop = asyncio.get_running_loop()
        # libzmq checks MAXMSGSIZE per frame; large bodies travel as their own frames.
        frame_limit = self.max_message_size + 64 * 1024 if self.max_message_size > 0 else -1
        guarded = self.security is not None or bool(self.allow_from)
        if guarded:
            apply_policy(self._zap_domain, self._policy())
        options: dict[str, Any] = {"max_message_size": frame_limit, "heartbeat": self.heartbeat,
                                   "security": self.security, "zap_domain": self._zap_domain if guarded else ""}
        self.instance_id = secrets.token_hex(8)
        try:
            router_sock, bound = bind_router(endpoint, **options, send_hwm=self.reply_hwm, listen_fd=listen_fd)
        except BaseException:
            release_policy(self._zap_domain)
            raise
        try:
            # Events for every instance start with the batch's version byte; events for this
            # instance alone come after its topic frame (docs/protocol.md, "Instances").
            sub_sock, events_bound = bind_subscriber(events_endpoint, **options, hwm=self.event_hwm,
                                                     subscriptions=(BROADCAST_TOPIC, instance_topic(self.instance_id)))
        except BaseException:
            router_sock.close(linger=0)
            release_policy(self._zap_domain)
            raise
        # Frames after the identity and the batch are external bodies (>= EXTERNAL_BODY_THRESHOLD):
        # they are decoded straight from ZeroMQ's buffers instead of being copied first.
        router = Channel(router_sock, self._on_request_message, name=f"{self.name}/router", copy_frames=2)
        subscriber = Channel(sub_sock, self._on_event_message, name=f"{self.name}/events", copy_frames=1)
        self._attach(router, subscriber, bound, events_bound)
        self._accept_monitors = [AcceptMonitor(sock, self._accept_failed, name=channel.name)
                                 for sock, channel in ((router_sock, router), (sub_sock, subscriber))]
        log.info("service %s listening on %s (events on %s)", self.name, bound, events_bound)
        return bound

    def _attach(self, router: RequestRoute, subscriber: Channel | None, endpoint: str, events_endpoint: str) -> None:
        """Start serving on ``router`` (the one start-up path, sockets or zmsg.testing's memory)."""
        if self._router is not None:
            raise RuntimeError(f"service {self.name!r} is already started")
        self._loop = asyncio.get_running_loop()
        self._bind_pipeline()  # middleware and exception handlers, for sockets and memory alike
        self._router, self._subscriber = router, subscriber
        # Replies of sync handlers are flushed once the reader has drained its socket.
        router.on_idle = self._flush_replies
        self._endpoint, self._events_endpoint = endpoint, events_endpoint
        self._draining = self._streams.draining = False
        self._started_at = time.monotonic()

    def _check_exposure(self, endpoint: str) -> None:
        """Secure by default: an address other hosts can reach needs CURVE, an allow_from list,
        or an explicit ``insecure=True``."""
        if self.security is not None or self.insecure or self.allow_from or is_local_endpoint(endpoint):
            return
        raise InsecureBindError(
            f"refusing to bind {endpoint} without CURVE: other hosts could call every pattern; "
            "turn CURVE on (--curve-secret-key and --curve-allow) or accept it with --insecure "
            "(Service(insecure=True), ZMSG_SERVE_INSECURE=1, insecure = true in [serve] of zmsg.toml)"
        )

    def _policy(self) -> AccessPolicy:
        loop = self._loop

        def refused(address: str, reason: str) -> None:  # on the ZAP thread
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._auth_refused, address, reason)

        return AccessPolicy.create(self.allow_from, self.security, on_refused=refused)

    def _accept_failed(self, error: int) -> None:
        self.stats.accept_failures += 1
        reason = too_many_files_message() if error in (errno.EMFILE, errno.ENFILE) else os.strerror(error)
        self._peer_log.warning("%s: cannot accept a connection: %s", self.name, reason)

    def _auth_refused(self, address: str, reason: str) -> None:
        self.stats.auth_failures += 1
        self._peer_log.warning("%s: refused a connection from %s: %s", self.name, address, reason)

    def _key_revoked(self, key: str) -> None:
        self.stats.auth_failures += 1
        self._peer_log.warning("%s: closed the connection of client key %s: no longer allowed", self.name, key)

    def reload_security(self) -> dict[str, int]:
        """Read the CURVE allow-list again from its files/directories (``SIGHUP`` in ``zmsg serve``).

        New handshakes use the new list at once. A connection whose key was removed is closed
        at its next request or event (which is discarded and counted in ``auth_failures``); its
        client's reconnect is then refused. If the list cannot be read, nothing changes and
        ``SecurityError`` says why. Returns the number of keys allowed, added and removed.
        """
        if self.security is None:
            raise SecurityError(f"service {self.name!r} has no CURVE allow-list to reload")
        old = self.security
        new = old.reloaded()
        added, removed = new.allowed_clients - old.allowed_clients, old.allowed_clients - new.allowed_clients
        self.security = new
        if self.running:
            apply_policy(self._zap_domain, self._policy())
            if removed or self._guard is not None:
                if self._guard is None:
                    self._guard = KeyGuard(new.allowed_clients, self._key_revoked)
                self._guard.allowed = new.allowed_clients
                for channel in (self._router, self._subscriber):
                    if channel is not None:
                        channel.inspect = self._guard
        log.info("%s: CURVE allow-list reloaded: %d key(s) allowed, %d added, %d removed",
                 self.name, len(new.allowed_clients), len(added), len(removed))
        return {"allowed": len(new.allowed_clients), "added": len(added), "removed": len(removed)}

    @property
    def _zap_domain(self) -> str:
        return f"zmsg.{self.name}.{id(self):x}"

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking new work, let in-flight handlers finish (up to ``grace`` s), then close."""
        if self._router is None:
            return
        self._draining = True
        self._streams.drain()
        for monitor in self._accept_monitors:
            monitor.close()
        self._accept_monitors = []
        if self._subscriber is not None:
            # Events already received by ZeroMQ are handled, not thrown away with the socket.
            self._subscriber.resume()
            self._subscriber.drain()
            self._subscriber.close(linger_ms=0)
            self._subscriber = None
        if self._tasks:
            done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self._flush_replies()
        router, self._router = self._router, None
        router.close(linger_ms=1000 if router.queued == 0 else 2000)
        self._pending.clear()
        self._running.clear()
        self._waiting.clear()
        release_policy(self._zap_domain)
        self._guard = None
        self._endpoint = self._events_endpoint = None
        log.info("service %s stopped", self.name)

    def _reload_signals(self) -> dict[int, Callable[[], None]]:
        """SIGHUP re-reads the CURVE allow-list (when there is one)."""
        if self.security is None or not hasattr(signal, "SIGHUP"):
            return {}

        def on_hangup() -> None:
            try:
                self.reload_security()
            except SecurityError as exc:
                log.error("%s: SIGHUP: allow-list not reloaded, the previous one stays: %s", self.name, exc)

        return {signal.SIGHUP: on_hangup}

    async def serve(self, endpoint: str = "tcp://127.0.0.1:0", *, events_endpoint: str | None = None,
                    on_ready: Callable[[str], None] | None = None, grace: float = 5.0,
                    listen_fd: int | None = None, signals: ShutdownSignals | None = None) -> None:
        """Start, run until SIGINT/SIGTERM (or cancellation, or ``signals.stop()``), then stop
        gracefully; a second signal during the drain exits at once (``zmsg.ShutdownSignals``).
        ``listen_fd``: see ``start``."""
        await self.start(endpoint, events_endpoint=events_endpoint, listen_fd=listen_fd)
        async with signals if signals is not None else ShutdownSignals(self._reload_signals()) as signals:
            try:
                if on_ready is not None:
                    on_ready(self.endpoint)
                await signals.wait()
            finally:
                await self.stop(grace=grace)

    def run(self, endpoint: str = "tcp://127.0.0.1:0", *, events_endpoint: str | None = None,
            use_uvloop: bool = True, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in the foreground (blocking) on uvloop when installed, until SIGINT/SIGTERM."""
        run(self.serve(endpoint, events_endpoint=events_endpoint, on_ready=on_ready), use_uvloop=use_uvloop)

    # -- requests --------------------------------------------------------------------------

    def _on_request_message(self, frames: list[bytes]) -> None:
        """Handle one request message. Its replies are flushed right after it (the reader's
        ``on_idle``), not held for the whole drain: they are already one batch, and the caller
        works on them while the next message is read (holding them measured lower on W2 in 5 of
        6 paired runs, and costs a lone request one more ZMQ_EVENTS read)."""
        identity = frames[0]
        self._received_at = time.monotonic()
        try:
            records = parse_frames(frames, 1)
        except FrameError as exc:
            self.stats.malformed_messages += 1
            self._peer_log.warning("%s: rejected malformed message from %s: %s", self.name, identity.hex(), exc)
            records = exc.records
            if exc.correlation_id:
                self._reply_error(identity, exc.correlation_id, error_object(400, f"Malformed message: {exc}"))
        for kind, flags, cid, ttl_ms, pattern, body in records:
            if kind == KIND_REQUEST:
                if flags & FLAG_METADATA:
                    self._dispatch_request_with_metadata(identity, cid, ttl_ms, pattern, body, flags & FLAG_STREAM != 0)
                else:
                    self._dispatch_request(identity, cid, ttl_ms, pattern, body, EMPTY_METADATA, flags & FLAG_STREAM != 0)
            elif kind == KIND_CANCEL:
                self._cancel(identity, cid)
            elif kind == KIND_CREDIT:
                self._credit(identity, cid, body)
            elif kind == KIND_EVENT:
                if flags & FLAG_METADATA:
                    self._dispatch_event_with_metadata(pattern, body, cid, ttl_ms)
                else:
                    self._dispatch_event(pattern, body, cid, ttl_ms)
            else:
                self.stats.unsupported_kinds += 1
                name = KIND_NAMES.get(kind, "unknown")
                self._peer_log.warning("%s: unsupported record kind %d (%s) from %s", self.name, kind, name, identity.hex())
                if cid:
                    self._reply_error(identity, cid, error_object(400, f"Unsupported record kind {kind} ({name})"))

    def _dispatch_request_with_metadata(self, identity: bytes, cid: int, ttl_ms: int, pattern: bytes,
                                        body: bytes, stream: bool = False) -> None:
        try:
            metadata, payload = decode_metadata(body)
        except FrameError as exc:
            self.stats.requests += 1
            self.stats.malformed_metadata += 1
            self._peer_log.warning("%s: rejected request %d from %s: malformed metadata: %s",
                                   self.name, cid, identity.hex(), exc)
            self._reply_error(identity, cid, error_object(400, f"Malformed metadata: {exc}"))
            return
        self._dispatch_request(identity, cid, ttl_ms, pattern, payload,  # type: ignore[arg-type]
                               MappingProxyType(metadata) if metadata else EMPTY_METADATA, stream)

    def _dispatch_request(self, identity: bytes, cid: int, ttl_ms: int, pattern: bytes, body: bytes,
                          metadata: Mapping[str, str] = EMPTY_METADATA, stream: bool = False) -> None:
        """Run the handler of one request; ``stream``: the caller reads a stream (FLAG_STREAM)."""
        self.stats.requests += 1
        slow_down = 0
        if self._router is not None:
            backlog = self._router.backlog_bytes(identity)
            if backlog > self.max_peer_buffer:
                self._refuse_over_budget(identity, cid)
                return
            slow_down = _slow_down(backlog, self.max_peer_buffer)
        if self._over_budget:
            self._over_budget.discard(identity)
        handler = self._message_handlers.get(pattern)
        if handler is None:
            builtin = self._builtins.get(pattern)
            if builtin is not None:
                self._reply(identity, cid, builtin(), slow_down)
                return
            self.stats.unknown_patterns += 1
            self._reply_error(
                identity, cid,
                error_object(404, f"No message handler for pattern {pattern_repr(pattern)!r} in service {self.name!r}"),
            )
            return
        if self._draining:
            self._reply_error(identity, cid, error_object(503, f"Service {self.name!r} is shutting down"))
            return
        if handler.is_stream and not stream:
            # A plain request cannot carry a stream back (the reverse is fine: one reply ends it).
            self.stats.stream_mismatches += 1
            self._reply_error(identity, cid, error_object(
                400, f"Pattern {pattern_repr(pattern)!r} streams its replies: call it with stream(), not send()"))
            return
        decoder = handler.decoder
        try:
            payload = codec.decode_with(decoder, body) if decoder is not None else None
        except PayloadError as exc:
            self.stats.invalid_payloads += 1
            self._reply_error(identity, cid, error_object(400, str(exc)))
            return
        deadline = self._received_at + ttl_ms / 1000 if ttl_ms else None
        ctx = None
        if handler.wants_context:
            ctx = Context(pattern_repr(pattern), cid, identity.hex(), self.name,
                          "stream" if handler.is_stream else "request", deadline, metadata, payload)
        if handler.is_stream:
            self._start_stream(identity, cid, handler, payload, ctx, deadline)
            return
        if handler.is_async and self.max_concurrency is not None and len(self._running) >= self.max_concurrency:
            self.stats.queued += 1
            self._waiting.append((identity, cid, handler, payload, ctx, deadline))
            return
        self._run_handler(identity, cid, handler, payload, ctx, deadline, slow_down)

    def _refuse_over_budget(self, identity: bytes, cid: int) -> None:
        """The client's replies are piling up: run nothing more for it until they are sent.

        Each refused request is answered with a 429 refusal marked ``not_run``, queued behind the
        replies, so a client that reads gets it after them and sends the request again (both zmsg
        clients do); that holds while those errors fit in an allowance;
        past it, refused requests get no answer, so the memory held for the client stays
        within ``max_peer_buffer`` plus the replies of requests it had running plus the allowance.
        """
        assert self._router is not None
        self.stats.requests_refused += 1
        backlog = self._router.backlog_bytes(identity)
        if identity not in self._over_budget:
            if len(self._over_budget) >= 1024:  # forget clients that caught up (or left)
                self._over_budget = {p for p in self._over_budget if self._router.backlog_bytes(p) > 0}
            self._over_budget.add(identity)
            self.stats.peer_buffer_exceeded += 1
            self._peer_log.warning(
                "%s: client %s has %d bytes of unread replies (max_peer_buffer %d): refusing its requests "
                "until it reads them", self.name, identity.hex(), backlog, self.max_peer_buffer)
        if backlog <= self.max_peer_buffer + _REFUSAL_ALLOWANCE:
            self._reply_error(identity, cid, refusal_object(
                429, f"Too many unread replies: this client has {backlog} bytes of replies it has not read "
                     f"(max_peer_buffer {self.max_peer_buffer})"))

    def _run_handler(self, identity: bytes, cid: int, handler: Handler, payload: Any, ctx: Context | None,
                     deadline: float | None, slow_down: int = 0) -> None:
        if deadline is not None and time.monotonic() > deadline:
            # The caller has already given up (RequestTimeout): running it would be wasted work.
            self.stats.deadline_expired += 1
            return
        try:
            result = handler.call(payload, ctx)
        except Exception as exc:
            self._handler_failed(identity, cid, handler, exc, ctx)
            return
        if handler.is_async:
            task = asyncio.ensure_future(result)
            key = (identity, cid)
            self._tasks.add(task)
            self._running[key] = task
            task.add_done_callback(lambda t: self._async_done(t, key, handler, ctx))
        else:
            self._reply(identity, cid, result, slow_down)

    def _cancel(self, identity: bytes, cid: int) -> None:
        """The caller gave up on a request: cancel its handler if it is still running or waiting."""
        if self._streams.cancel(identity, cid):
            self.stats.cancelled += 1
            return
        task = self._running.pop((identity, cid), None)
        if task is not None:
            self.stats.cancelled += 1
            task.cancel()
            return
        for index, waiting in enumerate(self._waiting):
            if waiting[0] == identity and waiting[1] == cid:
                del self._waiting[index]
                self.stats.cancelled += 1
                return

    def _async_done(self, task: asyncio.Task[Any], key: tuple[bytes, int], handler: Handler,
                    ctx: Context | None) -> None:
        self._tasks.discard(task)
        identity, cid = key
        cancelled_by_caller = self._running.pop(key, None) is None
        if task.cancelled():
            if not cancelled_by_caller:  # cancelled here (shutdown): tell the caller
                self._reply_error(identity, cid, error_object(503, "Request cancelled by the service"))
        elif (exc := task.exception()) is not None:
            self._handler_failed(identity, cid, handler, exc, ctx)
        elif not cancelled_by_caller:
            self._reply(identity, cid, task.result(), self._slow_down_flag(identity))
        self._start_waiting()
        self._schedule_flush()

    def _start_waiting(self) -> None:
        waiting = self._waiting
        limit = self.max_concurrency
        while waiting and (limit is None or len(self._running) < limit):
            self._run_handler(*waiting.popleft())

    def _handler_failed(self, identity: bytes, cid: int, handler: Handler, exc: BaseException,
                        ctx: Context | None = None) -> None:
        if self._exception_handlers and self._handle_exception(identity, cid, handler, exc, ctx):
            return
        if isinstance(exc, RpcException):
            self._reply_error(identity, cid, exc.error)
            return
        self.stats.handler_errors += 1
        log.error("%s: handler %s failed", self.name, handler.name, exc_info=exc,
                  extra=call_extra(ctx.pattern if ctx is not None else handler.name, cid, exc))
        self._reply_error(identity, cid, INTERNAL_ERROR)

    def _handle_exception(self, identity: bytes, cid: int, handler: Handler, exc: BaseException,
                          ctx: Context | None) -> bool:
        """Answer ``exc`` with its exception handler's error object; False when none matches."""
        try:
            outcome = self._exception_handlers.handle(exc, ctx)
        except Exception as failure:
            self._exception_handler_failed(identity, cid, handler, exc, failure)
            return True
        if outcome is NO_MATCH:
            return False
        if inspect.isawaitable(outcome):
            task = asyncio.ensure_future(outcome)
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._exception_handled(t, identity, cid, handler, exc))
            return True
        self.stats.exceptions_handled += 1
        self._reply_error(identity, cid, outcome)
        return True

    def _exception_handled(self, task: asyncio.Task[Any], identity: bytes, cid: int, handler: Handler,
                           exc: BaseException) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self._reply_error(identity, cid, error_object(503, "Request cancelled by the service"))
        elif (failure := task.exception()) is not None:
            self._exception_handler_failed(identity, cid, handler, exc, failure)
        else:
            self.stats.exceptions_handled += 1
            self._reply_error(identity, cid, task.result())
        self._schedule_flush()

    def _exception_handler_failed(self, identity: bytes, cid: int, handler: Handler, exc: BaseException,
                                  failure: BaseException) -> None:
        self.stats.handler_errors += 1
        log.error("%s: the exception handler for %s raised by %s failed", self.name, type(exc).__name__,
                  handler.name, exc_info=failure)
        self._reply_error(identity, cid, INTERNAL_ERROR)

    # -- streams ---------------------------------------------------------------------------

    def _start_stream(self, identity: bytes, cid: int, handler: Handler, payload: Any, ctx: Context | None,
                      deadline: float | None) -> None:
        if deadline is not None and time.monotonic() > deadline:
            self.stats.deadline_expired += 1
            return
        try:
            self._streams.start(identity, cid, handler, partial(handler.call, payload, ctx), ctx)
        except ZmsgError as exc:
            self._reply_error(identity, cid, error_object(400, str(exc)))
            return
        self.stats.streams += 1

    def _credit(self, identity: bytes, cid: int, body: bytes) -> None:
        error = self._streams.credit(identity, cid, body)
        self.stats.stale_credits = self._streams.stale_credits
        self.stats.malformed_credits = self._streams.malformed_credits
        if error is not None:
            self._peer_log.warning("%s: stream %d from %s: %s", self.name, cid, identity.hex(), error)
            self._reply_error(identity, cid, error_object(400, error))

    def _track_task(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stream_item(self, identity: bytes, cid: int, seq: int, value: Any) -> None:
        """Item ``seq`` (1, 2, ...) of a running stream joins its caller's batch (TypeError: not
        encodable). The sequence rides in the ttl field so a client detects a lost item."""
        body = codec.encode(value)
        self.stats.stream_items += 1
        batch = self._pending.get(identity)
        if batch is None:
            batch = self._pending[identity] = BatchBuilder()
        batch.add(KIND_STREAM_ITEM, 0, cid, seq & 0xFFFFFFFF, b"", body)
        if (batch.count >= STREAM_FLUSH_AT or batch.external_bytes >= FLUSH_EXTERNAL_BYTES) and self._router is not None:
            del self._pending[identity]
            self._send_replies(self._router, identity, batch)
        elif not self._flush_scheduled:
            self._schedule_flush()

    def _stream_backlogged(self, identity: bytes) -> bool:
        router = self._router
        return router is not None and router.backlog_bytes(identity) > 0

    def _stream_end(self, identity: bytes, cid: int) -> None:
        self._batch_for(identity).add(KIND_STREAM_END, 0, cid, 0, b"", b"")
        self._schedule_flush()

    def _stream_failed(self, identity: bytes, cid: int, handler: Any, exc: BaseException, ctx: Any) -> None:
        self._handler_failed(identity, cid, handler, exc, ctx)  # exception handlers apply
        self._schedule_flush()

    def _stream_stopped_here(self, identity: bytes, cid: int) -> None:
        self._reply_error(identity, cid, error_object(503, "Stream cancelled by the service"))
        self._schedule_flush()

    def _slow_down_flag(self, identity: bytes) -> int:
        return 0 if self._router is None else _slow_down(self._router.backlog_bytes(identity), self.max_peer_buffer)

    def _reply(self, identity: bytes, cid: int, result: Any, flags: int = 0) -> None:
        """Queue the reply; ``flags``: FLAG_SLOW_DOWN or 0 (see ``_slow_down``)."""
        try:
            body = codec.encode(result)
        except TypeError as exc:
            self.stats.handler_errors += 1
            log.error("%s: reply to request %d is not encodable: %s", self.name, cid, exc)
            self._reply_error(identity, cid, INTERNAL_ERROR)
            return
        self.stats.replies += 1
        batch = self._batch_for(identity)
        batch.add(KIND_REPLY, flags, cid, 0, b"", body)
        if batch.external_bytes >= FLUSH_EXTERNAL_BYTES and self._router is not None:
            # Large replies go at once rather than wait for the drain: pipelining beats batching.
            del self._pending[identity]
            self._send_replies(self._router, identity, batch)

    def _reply_error(self, identity: bytes, cid: int, error: Any) -> None:
        self.stats.errors_sent += 1
        self._batch_for(identity).add(KIND_ERROR, 0, cid, 0, b"", codec.encode(error))

    def _batch_for(self, identity: bytes) -> BatchBuilder:
        batch = self._pending.get(identity)
        if batch is None:
            batch = self._pending[identity] = BatchBuilder()
        return batch

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_replies)

    def _flush_replies(self) -> None:
        self._flush_scheduled = False
        if not self._pending or self._router is None:
            return
        pending, self._pending = self._pending, {}
        router = self._router
        for identity, batch in pending.items():
            self._send_replies(router, identity, batch)

    def _send_replies(self, router: RequestRoute, identity: bytes, batch: BatchBuilder) -> None:
        frames = batch.take()
        frames.insert(0, identity)
        router.send_to(identity, frames)
        # Channel counts what it could not deliver (peer gone, or not reading for too long).
        if router.unroutable != self.stats.unroutable_replies and self._streams:
            self._streams.cancel_peer(identity)  # that caller is gone: nobody reads its streams
        self.stats.unroutable_replies = router.unroutable
        self.stats.dropped_replies = router.dropped

    # -- events ----------------------------------------------------------------------------

    def _on_event_message(self, frames: list[bytes]) -> None:
        try:
            # A topic frame (0x00 + our instance id) may come first; ZeroMQ filtered on it.
            records = parse_frames(frames, event_batch_start(frames))
        except FrameError as exc:
            self.stats.malformed_messages += 1
            self._peer_log.warning("%s: rejected malformed event message: %s", self.name, exc)
            records = exc.records
        for kind, flags, seq, emitter, pattern, body in records:
            if kind == KIND_EVENT:
                if flags & FLAG_METADATA:
                    self._dispatch_event_with_metadata(pattern, body, seq, emitter, flags)
                else:
                    self._dispatch_event(pattern, body, seq, emitter, flags=flags)
            else:
                self.stats.unsupported_kinds += 1
                self._peer_log.warning("%s: unexpected record kind %d on the event socket", self.name, kind)

    def _dispatch_event_with_metadata(self, pattern: bytes, body: bytes, seq: int, emitter: int,
                                      flags: int = 0) -> None:
        try:
            metadata, payload = decode_metadata(body)
        except FrameError as exc:
            self.stats.events += 1
            self.stats.malformed_metadata += 1
            if emitter:
                self._track_sequence(emitter, seq)
            self._peer_log.warning("%s: dropped event %r: malformed metadata: %s", self.name, pattern_repr(pattern), exc)
            return
        self._dispatch_event(pattern, payload, seq, emitter,  # type: ignore[arg-type]
                             MappingProxyType(metadata) if metadata else EMPTY_METADATA, flags)

    def _dispatch_event(self, pattern: bytes, body: bytes, seq: int = 0, emitter: int = 0,
                        metadata: Mapping[str, str] = EMPTY_METADATA, flags: int = 0) -> None:
        self.stats.events += 1
        if emitter:
            self._track_sequence(emitter, seq)
        handlers = self._event_handlers.get(pattern)
        if not handlers:
            return  # events nobody here subscribes to are normal: fire-and-forget
        broadcast_only = flags & FLAG_BROADCAST_ONLY
        for handler in handlers:
            if broadcast_only and not handler.broadcast:
                continue  # another instance was chosen to run this handler
            ctx = None
            try:
                payload = codec.decode_with(handler.decoder, body) if handler.decoder is not None else None
                if handler.wants_context:
                    ctx = Context(pattern_repr(pattern), seq, f"{emitter:08x}" if emitter else "", self.name, "event",
                                  None, metadata, payload)
                result = handler.call(payload, ctx)
            except Exception as exc:
                self._event_failed(pattern, handler, exc, ctx)
                continue
            if handler.is_async:
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                self._event_tasks += 1
                if self._event_tasks >= self._event_task_limit and self._subscriber is not None:
                    self._subscriber.pause()  # bounded: further events wait in ZeroMQ, then at the emitters
                task.add_done_callback(lambda t, h=handler, c=ctx: self._event_done(t, pattern, h, c))

    @property
    def event_sequences(self) -> dict[int, int]:
        """The last event sequence seen per emitter id (persist it to detect loss across restarts)."""
        return dict(self._gaps.last)

    @property
    def event_gaps(self) -> dict[int, int]:
        """Events missed per emitter id, from gaps in their sequence numbers."""
        return self._gaps.missed_by_emitter

    def restore_event_sequences(self, sequences: dict[int, int]) -> None:
        """Seed the per-emitter sequence tracker, e.g. from what a previous process persisted."""
        self._gaps.restore(sequences)

    def _track_sequence(self, emitter: int, seq: int) -> None:
        """Count events missed from one emitter: PUB/SUB is at-most-once, loss must not be silent."""
        seen = self._gaps.observe(emitter, seq)
        if seen is IN_ORDER:
            return
        self.stats.events_missed = self._gaps.missed
        self.stats.events_out_of_order = self._gaps.out_of_order
        if seen.missed:
            self._peer_log.warning("%s: missed %d event(s) from emitter %08x (sequence %d -> %d)",
                                   self.name, seen.missed, emitter, seen.previous, seq)

    @property
    def _event_task_limit(self) -> int:
        return min(MAX_EVENT_TASKS, self.max_concurrency or MAX_EVENT_TASKS)

    def _event_done(self, task: asyncio.Task[Any], pattern: bytes, handler: Handler, ctx: Context | None) -> None:
        self._tasks.discard(task)
        self._event_tasks -= 1
        subscriber = self._subscriber
        if subscriber is not None and subscriber.paused and self._event_tasks <= self._event_task_limit // 2:
            subscriber.resume()
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._event_failed(pattern, handler, exc, ctx)

    def _event_failed(self, pattern: bytes, handler: Handler, exc: BaseException, ctx: Context | None = None) -> None:
        self.stats.event_handler_errors += 1
        if self._exception_handlers and not isinstance(exc, PayloadError):
            try:
                outcome = self._exception_handlers.handle(exc, ctx)
            except Exception as failure:
                log.error("%s: the exception handler for %s raised by event handler %s failed", self.name,
                          type(exc).__name__, handler.name, exc_info=failure)
                return
            if outcome is not NO_MATCH:
                if inspect.isawaitable(outcome):
                    task = asyncio.ensure_future(outcome)
                    self._tasks.add(task)
                    task.add_done_callback(lambda t: self._event_exception_handled(t, pattern, handler, exc))
                else:
                    self._log_handled_event(pattern, handler, exc, outcome)
                return
        if isinstance(exc, (PayloadError, ZmsgError)):
            self._peer_log.warning("%s: event %r rejected by %s: %s", self.name, pattern_repr(pattern), handler.name, exc)
        else:
            log.error("%s: event handler %s failed on %r", self.name, handler.name, pattern_repr(pattern), exc_info=exc,
                      extra=call_extra(pattern_repr(pattern), ctx.correlation_id if ctx is not None else 0, exc))

    def _event_exception_handled(self, task: asyncio.Task[Any], pattern: bytes, handler: Handler,
                                 exc: BaseException) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        if (failure := task.exception()) is not None:
            log.error("%s: the exception handler for %s raised by event handler %s failed", self.name,
                      type(exc).__name__, handler.name, exc_info=failure)
        else:
            self._log_handled_event(pattern, handler, exc, task.result())

    def _log_handled_event(self, pattern: bytes, handler: Handler, exc: BaseException, error: Any) -> None:
        # Events have no caller to answer: the mapped error object is only logged.
        self.stats.exceptions_handled += 1
        self._peer_log.warning("%s: event %r: %s raised %s, handled as %r", self.name, pattern_repr(pattern),
                               handler.name, type(exc).__name__, error)

    # -- built-in patterns -----------------------------------------------------------------

    def _hello(self) -> dict[str, Any]:
        hello = {"service": self.name, "version": self.version, "protocol": VERSION, "events": self._events_endpoint,
                 "max_message_size": self.max_message_size, "instance": self.instance_id,
                 "broadcast": self.broadcast_patterns}
        if self.instances:
            hello["instances"] = list(self.instances)
        return hello

    def _health(self) -> dict[str, Any]:
        # Answered while draining too, so an orchestrator sees "draining" rather than silence.
        return {"status": "draining" if self._draining else "serving", "service": self.name}

    def _schema(self) -> dict[str, Any]:
        from zmsg.contract import service_document  # built on demand: no cost unless asked

        return service_document(self)

    def _info(self) -> dict[str, Any]:
        return {
            "service": self.name,
            "version": self.version,
            "zmsg": _zmsg_version,
            "protocol": VERSION,
            "framing": FRAMING_IMPLEMENTATION,
            "status": "draining" if self._draining else "serving",
            "endpoint": self._endpoint,
            "events": self._events_endpoint,
            "message_patterns": self.message_patterns,
            "event_patterns": self.event_patterns,
            "broadcast_patterns": self.broadcast_patterns,
            "instance": self.instance_id,
            "instances": list(self.instances) or [self._endpoint],
            "workers": self.workers,
            "uptime": round(self.uptime, 3),
            "in_flight": len(self._tasks),
            "max_peer_buffer": self.max_peer_buffer,
            "reply_hwm": self.reply_hwm,
            "reply_backlog_bytes": self._router.backlogged_bytes if self._router is not None else 0,
            "stats": self.stats.as_dict(),
        }



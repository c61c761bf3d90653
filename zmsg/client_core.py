"""Sans-io client core: every rule ``ClientProxy`` and ``SyncClientProxy`` share, in one place.

Theory of operation: a client is a *driver* (the asyncio one pipelines batches on the event
loop, the blocking one waits on its own socket) around the rules here, which never touch a
socket, an event loop or a clock. They are:

- the options every client takes, declared once (``ClientOptions``: type, default, constraint),
  which ``zmsg.config.ClientSettings`` extends for ``zmsg.toml`` and ``ZMSG_*`` variables;
- what one call may ask (``call_timeout``, ``retry_attempts``, ``retry_delay``), the request
  ttl carried on the wire (``request_ttl_ms``) and the size limit (``check_size``); re-sending,
  within the call's timeout, a request the service refused without running (``resend_after``),
  and how many requests to keep out while a service refuses them (``SendWindow``);
- reading a reply message (``read_replies``) and one reply or error record into a value or the
  exception it stands for (``reply_value``), straight into a ``response_type`` when asked
  (``reply_decoder``: one typed decoder per type, built once);
- metadata: the proxy's defaults merged under a call's (``merge_metadata``) and the record's
  flag and body (``with_metadata``); the ``Call`` that client middleware sees;
- the ``$zmsg.hello`` handshake: the request, reading and checking the answer (``read_hello``,
  ``check_one_service``), and what it changes (the service's own size limit);
- stamping events with the emitter's id and sequence (``EventStamper``), and, with several
  instances of the service, which instance takes each event (``EventRouter``) and which
  endpoints a hello adds (``instance_endpoints``);
- a peer's connection state (``PeerLink``: named states, the error a transition implies) and
  which peer takes the next request (``pick_peer``).

Unit tests drive all of it with plain values and bytes (tests/unit/test_client_core.py).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from zmsg import codec
from zmsg.defaults import (
    DEFAULT_FLUSH_AT,
    DEFAULT_HEARTBEAT,
    DEFAULT_HWM,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_STREAM_WINDOW,
    DEFAULT_TIMEOUT,
)
from zmsg.endpoints import events_connect_endpoint, native_endpoint, validate_endpoint
from zmsg.errors import (
    AuthenticationFailed,
    FrameError,
    ProtocolError,
    ReplyValidationError,
    RequestTimeout,
    RpcException,
    ServiceUnavailable,
    ZmsgError,
)
from zmsg.protocol import (
    FLAG_BROADCAST_ONLY,
    FLAG_METADATA,
    FLUSH_EXTERNAL_BYTES,
    HELLO_PATTERN,
    INSTANCE_ID_LEN,
    KIND_ERROR,
    KIND_EVENT,
    KIND_REPLY,
    BatchBuilder,
    encode_metadata,
    instance_topic,
    parse_frames,
)

__all__ = [
    "ClientOptions",
    "DEFAULTS",
    "SYNC_CLIENT_OPTIONS",
    "client_options",
    "resolve_endpoints",
    "call_timeout",
    "retry_attempts",
    "retry_delay",
    "RETRYABLE",
    "request_ttl_ms",
    "check_size",
    "encode_call",
    "not_run",
    "resend_delay",
    "resend_after",
    "send_batch_now",
    "SendWindow",
    "read_replies",
    "reply_value",
    "reply_decoder",
    "Call",
    "merge_metadata",
    "with_metadata",
    "HELLO_ROUTE",
    "Hello",
    "read_hello",
    "no_answer",
    "check_one_service",
    "EventStamper",
    "EventRouter",
    "InstanceRoute",
    "instance_endpoints",
    "name_to_resolve",
    "resolved_endpoints",
    "hello_instance",
    "PeerState",
    "LinkEvent",
    "PeerLink",
    "pick_peer",
    "unavailable",
]

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class ClientOptions(msgspec.Struct, kw_only=True, frozen=True):
    """Every option a client takes, with its default and its constraint: the one declaration.

    ``ClientProxy`` takes all of them, ``SyncClientProxy`` those in ``SYNC_CLIENT_OPTIONS``;
    ``zmsg.config.ClientSettings`` extends this class, so the file and environment accept
    exactly the same names, values and defaults.
    """

    timeout: PositiveFloat = DEFAULT_TIMEOUT
    """Default seconds a request waits for its reply."""
    connect_timeout: PositiveFloat | None = None
    """Seconds for the handshake (None: ``timeout``)."""
    emit_timeout: PositiveFloat | None = None
    """Longest an ``emit`` waits for backpressure or a missing subscriber (None: ``timeout``)."""
    retries: Annotated[int, msgspec.Meta(ge=0)] = 0
    """Retries of calls declared ``idempotent=True`` (never of any other call)."""
    retry_backoff: Annotated[float, msgspec.Meta(ge=0)] = 0.05
    """Base of the exponential backoff between retries (full jitter), seconds."""
    max_in_flight: PositiveInt = DEFAULT_MAX_IN_FLIGHT
    """Requests outstanding before callers wait for a slot (ClientProxy)."""
    max_message_size: PositiveInt = DEFAULT_MAX_MESSAGE_SIZE
    """Larger payloads raise MessageTooLarge before anything is sent (lowered to the service's)."""
    heartbeat: PositiveFloat | None = DEFAULT_HEARTBEAT
    """ZMTP heartbeat interval in seconds; a peer silent for three is dropped (None: off)."""
    event_hwm: PositiveInt = DEFAULT_HWM
    """Event messages queued per subscriber before ``emit`` waits."""
    flush_at: PositiveInt = DEFAULT_FLUSH_AT
    """Queued records that make a batch go at once (ClientProxy)."""
    stream_window: Annotated[int, msgspec.Meta(ge=1, le=0xFFFFFFFF)] = DEFAULT_STREAM_WINDOW
    """Items a service may send ahead of a stream's consumer (credit-based flow control)."""
    metadata: dict[str, str] | None = None
    """Metadata sent with every request and event, under each call's own (the call wins)."""
    wait_for_ready: bool = False
    """When every endpoint is known to be down, wait (within the timeout) for one to come back
    instead of failing at once with ServiceUnavailable (fail fast, the default)."""
    transport: Literal["auto", "asyncio", "libzmq"] = "auto"
    """Who does a ClientProxy's request I/O: "asyncio", the event loop itself, speaking ZMTP
    (no I/O-thread wake-ups: faster per call); "libzmq", a ZeroMQ DEALER; "auto" (default):
    asyncio for tcp:// and ipc:// endpoints without CURVE, libzmq otherwise."""

    @property
    def handshake_timeout(self) -> float:
        return self.timeout if self.connect_timeout is None else self.connect_timeout

    @property
    def emit_wait(self) -> float:
        return self.timeout if self.emit_timeout is None else self.emit_timeout


DEFAULTS = ClientOptions()
"""The default of every option (the proxies' signatures show these values)."""

SYNC_CLIENT_OPTIONS = frozenset(ClientOptions.__struct_fields__) - {"max_in_flight", "flush_at", "transport"}
"""What ``SyncClientProxy`` takes: one request per thread at a time needs no slots or batches,
and it blocks in libzmq (no loop to do its I/O)."""


def loop_does_io(transport: str, secure: bool, endpoint: str) -> bool:
    """Whether a ClientProxy peer's requests go over the loop's own ZMTP (True) or a libzmq
    DEALER: the ``transport`` option's rule. ValueError when "asyncio" cannot be honoured (the
    loop speaks ZMTP's NULL mechanism only, over tcp:// and ipc://)."""
    if transport == "libzmq":
        return False
    if secure:
        if transport == "asyncio":
            raise ValueError("ClientProxy: transport='asyncio' speaks ZMTP's NULL mechanism only; "
                             "CURVE needs transport='libzmq' (or 'auto')")
        return False
    if native_endpoint(endpoint) is None:
        if transport == "asyncio":
            raise ValueError(f"ClientProxy: transport='asyncio' reaches tcp:// and ipc:// endpoints, not {endpoint!r}")
        return False
    return True


def client_options(owner: str, **values: Any) -> ClientOptions:
    """Validate ``values`` against the declarations; ``ValueError`` names the option."""
    metadata = values.get("metadata")
    if isinstance(metadata, Mapping) and not isinstance(metadata, dict):
        values["metadata"] = dict(metadata)
    try:
        options = msgspec.convert(values, ClientOptions, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        where = text.rsplit("at `$.", 1)
        name = where[1].rstrip("`") if len(where) == 2 else "option"
        name = name.split(".", 1)[0].split("[", 1)[0]  # metadata.key -> metadata
        raise ValueError(f"{owner}: invalid {name}={values.get(name)!r}: {where[0].rstrip(' -')}") from None
    if options.metadata:
        try:
            encode_metadata(options.metadata)  # what the wire cannot carry fails here, not per call
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{owner}: invalid metadata: {exc}") from None
    return options


def resolve_endpoints(owner: str, endpoints: str | Sequence[str]) -> list[str]:
    listed = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    valid = [validate_endpoint(e) for e in listed]
    if not valid:
        raise ValueError(f"{owner} needs at least one endpoint")
    return valid


# -- one call ----------------------------------------------------------------------------------

RETRYABLE = (RequestTimeout, ServiceUnavailable)
"""What a retry may follow: the request may not have run. A remote error is an answer."""

_MAX_TTL_MS = 0xFFFFFFFF  # the header's u32; 0 on the wire means "no deadline"
_MAX_RETRY_DELAY = 2.0


def call_timeout(timeout: float | None, default: float) -> float:
    if timeout is None:
        return default
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


def retry_attempts(retries: int | None, idempotent: bool, default: int) -> int:
    """How often a call may be retried: only calls declared idempotent, since a retried
    request may run twice at the service."""
    if retries and not idempotent:
        raise ValueError("retries need idempotent=True: a retried request may run twice at the service")
    if retries is not None and retries < 0:
        raise ValueError(f"retries must be >= 0, not {retries!r}")
    if not idempotent:
        return 0
    return default if retries is None else retries


def retry_delay(attempt: int, backoff: float, rand: float | None = None) -> float:
    """Seconds before retry ``attempt`` (1-based): exponential backoff with full jitter."""
    ceiling = min(backoff * 2.0 ** attempt, _MAX_RETRY_DELAY)
    return (random.random() if rand is None else rand) * ceiling


_MAX_RESEND_DELAY = 0.05
_MIN_RESEND_TIME = 0.01  # what a re-send must have left of the call's timeout, or the refusal stands


def not_run(exc: BaseException) -> bool:
    """The service refused the request before running it (429: this client's replies were
    piling up unread), so sending it again is safe whether or not the call is idempotent.

    The refusal is queued behind the replies that made the backlog, so by the time a client
    reads it those replies have been read: a client that reads (one pipelining large replies)
    gets its call done a little later instead of an error. A client that stopped reading never
    sees the refusal and never re-sends.
    """
    if not isinstance(exc, RpcException):
        return False
    error = exc.error
    return isinstance(error, dict) and error.get(codec.NOT_RUN) is True


def resend_delay(attempt: int, rand: float | None = None) -> float:
    """Seconds before re-sending a refused request the ``attempt``-th time (1-based): short,
    doubling, with full jitter, so refused callers do not come back in one burst."""
    ceiling = min(0.001 * 2.0 ** attempt, _MAX_RESEND_DELAY)
    return (random.random() if rand is None else rand) * ceiling


def resend_after(exc: BaseException, attempt: int, remaining: float, rand: float | None = None) -> float | None:
    """Seconds to wait before re-sending a request that failed with ``exc`` (``attempt``: the
    re-send's number, 1-based; ``remaining``: seconds left of the call's timeout), or None when
    the error stands: it is not a refusal, or the wait would not leave time for an answer."""
    if not not_run(exc):
        return None
    delay = resend_delay(attempt, rand)
    return delay if remaining - delay >= _MIN_RESEND_TIME else None


class SendWindow:
    """How many requests the pipelining client keeps out while a service refuses some unrun.

    A 429 ``not_run`` refusal means this client's unread replies at the service are over its
    ``max_peer_buffer``. Each refused request is sent again whole, so a client that keeps more
    in flight than the service will buffer replies for moves its large requests several times
    (512 x 1 MiB against the 64 MiB default: more re-sends than answers, 0.8x raw pyzmq's
    requests/s). A reply flagged FLAG_SLOW_DOWN says the same earlier, at half the budget, as
    ECN does for TCP. As TCP's congestion window (BIC's search): either halves the limit (once
    per round trip: signals about requests sent before the last cut are the same event); each
    window's worth of replies then closes half the gap back to where the cut came, past that
    point adds one per window for eight windows, then grows in doubling steps, back to
    ``ceiling`` (``max_in_flight``), where it costs nothing. Correlation ids order "before" and
    "after"; they are 64-bit and wrap.
    """

    __slots__ = ("ceiling", "limit", "cuts", "_replies", "_cut_at", "_peak", "_probe")

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        self.cuts = 0
        self._replies = 0
        self._cut_at = 0
        self._peak = ceiling
        self._probe = 0

    def cut(self, correlation_id: int, in_flight: int, last_id: int) -> bool:
        """The service refused request ``correlation_id`` unrun, or answered it with
        FLAG_SLOW_DOWN; ``in_flight`` are out now, ``last_id`` was sent last. True when that
        cut the limit (False: the last cut already answered it)."""
        if self.cuts and not 0 < (correlation_id - self._cut_at) & _ID_MASK < _ID_HALF:
            return False  # sent before the last cut: that cut already answered this signal
        self._peak = min(self.limit, in_flight + 1)
        self.limit = max(1, self._peak // 2)
        self.cuts += 1
        self._replies = 0
        self._probe = 0
        self._cut_at = last_id
        return True

    def replied(self, count: int, limited: bool = True) -> None:
        """``count`` requests were answered (not refused); ``limited``: callers were waiting for
        the limit (or would). Only then does it grow: callers keeping fewer out say nothing about
        how many the service takes, and a limit grown meanwhile would let their next burst
        through at once (as TCP validates its window, RFC 7661)."""
        if self.limit >= self.ceiling or not limited:
            return
        self._replies += count
        if self._replies < self.limit:
            return
        self._replies = 0
        if self.limit < self._peak:
            step = max(1, (self._peak - self.limit) // 2)
        else:  # one at a time near where refusals came, then doubling: they may have stopped
            self._probe += 1
            step = 1 if self._probe <= _GENTLE_PROBES else 1 << (self._probe - _GENTLE_PROBES)
        self.limit = min(self.ceiling, self.limit + step)


_GENTLE_PROBES = 8  # windows past the last refusal's point that grow the limit by one
_ID_MASK = 0xFFFFFFFFFFFFFFFF
_ID_HALF = 1 << 63

SMALL_WINDOW = 16
"""In flight at or below which a batch goes out at a quarter of the window (``send_batch_now``)."""
LARGE_MESSAGE = 8 * 1024
"""libzmq's I/O batch (ZMQ_OUT/IN_BATCH_SIZE, 8 KiB): a message past it is written and read on
its own, with its own allocation and system calls, instead of coalesced with others."""


def send_batch_now(records: int, batch_bytes: int, external_bytes: int, in_flight: int, flush_at: int) -> bool:
    """Whether a batch of ``records`` (``batch_bytes`` in the batch frame, ``external_bytes``
    of large bodies beside it) should be sent now rather than at the end of the loop iteration,
    with ``in_flight`` requests outstanding (this one included).

    Full batches and large bodies go at once. With a small window (16 or fewer in flight) so
    does a batch holding a quarter of it: the service starts on the first requests while the
    caller queues the rest, so several messages overlap instead of one batch ping-ponging (8 in
    flight, 1 KiB: 40.8k -> 46.1k requests/s, p50 197 -> 169 us, six paired runs, raw pyzmq
    48.8k). A batch already past libzmq's 8 KiB I/O batch waits for half the window instead:
    such messages cost libzmq per message, not per byte, so fewer and larger ones go faster (8 in
    flight, 4-32 KiB bodies: 5-20 % more requests/s than at a quarter, see benches/RESULTS.md).
    One request alone in flight (a sequential caller) is always sent at once. Larger windows
    batch to ``flush_at``, where batching is what beats raw pyzmq (W2).
    """
    if records >= flush_at or external_bytes >= FLUSH_EXTERNAL_BYTES:
        return True
    if in_flight > SMALL_WINDOW:
        return False
    return records * (2 if batch_bytes >= LARGE_MESSAGE else 4) >= in_flight


def request_ttl_ms(timeout: float) -> int:
    """The caller's time budget for the header's ttl field: whole ms rounded up, 0 when it
    does not fit (no deadline rather than a wrong one)."""
    ttl_ms = int(timeout * 1000) + 1
    return ttl_ms if ttl_ms < _MAX_TTL_MS else 0


def check_size(route: bytes, body: bytes, limit: int) -> None:
    if len(body) + len(route) > limit:
        raise codec.too_large(route, body, limit)


def encode_call(pattern: Any, data: Any, metadata: Mapping[str, str] | None, limit: int) -> tuple[bytes, int, bytes]:
    """The route, record flags and body of one request, stream or event: the pattern (or its
    route bytes) and payload encoded, the metadata section attached, the size checked against
    ``limit`` (``MessageTooLarge`` before anything is sent)."""
    route = pattern if type(pattern) is bytes else codec.encode_pattern(pattern)
    flags, body = with_metadata(codec.encode(data), metadata)
    if len(body) + len(route) > limit:
        check_size(route, body, limit)
    return route, flags, body


# -- replies -----------------------------------------------------------------------------------

Record = tuple[int, int, int, int, bytes, Any]


def read_replies(frames: Sequence[Any]) -> tuple[list[Record], FrameError | None]:
    """The records of a reply message, and the fault that cut it short (None when whole).

    Records before a fault are kept; ``fault.correlation_id`` names the broken record's request
    when its header was readable, so that request fails with a ProtocolError instead of
    waiting out its timeout.
    """
    try:
        return parse_frames(frames, 0), None
    except FrameError as exc:
        return exc.records, exc


def reply_value(kind: int, correlation_id: int, body: Any, decoder: msgspec.msgpack.Decoder[Any] | None = None) -> Any:
    """The value a reply record carries; raises what an error (or unexpected) record stands for.

    With ``decoder`` (from ``reply_decoder``) the reply is decoded straight into its type; a
    reply that does not match raises ``ReplyValidationError`` naming the field.
    """
    if kind == KIND_REPLY:
        if decoder is not None:
            try:
                return decoder.decode(body)
            except msgspec.ValidationError as exc:
                raise ReplyValidationError(f"reply does not match {_type_name(decoder.type)}: {exc}") from None
            except msgspec.DecodeError as exc:
                raise ProtocolError(f"undecodable reply: {exc}") from None
        try:
            return codec.decode(body)
        except ZmsgError as exc:
            raise ProtocolError(f"undecodable reply: {exc}") from None
    if kind == KIND_ERROR:
        raise codec.rpc_exception(body)
    raise ProtocolError(f"unexpected record kind {kind} in reply to request {correlation_id}")


_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def reply_decoder(response_type: Any) -> msgspec.msgpack.Decoder[Any] | None:
    """The typed decoder for ``response_type`` (None: untyped), built once per type and reused.

    ``TypeError`` when msgspec cannot decode into that type, before anything is sent.
    """
    if response_type is None:
        return None
    try:
        return _decoders[response_type]
    except KeyError:
        pass
    except TypeError:  # an unhashable type expression: build it, do not cache it
        return _build_decoder(response_type)
    decoder = _decoders[response_type] = _build_decoder(response_type)
    return decoder


def _build_decoder(response_type: Any) -> msgspec.msgpack.Decoder[Any]:
    try:
        return msgspec.msgpack.Decoder(response_type)
    except TypeError as exc:
        raise TypeError(f"response_type={response_type!r} cannot be decoded into: {exc}") from None


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else repr(tp)


def malformed_reply(fault: FrameError) -> ProtocolError:
    return ProtocolError(f"malformed reply: {fault}")


# -- metadata and client middleware --------------------------------------------------------


def merge_metadata(defaults: Mapping[str, str] | None, call: Mapping[str, str] | None) -> dict[str, str] | None:
    """A call's metadata over the proxy's defaults (the call wins); None when there is none.

    A call's metadata is checked here, so what the wire cannot carry fails before sending.
    """
    if not call:
        return dict(defaults) if defaults else None
    if not isinstance(call, Mapping):
        raise TypeError(f"metadata must be a mapping of str to str, not {type(call).__name__}")
    merged = {**defaults, **call} if defaults else dict(call)
    encode_metadata(merged)  # TypeError / ValueError naming the key, before anything is sent
    return merged


def with_metadata(body: bytes, metadata: Mapping[str, str] | None) -> tuple[int, bytes]:
    """The record flags and body for ``body`` with ``metadata`` (no section when there is none)."""
    if not metadata:
        return 0, body
    return FLAG_METADATA, encode_metadata(metadata, body)


class Call:
    """One outgoing call as client middleware sees it (``mw(call, call_next)``).

    ``kind`` is ``"request"`` or ``"event"``; ``pattern`` and ``data`` are what will be sent
    and may be replaced; ``metadata`` is a mutable dict (the proxy's defaults merged with the
    call's) that a middleware may add to, e.g. a trace context.
    """

    __slots__ = ("kind", "pattern", "data", "metadata")

    def __init__(self, kind: str, pattern: Any, data: Any, metadata: dict[str, str] | None) -> None:
        self.kind = kind
        self.pattern = pattern
        self.data = data
        self.metadata: dict[str, str] = {} if metadata is None else metadata

    def __repr__(self) -> str:
        return f"<Call {self.kind} {self.pattern!r} metadata={self.metadata!r}>"


# -- the handshake -----------------------------------------------------------------------------

HELLO_ROUTE = HELLO_PATTERN.encode()


@dataclass(frozen=True, slots=True)
class Hello:
    """What an endpoint says of itself in answer to ``$zmsg.hello`` (see docs/protocol.md)."""

    endpoint: str
    service: str | None
    events: str
    max_message_size: int | None
    info: dict[str, Any]

    def limit(self, current: int) -> int:
        """The size limit to use from now on: the service's own when lower (fail fast here
        rather than be disconnected there)."""
        own = self.max_message_size
        return own if own is not None and 0 < own < current else current


def read_hello(endpoint: str, value: Any) -> Hello:
    """Check a decoded hello answer; ``ProtocolError`` when it is not a zmsg service's."""
    if not isinstance(value, dict) or not isinstance(value.get("events"), str):
        raise ProtocolError(f"{endpoint} did not answer the zmsg handshake")
    service = value.get("service")
    limit = value.get("max_message_size")
    return Hello(endpoint, service if isinstance(service, str) else None, value["events"],
                 limit if isinstance(limit, int) and not isinstance(limit, bool) else None, value)


def no_answer(endpoint: str, timeout: float, consequence: str = "") -> ServiceUnavailable:
    return ServiceUnavailable(f"no zmsg service answered at {endpoint} within {timeout:g} s"
                              + (f"; {consequence}" if consequence else ""))


def check_one_service(hellos: Sequence[Hello]) -> str | None:
    """The service's name; ``ProtocolError`` when the endpoints are different services (one
    proxy is one service: its requests must be answerable by any of them)."""
    names = {h.service for h in hellos if h.service is not None}
    if len(names) > 1:
        listed = ", ".join(f"{h.endpoint} is {h.service!r}" for h in hellos)
        raise ProtocolError(f"one proxy is one service, but its endpoints answer as different services: {listed}")
    return next(iter(names), None)


# -- events ------------------------------------------------------------------------------------

_MAX_EMITTER = 0xFFFFFFFF


class EventStamper:
    """Numbers one emitter's events: (sequence, emitter id) travel in the record's
    correlation-id and ttl fields, so a service can count what it missed (event_sequence)."""

    __slots__ = ("emitter_id", "sequence")

    def __init__(self, emitter_id: int | None = None) -> None:
        self.emitter_id = random.randrange(1, _MAX_EMITTER) if emitter_id is None else emitter_id
        self.sequence = 0

    def stamp(self, batch: BatchBuilder, route: bytes, body: bytes, flags: int = 0) -> None:
        self.sequence += 1
        batch.add(KIND_EVENT, flags, self.sequence, self.emitter_id, route, body)


def name_to_resolve(endpoint: str) -> tuple[str, int] | None:
    """(host name, port) of a ``tcp://`` endpoint whose host is a name rather than an address
    (it may stand for several instances, e.g. a Kubernetes headless service); else None."""
    if not endpoint.startswith("tcp://"):
        return None
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if not host or host.startswith("[") or not port.isdigit() or host == "*":
        return None
    if all(part.isdigit() for part in host.split(".")) and host.count(".") == 3:
        return None  # already an IPv4 address
    return host, int(port)


def resolved_endpoints(port: int, addresses: Sequence[str]) -> list[str]:
    """One endpoint per distinct address a name resolved to, in the resolver's order."""
    found: list[str] = []
    for address in addresses:
        endpoint = f"tcp://[{address}]:{port}" if ":" in address else f"tcp://{address}:{port}"
        if endpoint not in found:
            found.append(endpoint)
    return found


def instance_endpoints(hello: Hello) -> list[str]:
    """The request endpoints of every instance ``hello`` says it belongs with (the workers of one
    ``zmsg serve``), as this client reaches them: for TCP its own host, their ports."""
    listed = hello.info.get("instances")
    if not isinstance(listed, list):
        return []
    found: list[str] = []
    for advertised in listed:
        if isinstance(advertised, str):
            endpoint = events_connect_endpoint(hello.endpoint, advertised)
            try:
                found.append(validate_endpoint(endpoint))
            except ZmsgError:
                continue  # not something this client could reach: skip it, the others still work
    return found


def hello_instance(hello: Hello) -> tuple[str, frozenset[bytes]] | None:
    """The instance id and broadcast patterns (route bytes) a hello names; None for a service
    that predates instances (then every event goes to every service, the broadcast form)."""
    instance = hello.info.get("instance")
    if not isinstance(instance, str) or len(instance) != INSTANCE_ID_LEN:
        return None
    listed = hello.info.get("broadcast")
    patterns = frozenset(p.encode() for p in listed if isinstance(p, str)) if isinstance(listed, list) else frozenset()
    return instance, patterns


_MAX_ROUTES_TRACKED = 4096


class InstanceRoute:
    """One instance as an emitter addresses it: its topic, its own sequence, its pending batch.

    Keyed by the endpoint it serves on, not by its instance id: a process restarted on the same
    endpoint (a new id) continues the same sequence, so a successor that restored its
    predecessor's sequences (``Service.restore_event_sequences``) counts what was lost between.
    """

    __slots__ = ("key", "instance_id", "topic", "broadcast", "stamper", "batch")

    def __init__(self, key: str, instance_id: str, broadcast: frozenset[bytes], emitter_id: int) -> None:
        self.key = key
        self.instance_id = instance_id
        self.topic = instance_topic(instance_id)
        self.broadcast = broadcast
        self.stamper = EventStamper(emitter_id)  # numbered per instance: each sees no gaps
        self.batch = BatchBuilder()

    def take(self) -> list[Any]:
        """The addressed message: the topic frame, then the batch."""
        return [self.topic, *self.batch.take()]


class EventRouter:
    """Which instance of the service takes each event (docs/protocol.md, "Instances").

    One instance, chosen round-robin among those subscribed now, runs the event's handlers; every
    other subscribed instance that declared a broadcast handler for the pattern gets a copy
    flagged ``BROADCAST_ONLY``. ``route`` returns None when the event cannot go now: no instance
    is subscribed, or one that wants a broadcast copy is not (the caller waits, then fails: an
    event is never dropped silently). Sans-io: the caller says who is subscribed.
    """

    __slots__ = ("emitter_id", "routes", "_order", "_next")

    def __init__(self, emitter_id: int) -> None:
        self.emitter_id = emitter_id
        self.routes: dict[str, InstanceRoute] = {}
        self._order: list[InstanceRoute] = []
        # Round-robin per pattern: events of different patterns interleaved in a fixed rhythm
        # would otherwise all land each pattern on the same instance.
        self._next: dict[bytes, int] = {}

    def set_instances(self, instances: Sequence[tuple[str, str, frozenset[bytes]]]) -> None:
        """The instances the service has now, as (endpoint, instance id, broadcast patterns); an
        endpoint already known keeps its sequence and pending batch, even under a new id."""
        routes: dict[str, InstanceRoute] = {}
        for key, instance_id, broadcast in instances:
            known = self.routes.get(key)
            if known is None:
                known = InstanceRoute(key, instance_id, broadcast, self.emitter_id)
            elif known.instance_id != instance_id:
                known.instance_id = instance_id
                known.topic = instance_topic(instance_id)
            known.broadcast = broadcast
            routes[key] = known
        self.routes = routes
        self._order = list(routes.values())

    def route(self, route: bytes, body: bytes, subscribed: Collection[str], flags: int = 0) -> list[InstanceRoute] | None:
        order = self._order
        count = len(order)
        chosen: InstanceRoute | None = None
        start = self._next.get(route, 0)
        for step in range(count):
            candidate = order[(start + step) % count]
            if candidate.instance_id in subscribed:
                chosen = candidate
                if len(self._next) >= _MAX_ROUTES_TRACKED:
                    self._next.clear()  # patterns made up per event: forget, spreading stays fair enough
                self._next[route] = (start + step + 1) % count
                break
        if chosen is None:
            return None
        copies = [r for r in order if r is not chosen and route in r.broadcast]
        if any(r.instance_id not in subscribed for r in copies):
            return None  # a broadcast handler would miss it: wait for that instance instead
        chosen.stamper.stamp(chosen.batch, route, body, flags)
        for copy in copies:
            copy.stamper.stamp(copy.batch, route, body, flags | FLAG_BROADCAST_ONLY)
        copies.append(chosen)
        return copies


# -- peers -------------------------------------------------------------------------------------


class PeerState(enum.Enum):
    """Where one endpoint's connection stands, as its socket monitor reported it."""

    CONNECTING = "connecting"
    """Nothing confirmed or refused yet (a fresh proxy, or ZeroMQ still trying)."""
    UP = "up"
    """The handshake succeeded and nothing was lost since."""
    DOWN = "down"
    """Lost, or never reached (refused or unreachable); ZeroMQ keeps reconnecting."""
    REFUSED = "refused"
    """The security handshake failed: waiting will not help until it is fixed."""


class LinkEvent(enum.Enum):
    """Connection events, as the transport's monitor reports them (named, without zmq)."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CONNECT_FAILED = "connect-failed"
    AUTH_FAILED = "auth-failed"
    PROTOCOL_FAILED = "protocol-failed"


class PeerLink:
    """One endpoint's state machine: events in, the state and what to fail out."""

    __slots__ = ("endpoint", "state", "failure", "hello_stale", "disconnects")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.state = PeerState.CONNECTING
        self.failure: ServiceUnavailable | None = None
        """Raised at once by requests for this peer (refused credentials)."""
        self.hello_stale = True
        """Its event endpoint is unknown, or may have moved (it came back after a drop)."""
        self.disconnects = 0

    def on_event(self, event: LinkEvent) -> ServiceUnavailable | None:
        """Apply ``event``; returns the error requests in flight on this peer must fail with
        (their reply can no longer come), or None."""
        if event is LinkEvent.CONNECTED:
            self.state = PeerState.UP
            self.failure = None
            return None
        if event is LinkEvent.DISCONNECTED:
            if self.state is not PeerState.DOWN:
                self.disconnects += 1
            self.state = PeerState.DOWN
            self.hello_stale = True
            return ServiceUnavailable(f"connection to {self.endpoint} lost with the request in flight")
        if event is LinkEvent.CONNECT_FAILED:
            if self.state is PeerState.CONNECTING:
                self.state = PeerState.DOWN  # never reached: route around it until it connects
            return None
        reason = ("refused this client's CURVE credentials" if event is LinkEvent.AUTH_FAILED
                  else "failed the security handshake (is CURVE configured on both sides?)")
        self.state = PeerState.REFUSED
        self.failure = AuthenticationFailed(f"{self.endpoint} {reason}")
        return self.failure


def pick_peer(links: Sequence[PeerLink], last: int) -> int:
    """The index of the peer for the next request, round-robin after ``last``: a connected one;
    else one not known to be down; else the next (ZeroMQ queues for an endpoint until it
    connects, and the request's timeout bounds the wait)."""
    count = len(links)
    fallback = -1
    index = last
    for _ in range(count):
        index = (index + 1) % count
        state = links[index].state
        if state is PeerState.UP:
            return index
        if fallback < 0 and state is PeerState.CONNECTING:
            fallback = index
    return fallback if fallback >= 0 else (last + 1) % count


def unavailable(links: Collection[PeerLink]) -> ServiceUnavailable | None:
    """Fail fast: the error a call raises at once when every endpoint is known to be down (its
    monitor saw the disconnect, or a refused connect or handshake); None while any endpoint is
    up or still connecting (a fresh proxy waits for its first handshake)."""
    if not links:
        return None
    for link in links:
        if link.state is PeerState.UP or link.state is PeerState.CONNECTING:
            return None
    refused = [link.failure for link in links if link.failure is not None]
    if len(refused) == len(links):
        return refused[0]
    names = ", ".join(link.endpoint for link in links)
    return ServiceUnavailable(
        f"no endpoint is up ({names}: disconnected or refusing connections); "
        "pass wait_for_ready=True to wait for one within the timeout instead")

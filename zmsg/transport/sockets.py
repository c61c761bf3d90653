"""Creating, binding and connecting the four socket roles zmsg uses.

Service side: a ROUTER for requests and a SUB for events. Client side: a DEALER (spread over
every endpoint of a service: ZeroMQ round-robins) and an XPUB. The XPUB is *verbose*, so the
client sees one subscription message per connected subscriber (how ``ClientProxy.connect``
knows events will not fall into the slow-joiner gap), and *no-drop*, so a full queue is reported
as EAGAIN (backpressure) instead of silently discarding events.
"""

from __future__ import annotations

import errno
from typing import Any, Protocol

import zmq

from zmsg.defaults import DEFAULT_HEARTBEAT, DEFAULT_HWM
from zmsg.endpoints import connectable, events_bind_endpoint, events_connect_endpoint, validate_endpoint
from zmsg.errors import EndpointError
from zmsg.protocol import read_subscription

__all__ = [
    "context",
    "validate_endpoint",
    "bind_router",
    "bind_subscriber",
    "connect_dealer",
    "connect_publisher",
    "events_bind_endpoint",
    "events_connect_endpoint",
    "connectable",
    "new_socket",
    "too_many_files_message",
    "subscription_change",
]



class Security(Protocol):
    """What the socket factories need of CurveServer / CurveClient (transport.security)."""

    def apply(self, sock: zmq.Socket[Any], *args: Any) -> None: ...


def _heartbeat(sock: zmq.Socket[Any], interval: float | None) -> None:
    # ZeroMQ's own ZMTP PING/PONG: detects a peer that vanished without closing (kill -9 of a
    # host, network cut, a stopped process) and turns it into a disconnect the monitor reports.
    if interval:
        ivl = max(1, int(interval * 1000))
        sock.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * ivl)
        sock.setsockopt(zmq.HEARTBEAT_TTL, 3 * ivl)
        # A connect attempt made while the peer is unreachable waits in the kernel's SYN retries
        # (1, 3, 7, 15 s...); bounded like a heartbeat, ZeroMQ starts a fresh one instead, so a
        # healed link is used again within seconds (connecting sockets only).
        sock.setsockopt(zmq.CONNECT_TIMEOUT, 3 * ivl)


def context() -> zmq.Context[Any]:
    """The process-wide ZeroMQ context (one I/O thread is plenty for loopback and LAN)."""
    return zmq.Context.instance()


def new_socket(kind: int) -> zmq.Socket[Any]:
    """A socket of the process context; running out of descriptors is an EndpointError that
    says so (each ZeroMQ socket needs one, each TCP connection another)."""
    try:
        sock: zmq.Socket[Any] = context().socket(kind)
    except zmq.ZMQError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise EndpointError(f"cannot open a ZeroMQ socket: {too_many_files_message()}") from None
        raise EndpointError(f"cannot open a ZeroMQ socket: {exc.strerror}") from None
    return sock


def too_many_files_message() -> str:
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = f"{soft}"
    except (ImportError, OSError, ValueError):
        limit = "unknown"
    return (f"too many open files (this process may open {limit}; each client connection takes one): "
            "raise the limit (ulimit -n, LimitNOFILE=) or spread the clients")


def _bind(sock: zmq.Socket[Any], endpoint: str) -> str:
    validate_endpoint(endpoint)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        if exc.errno == zmq.EADDRINUSE:
            raise EndpointError(f"cannot bind {endpoint}: address already in use") from None
        raise EndpointError(f"cannot bind {endpoint}: {exc.strerror}") from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def bind_router(endpoint: str, *, max_message_size: int = -1, heartbeat: float | None = DEFAULT_HEARTBEAT,
                security: Security | None = None, zap_domain: str = "",
                send_hwm: int = DEFAULT_HWM, listen_fd: int | None = None) -> tuple[zmq.Socket[Any], str]:
    """A ROUTER bound to ``endpoint``; with ``listen_fd``, ZeroMQ accepts on that already
    listening TCP socket (``ZMQ_USE_FD``) instead of creating one: how the workers of one
    ``zmsg serve`` keep their ports across restarts, the supervisor holding the sockets."""
    sock = new_socket(zmq.ROUTER)
    if listen_fd is not None:
        sock.setsockopt(zmq.USE_FD, listen_fd)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    _heartbeat(sock, heartbeat)
    if security is not None:
        security.apply(sock, zap_domain)
    elif zap_domain:  # NULL with an address allow-list: libzmq asks the ZAP handler too
        sock.setsockopt_string(zmq.ZAP_DOMAIN, zap_domain)
    sock.setsockopt(zmq.SNDHWM, send_hwm)
    sock.setsockopt(zmq.RCVHWM, DEFAULT_HWM)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_size)
    if endpoint.startswith("tcp://[") or "::" in endpoint:
        sock.setsockopt(zmq.IPV6, 1)
    return sock, connectable(_bind(sock, endpoint))


def bind_subscriber(endpoint: str, *, max_message_size: int = -1, heartbeat: float | None = DEFAULT_HEARTBEAT,
                    security: Security | None = None, zap_domain: str = "",
                    hwm: int = DEFAULT_HWM,
                    subscriptions: tuple[bytes, ...] = (b"",)) -> tuple[zmq.Socket[Any], str]:
    """A SUB bound to ``endpoint``, subscribed to each prefix of ``subscriptions``."""
    sock = new_socket(zmq.SUB)
    _heartbeat(sock, heartbeat)
    if security is not None:
        security.apply(sock, zap_domain)
    elif zap_domain:  # NULL with an address allow-list: libzmq asks the ZAP handler too
        sock.setsockopt_string(zmq.ZAP_DOMAIN, zap_domain)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_size)
    for topic in subscriptions:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    if endpoint.startswith("tcp://[") or "::" in endpoint:
        sock.setsockopt(zmq.IPV6, 1)
    return sock, connectable(_bind(sock, endpoint))


def connect_all(sock: zmq.Socket[Any], endpoints: list[str]) -> None:
    """Connect ``sock`` to every endpoint (closing it and raising EndpointError on failure)."""
    try:
        for endpoint in endpoints:
            validate_endpoint(endpoint)
            if endpoint.startswith("tcp://["):
                sock.setsockopt(zmq.IPV6, 1)
            sock.connect(endpoint)
    except (zmq.ZMQError, EndpointError) as exc:
        sock.close(linger=0)
        if isinstance(exc, EndpointError):
            raise
        raise EndpointError(f"cannot connect {endpoint}: {exc.strerror}") from None


def connect_dealer(endpoints: list[str], *, heartbeat: float | None = DEFAULT_HEARTBEAT,
                   security: Security | None = None, connect: bool = True) -> zmq.Socket[Any]:
    """A DEALER connected to ``endpoints``; with ``connect=False`` the caller connects it later
    (after attaching a monitor, so that no connection event happens before anyone listens)."""
    sock: zmq.Socket[Any] = new_socket(zmq.DEALER)
    _heartbeat(sock, heartbeat)
    if security is not None:
        security.apply(sock)
    sock.setsockopt(zmq.SNDHWM, DEFAULT_HWM)
    sock.setsockopt(zmq.RCVHWM, DEFAULT_HWM)
    sock.setsockopt(zmq.LINGER, 0)
    if connect:
        connect_all(sock, endpoints)
    return sock


def connect_publisher(endpoints: list[str], *, hwm: int = DEFAULT_HWM, heartbeat: float | None = DEFAULT_HEARTBEAT,
                      security: Security | None = None) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = new_socket(zmq.XPUB)
    _heartbeat(sock, heartbeat)
    if security is not None:
        security.apply(sock)
    # VERBOSER: every subscribe *and* unsubscribe reaches us, including the unsubscribe libzmq
    # generates when a subscriber's connection drops, so the client can count live subscribers.
    sock.setsockopt(zmq.XPUB_VERBOSER, 1)
    sock.setsockopt(zmq.XPUB_NODROP, 1)
    # IMMEDIATE: no queue for a subscriber that is not connected, so its leaving is reported
    # (the unsubscribe above) instead of events piling up silently for a peer that may not return.
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.SNDHWM, hwm)
    connect_all(sock, endpoints)
    return sock


def subscription_change(message: bytes) -> int:
    """+1 for a service subscribing (first byte 1), -1 for one leaving (0), counting only the
    subscription every service makes once: to the broadcast topic, or to everything (older
    services); an instance's own topic is tracked apart (``protocol.read_subscription``)."""
    change = read_subscription(message)
    if change is None or change[1] is not None:
        return 0
    return 1 if change[0] else -1

"""The only layer that imports zmq: sockets on the event loop. It knows nothing of patterns."""

from zmsg.transport.channel import Channel, ChannelClosed
from zmsg.transport.sockets import (
    bind_router,
    bind_subscriber,
    connect_dealer,
    connect_publisher,
    context,
    events_bind_endpoint,
    events_connect_endpoint,
    validate_endpoint,
)

__all__ = [
    "Channel",
    "ChannelClosed",
    "bind_router",
    "bind_subscriber",
    "connect_dealer",
    "connect_publisher",
    "context",
    "events_bind_endpoint",
    "events_connect_endpoint",
    "validate_endpoint",
]

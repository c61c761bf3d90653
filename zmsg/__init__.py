"""zmsg: brokerless messaging for Python services over ZeroMQ.

Request-reply with ``@message_pattern`` and ``ClientProxy.send``; fire-and-forget events with
``@event_pattern`` and ``ClientProxy.emit``; errors travel back as ``RpcException``.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from zmsg.client import DEFAULT_TIMEOUT, ClientProxy, PendingRequest
from zmsg.errors import (
    EndpointError,
    MessageTooLarge,
    ProtocolError,
    RequestTimeout,
    RpcException,
    ServiceUnavailable,
    ZmsgError,
)
from zmsg.service import Context, Service, event_pattern, message_pattern

try:
    __version__ = _version("zmsg")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    # serving
    "Service",
    "message_pattern",
    "event_pattern",
    "Context",
    # calling
    "ClientProxy",
    "PendingRequest",
    "DEFAULT_TIMEOUT",
    # errors
    "ZmsgError",
    "RpcException",
    "RequestTimeout",
    "ServiceUnavailable",
    "MessageTooLarge",
    "EndpointError",
    "ProtocolError",
]

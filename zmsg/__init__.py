"""zmsg: brokerless messaging for Python services over ZeroMQ.

Request-reply with ``@message_pattern`` and ``ClientProxy.send``; fire-and-forget events with
``@event_pattern`` and ``ClientProxy.emit``; errors travel back as ``RpcException``.

Names are imported lazily (PEP 562) so that importing a low layer such as ``zmsg.protocol``
does not drag in zmq and asyncio; ``from zmsg import Service`` works as usual.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

try:
    __version__ = _version("zmsg")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

# public name -> module that defines it
_EXPORTS = {
    # serving
    "Service": "zmsg.service",
    "message_pattern": "zmsg.service",
    "event_pattern": "zmsg.service",
    "Context": "zmsg.service",
    # calling
    "ClientProxy": "zmsg.client",
    "PendingRequest": "zmsg.client",
    "DEFAULT_TIMEOUT": "zmsg.client",
    "SyncClientProxy": "zmsg.sync_client",
    # named clients and configuration
    "ClientRegistry": "zmsg.registry",
    "clients": "zmsg.registry",
    "ClientSettings": "zmsg.config",
    "ServeSettings": "zmsg.config",
    "load_config": "zmsg.config",
    # security (CURVE)
    "CurveServer": "zmsg.transport.security",
    "CurveClient": "zmsg.transport.security",
    "KeyPair": "zmsg.transport.security",
    "generate_keypair": "zmsg.transport.security",
    "write_keypair": "zmsg.transport.security",
    "load_keypair": "zmsg.transport.security",
    "load_public_key": "zmsg.transport.security",
    "SecurityError": "zmsg.transport.security",
    # errors
    "ZmsgError": "zmsg.errors",
    "RpcException": "zmsg.errors",
    "RequestTimeout": "zmsg.errors",
    "ServiceUnavailable": "zmsg.errors",
    "AuthenticationFailed": "zmsg.errors",
    "MessageTooLarge": "zmsg.errors",
    "EndpointError": "zmsg.errors",
    "ProtocolError": "zmsg.errors",
    "ConfigError": "zmsg.errors",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from zmsg.client import DEFAULT_TIMEOUT, ClientProxy, PendingRequest
    from zmsg.config import ClientSettings, ServeSettings, load_config
    from zmsg.errors import (
        AuthenticationFailed,
        ConfigError,
        EndpointError,
        MessageTooLarge,
        ProtocolError,
        RequestTimeout,
        RpcException,
        ServiceUnavailable,
        ZmsgError,
    )
    from zmsg.registry import ClientRegistry, clients
    from zmsg.service import Context, Service, event_pattern, message_pattern
    from zmsg.sync_client import SyncClientProxy
    from zmsg.transport.security import (
        CurveClient,
        CurveServer,
        KeyPair,
        SecurityError,
        generate_keypair,
        load_keypair,
        load_public_key,
        write_keypair,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zmsg' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

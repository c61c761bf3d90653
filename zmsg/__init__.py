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
    # performance: keep large payload buffers in the heap (glibc), see zmsg/allocator.py
    "tune_allocator": "zmsg.allocator",
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

if TYPE_CHECKING:  # explicit "X as X" re-exports, so type checkers see the public API
    from zmsg.client import (
        DEFAULT_TIMEOUT as DEFAULT_TIMEOUT,
    )
    from zmsg.client import (
        ClientProxy as ClientProxy,
    )
    from zmsg.client import (
        PendingRequest as PendingRequest,
    )
    from zmsg.config import (
        ClientSettings as ClientSettings,
    )
    from zmsg.config import (
        ServeSettings as ServeSettings,
    )
    from zmsg.config import (
        load_config as load_config,
    )
    from zmsg.errors import (
        AuthenticationFailed as AuthenticationFailed,
    )
    from zmsg.errors import (
        ConfigError as ConfigError,
    )
    from zmsg.errors import (
        EndpointError as EndpointError,
    )
    from zmsg.errors import (
        MessageTooLarge as MessageTooLarge,
    )
    from zmsg.errors import (
        ProtocolError as ProtocolError,
    )
    from zmsg.errors import (
        RequestTimeout as RequestTimeout,
    )
    from zmsg.errors import (
        RpcException as RpcException,
    )
    from zmsg.errors import (
        ServiceUnavailable as ServiceUnavailable,
    )
    from zmsg.errors import (
        ZmsgError as ZmsgError,
    )
    from zmsg.registry import (
        ClientRegistry as ClientRegistry,
    )
    from zmsg.registry import (
        clients as clients,
    )
    from zmsg.service import (
        Context as Context,
    )
    from zmsg.service import (
        Service as Service,
    )
    from zmsg.service import (
        event_pattern as event_pattern,
    )
    from zmsg.service import (
        message_pattern as message_pattern,
    )
    from zmsg.sync_client import (
        SyncClientProxy as SyncClientProxy,
    )
    from zmsg.transport.security import (
        CurveClient as CurveClient,
    )
    from zmsg.transport.security import (
        CurveServer as CurveServer,
    )
    from zmsg.transport.security import (
        KeyPair as KeyPair,
    )
    from zmsg.transport.security import (
        SecurityError as SecurityError,
    )
    from zmsg.transport.security import (
        generate_keypair as generate_keypair,
    )
    from zmsg.transport.security import (
        load_keypair as load_keypair,
    )
    from zmsg.transport.security import (
        load_public_key as load_public_key,
    )
    from zmsg.transport.security import (
        write_keypair as write_keypair,
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

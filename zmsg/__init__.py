"""zmsg: brokerless messaging for Python services over ZeroMQ.

Request-reply with ``@message_pattern`` and ``ClientProxy.send``; fire-and-forget events with
``@event_pattern`` and ``ClientProxy.emit``; errors travel back as ``RpcException``.

Names are imported lazily (PEP 562) so that importing a low layer such as ``zmsg.protocol``
does not drag in zmq and asyncio; ``from zmsg import Service`` works as usual.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version as _version
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
    # the request pipeline (client middleware sees a Call)
    "Call": "zmsg.client_core",
    # running code the way `zmsg serve` does (uvloop, signals)
    "run": "zmsg.runtime",
    "ShutdownSignals": "zmsg.runtime",
    # calling
    "ClientProxy": "zmsg.client",
    "PendingRequest": "zmsg.client",
    "SyncClientProxy": "zmsg.sync_client",
    "ClientOptions": "zmsg.client_core",
    "DEFAULT_TIMEOUT": "zmsg.defaults",
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
    # performance: keep large payload buffers in the heap (glibc), see zmsg/allocator.py
    "tune_allocator": "zmsg.allocator",
    # errors
    "ZmsgError": "zmsg.errors",
    "RpcException": "zmsg.errors",
    "RequestTimeout": "zmsg.errors",
    "ServiceUnavailable": "zmsg.errors",
    "AuthenticationFailed": "zmsg.errors",
    "MessageTooLarge": "zmsg.errors",
    "ReplyValidationError": "zmsg.errors",
    "EndpointError": "zmsg.errors",
    "ProtocolError": "zmsg.errors",
    "PayloadError": "zmsg.errors",
    "ConfigError": "zmsg.errors",
    "SecurityError": "zmsg.errors",
    "ServiceLoadError": "zmsg.errors",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # explicit "X as X" re-exports, one import per module, so type checkers see the API
    from zmsg.allocator import (
        tune_allocator as tune_allocator,
    )
    from zmsg.client import (
        ClientProxy as ClientProxy,
        PendingRequest as PendingRequest,
    )
    from zmsg.client_core import (
        Call as Call,
        ClientOptions as ClientOptions,
    )
    from zmsg.config import (
        ClientSettings as ClientSettings,
        ServeSettings as ServeSettings,
        load_config as load_config,
    )
    from zmsg.defaults import (
        DEFAULT_TIMEOUT as DEFAULT_TIMEOUT,
    )
    from zmsg.errors import (
        AuthenticationFailed as AuthenticationFailed,
        ConfigError as ConfigError,
        EndpointError as EndpointError,
        MessageTooLarge as MessageTooLarge,
        PayloadError as PayloadError,
        ProtocolError as ProtocolError,
        ReplyValidationError as ReplyValidationError,
        RequestTimeout as RequestTimeout,
        RpcException as RpcException,
        SecurityError as SecurityError,
        ServiceLoadError as ServiceLoadError,
        ServiceUnavailable as ServiceUnavailable,
        ZmsgError as ZmsgError,
    )
    from zmsg.registry import (
        ClientRegistry as ClientRegistry,
        clients as clients,
    )
    from zmsg.runtime import (
        ShutdownSignals as ShutdownSignals,
        run as run,
    )
    from zmsg.service import (
        Context as Context,
        Service as Service,
        event_pattern as event_pattern,
        message_pattern as message_pattern,
    )
    from zmsg.sync_client import (
        SyncClientProxy as SyncClientProxy,
    )
    from zmsg.transport.security import (
        CurveClient as CurveClient,
        CurveServer as CurveServer,
        KeyPair as KeyPair,
        generate_keypair as generate_keypair,
        load_keypair as load_keypair,
        load_public_key as load_public_key,
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

"""The exception hierarchy users catch.

Every lower-level failure (``zmq.ZMQError``, ``msgspec.DecodeError``, framing errors) is
translated into one of these at the layer boundary, so user code never imports zmq or msgspec
just to handle errors. This module imports nothing from zmsg.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ZmsgError",
    "RpcException",
    "RequestTimeout",
    "ServiceUnavailable",
    "FrameError",
    "ProtocolError",
    "MessageTooLarge",
    "ReplyValidationError",
    "EndpointError",
    "AuthenticationFailed",
    "ConfigError",
    "InsecureBindError",
    "PayloadError",
    "SecurityError",
    "ChannelClosed",
    "ServiceLoadError",
]


class ZmsgError(Exception):
    """Base class of every error zmsg raises on purpose."""


class RpcException(ZmsgError):
    """An error that crosses the wire: raised by a handler, re-raised at the caller.

    ``error`` is a string or a dict (conventionally ``{"status": int, "message": str}``) and is
    delivered to the caller unchanged, as NestJS's ``RpcException`` does.
    """

    def __init__(self, error: str | dict[str, Any]) -> None:
        if not isinstance(error, (str, dict)):
            raise TypeError(f"RpcException error must be a str or a dict, not {type(error).__name__}")
        self.error: str | dict[str, Any] = error
        super().__init__(error)

    @property
    def status(self) -> int | None:
        """The ``status`` of a dict error, if it carries one."""
        if isinstance(self.error, dict):
            status = self.error.get("status")
            return status if isinstance(status, int) else None
        return None

    @property
    def message(self) -> str:
        if isinstance(self.error, dict):
            return str(self.error.get("message", self.error))
        return self.error

    def __repr__(self) -> str:
        return f"RpcException({self.error!r})"


class RequestTimeout(ZmsgError, TimeoutError):
    """No reply arrived within the request's timeout."""


class ServiceUnavailable(ZmsgError, ConnectionError):
    """The service could not be reached, or went away while a request was in flight."""


class AuthenticationFailed(ServiceUnavailable):
    """The service refused this client's CURVE credentials (or it expects CURVE and got none)."""


class MessageTooLarge(ZmsgError, ValueError):
    """A message exceeds the configured maximum size; it was not sent."""


class ReplyValidationError(ZmsgError, ValueError):
    """A reply did not match the ``response_type`` its caller asked for; the message names the field."""


class ProtocolError(ZmsgError):
    """A peer sent something that is not valid zmsg protocol."""


class FrameError(ProtocolError, ValueError):
    """A batch frame could not be parsed.

    ``records`` holds the records parsed before the fault, so they are not lost, and
    ``correlation_id`` the id of the faulty record when its header was readable (else 0).
    """

    def __init__(self, message: str, records: list[Any] | None = None, correlation_id: int = 0) -> None:
        super().__init__(message)
        self.records: list[Any] = records if records is not None else []
        self.correlation_id = correlation_id


class EndpointError(ZmsgError, OSError):
    """An endpoint is malformed, already in use, or cannot be bound or connected."""


class ConfigError(ZmsgError, ValueError):
    """A setting has an invalid value or is missing; the message names the setting and its source.

    Raised when configuration is read (command line, ``ZMSG_*`` environment, ``zmsg.toml``), so a
    bad deployment fails at start with the name to fix instead of deep inside a request.
    """


class InsecureBindError(ConfigError):
    """A service was asked to bind an address reachable from other hosts without CURVE.

    Without CURVE anyone who reaches the port can call every pattern and inject events, so
    zmsg refuses unless told otherwise: turn CURVE on, or say ``insecure=True`` (or restrict
    the peers with ``allow_from``). Loopback TCP, ipc and inproc need neither.
    """


class PayloadError(ZmsgError, ValueError):
    """A body could not be decoded, or did not match the type its handler declares."""


class SecurityError(ZmsgError, ValueError):
    """Keys are missing, malformed or unreadable, or CURVE is unavailable in this libzmq."""


class ChannelClosed(ServiceUnavailable):
    """The socket was closed; nothing more can be sent on it."""


class ServiceLoadError(ZmsgError, ImportError):
    """``MODULE:ATTR`` could not be imported, or did not give a ``zmsg.Service``."""

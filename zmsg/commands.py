"""The work behind ``zmsg call`` / ``emit`` / ``info`` / ``health``, and the exit codes.

Each command is a short conversation through ``SyncClientProxy`` (no event loop to start for a
one-shot call). The handshake comes first, so "nothing answers there" (``ServiceUnavailable``)
is told apart from "the service did not reply in time" (``RequestTimeout``): scripts and health
probes branch on the exit code, so every outcome has its own.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from enum import IntEnum
from typing import Any

import msgspec

from zmsg.codec import Pattern
from zmsg.config import Config
from zmsg.errors import (
    ConfigError,
    EndpointError,
    RequestTimeout,
    RpcException,
    ServiceUnavailable,
)
from zmsg.protocol import HEALTH_PATTERN, INFO_PATTERN, SCHEMA_PATTERN
from zmsg.sync_client import SyncClientProxy
from zmsg.transport import validate_endpoint

__all__ = [
    "ExitCode",
    "exit_code_for",
    "parse_pattern",
    "parse_data",
    "to_json",
    "open_client",
    "call",
    "emit",
    "info",
    "health",
    "format_info",
    "schema",
]


class ExitCode(IntEnum):
    """The ``zmsg`` command's exit statuses (documented in docs/cli.md)."""

    OK = 0
    ERROR = 1  # could not do the job: import failed, not a Service, endpoint in use, protocol error
    USAGE = 2  # bad arguments: unknown flag, invalid JSON, malformed endpoint, invalid setting
    RPC_ERROR = 3  # the service answered with an RpcException; its error object is on stderr as JSON
    TIMEOUT = 4  # the service answered the handshake but not the request within the timeout
    UNAVAILABLE = 5  # no zmsg service answered at the endpoint, or it is draining (health)
    INCOMPATIBLE = 6  # zmsg check: the running service breaks the saved contract
    INTERRUPTED = 130  # SIGINT before the command finished


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit status an error maps to; every error not listed is ``ERROR``."""
    if isinstance(exc, RpcException):
        return ExitCode.RPC_ERROR
    if isinstance(exc, RequestTimeout):
        return ExitCode.TIMEOUT
    if isinstance(exc, ServiceUnavailable):
        return ExitCode.UNAVAILABLE
    if isinstance(exc, ConfigError):
        return ExitCode.USAGE
    return ExitCode.ERROR


def _json(text: str, what: str) -> Any:
    try:
        return msgspec.json.decode(text.encode())
    except msgspec.DecodeError as exc:
        raise ConfigError(f"invalid JSON in {what}: {exc}") from None


def parse_pattern(text: str) -> Pattern:
    """A PATTERN argument: a JSON object when it starts with ``{``, else the string itself."""
    if text.lstrip().startswith("{"):
        value = _json(text, "PATTERN")
        if not isinstance(value, dict):
            raise ConfigError(f"PATTERN must be a string or a JSON object, got {text!r}")
        return value
    return text


def parse_data(text: str | None) -> Any:
    """A DATA argument: JSON text, ``-`` to read JSON from stdin, or absent (``None``)."""
    if text is None:
        return None
    if text == "-":
        return _json(sys.stdin.read(), "DATA (stdin)")
    return _json(text, "DATA")


def to_json(value: Any) -> str:
    """JSON for a reply: bytes become base64 strings (as msgspec writes them), anything JSON has
    no form for (a MessagePack extension type) its ``repr``, so printing never fails."""
    return msgspec.json.encode(value, enc_hook=repr).decode()


def open_client(
    target: str,
    config: Config,
    overrides: Mapping[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
) -> SyncClientProxy:
    """A client for ENDPOINT (``tcp://...``) or for a client NAME from the registry config.

    Options resolve as everywhere: flags > ``ZMSG_CLIENT(S)_*`` > ``zmsg.toml``.
    """
    if "://" in target:
        try:
            endpoints = [validate_endpoint(target)]
        except EndpointError as exc:
            raise ConfigError(str(exc)) from None
        settings = config.client(overrides=overrides, flags=flags)
    else:
        if not config.declares(target):
            raise ConfigError(
                f"{target!r} is neither an endpoint (tcp://HOST:PORT) nor a client declared in "
                f"zmsg.toml or ZMSG_CLIENTS_{target.upper()}_ENDPOINTS"
            )
        settings = config.client(target, overrides=overrides, flags=flags)
        endpoints = list(settings.endpoints)
    return SyncClientProxy(endpoints, **settings.sync_proxy_options())


def call(client: SyncClientProxy, pattern: Pattern, data: Any, metadata: dict[str, str] | None = None) -> Any:
    """Handshake, then one request: its reply (or the service's ``RpcException``)."""
    client.handshake()
    return client.send(pattern, data, metadata=metadata)


def emit(client: SyncClientProxy, pattern: Pattern, data: Any, metadata: dict[str, str] | None = None) -> None:
    """Connect (handshake and event subscription), publish one event, deliver it before closing."""
    client.connect()
    client.emit(pattern, data, metadata=metadata)


def info(client: SyncClientProxy) -> dict[str, Any]:
    client.handshake()
    answer: dict[str, Any] = client.send(INFO_PATTERN)
    return answer


def schema(client: SyncClientProxy) -> dict[str, Any]:
    """The service's AsyncAPI document (its ``$zmsg.schema`` answer)."""
    client.handshake()
    answer: dict[str, Any] = client.send(SCHEMA_PATTERN)
    return answer


def health(client: SyncClientProxy) -> dict[str, Any]:
    """The service's health answer; ``ServiceUnavailable`` when it is draining."""
    client.handshake()
    answer: dict[str, Any] = client.send(HEALTH_PATTERN)
    if answer.get("status") != "serving":
        raise ServiceUnavailable(f"service {answer.get('service')!r} is {answer.get('status')}")
    return answer


def format_info(answer: Mapping[str, Any]) -> str:
    """``$zmsg.info`` for people: one fact per line."""
    stats = answer.get("stats") or {}
    lines = [
        f"service   {answer.get('service')} {answer.get('version')} "
        f"(zmsg {answer.get('zmsg')}, protocol {answer.get('protocol')})",
        f"status    {answer.get('status')}, up {_duration(answer.get('uptime', 0.0))}, "
        f"{answer.get('in_flight', 0)} in flight",
        f"endpoint  {answer.get('endpoint')} (events on {answer.get('events')})",
        f"messages  {', '.join(answer.get('message_patterns') or []) or '-'}",
        f"events    {', '.join(answer.get('event_patterns') or []) or '-'}",
        f"stats     {' '.join(f'{k}={v}' for k, v in stats.items()) or '-'}",
    ]
    if answer.get("instance"):
        lines.insert(3, f"instance  {answer.get('instance')}")
    for worker in answer.get("workers") or []:
        lines.append(f"worker {worker.get('index')}  {worker.get('state')}, pid {worker.get('pid')}, "
                     f"{worker.get('endpoint')}, {worker.get('restarts', 0)} restart(s)")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s"

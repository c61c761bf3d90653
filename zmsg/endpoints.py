"""Endpoint strings: validating them and deriving one from another (sans-io, no sockets).

Kept below the transport so that configuration can check an endpoint without importing zmq.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from zmsg.errors import EndpointError, SecurityError

__all__ = ["validate_endpoint", "connectable", "events_bind_endpoint", "events_connect_endpoint",
           "is_local_endpoint", "parse_networks", "native_endpoint"]

_TCP = re.compile(r"^tcp://(?P<host>\[[^\]]+\]|[^:/\[\]]+):(?P<port>\d+|\*)$")


def validate_endpoint(endpoint: str) -> str:
    """Return ``endpoint`` if it is a usable ZeroMQ address, else raise EndpointError."""
    if not isinstance(endpoint, str):
        raise EndpointError(f"endpoint must be a string like 'tcp://127.0.0.1:5555', not {endpoint!r}")
    if endpoint.startswith("tcp://"):
        match = _TCP.match(endpoint)
        if not match:
            raise EndpointError(f"malformed endpoint {endpoint!r}: expected 'tcp://HOST:PORT'")
        port = match["port"]
        if port != "*" and not 0 <= int(port) <= 65535:
            raise EndpointError(f"malformed endpoint {endpoint!r}: port must be 0..65535")
        return endpoint
    if endpoint.startswith(("ipc://", "inproc://")) and len(endpoint.split("://", 1)[1]) > 0:
        return endpoint
    raise EndpointError(
        f"malformed endpoint {endpoint!r}: expected 'tcp://HOST:PORT', 'ipc://PATH' or 'inproc://NAME'"
    )


def native_endpoint(endpoint: str) -> tuple[str, str, int] | None:
    """``("tcp", host, port)`` or ``("ipc", path, 0)`` for an endpoint a client can dial without
    libzmq (zmsg.transport.zmtp_dealer); None otherwise (inproc://, wildcards, malformed)."""
    match = _TCP.match(endpoint)
    if match is not None:
        if "*" in (match["host"], match["port"]):
            return None  # a wildcard binds; it cannot be dialled
        return "tcp", match["host"].strip("[]"), int(match["port"])
    if endpoint.startswith("ipc://") and len(endpoint) > 6:
        return "ipc", endpoint[6:], 0
    return None


def connectable(bound: str) -> str:
    """The address a local client should use for a bound endpoint (wildcards become loopback)."""
    if bound.startswith("tcp://0.0.0.0:"):
        return "tcp://127.0.0.1:" + bound.rsplit(":", 1)[1]
    if bound.startswith("tcp://[::]:"):
        return "tcp://[::1]:" + bound.rsplit(":", 1)[1]
    return bound


def events_bind_endpoint(request_endpoint: str) -> str:
    """Where a service binds its event socket when not told: beside its request socket."""
    if request_endpoint.startswith("tcp://"):
        return request_endpoint.rsplit(":", 1)[0] + ":0"
    return request_endpoint + ".events"


def events_connect_endpoint(request_endpoint: str, advertised: str) -> str:
    """Where a client reaches the event socket a service advertised.

    For TCP the service only knows the port it bound; the host is the one the client already
    reaches the service by.
    """
    if request_endpoint.startswith("tcp://") and advertised.startswith("tcp://"):
        return request_endpoint.rsplit(":", 1)[0] + ":" + advertised.rsplit(":", 1)[1]
    return advertised


def is_local_endpoint(endpoint: str) -> bool:
    """True when only this host can reach ``endpoint``: ipc, inproc, or TCP on a loopback address
    (127.0.0.0/8, ::1, ``localhost``). Wildcards (``*``, ``0.0.0.0``, ``::``), other addresses
    and interface names are reachable from elsewhere."""
    if not endpoint.startswith("tcp://"):
        return endpoint.startswith(("ipc://", "inproc://"))
    match = _TCP.match(endpoint)
    if not match:
        return False
    host = match["host"].strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # an interface name (eth0) or a host name: not provably local
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def parse_networks(networks: Iterable[str]) -> tuple[str, ...]:
    """Validate CIDR texts (``10.0.0.0/8``, ``::1/128``, a bare address) for ``allow_from``.

    Returns them normalised; raises ``SecurityError`` naming the one that is not a network.
    """
    if isinstance(networks, str):
        networks = [networks]
    found: list[str] = []
    for text in networks:
        try:
            found.append(str(ipaddress.ip_network(str(text).strip(), strict=False)))
        except ValueError:
            raise SecurityError(f"allow_from: {text!r} is not a network (expected CIDR such as 10.1.0.0/16)") from None
    return tuple(found)

"""What a handler may know about the record it is handling."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Context"]


@dataclass(frozen=True, slots=True)
class Context:
    """Injected into a handler that declares a parameter annotated ``zmsg.Context``.

    ``pattern`` is the route as text (a dict pattern in its canonical JSON form),
    ``correlation_id`` the request's id (0 for events), ``peer`` the caller's ZeroMQ routing
    identity as hex (empty for events), ``deadline`` the loop time after which the caller has
    given up (None when the request carried no timeout), ``service`` the service's name.
    """

    pattern: str
    correlation_id: int
    peer: str
    service: str
    kind: str
    deadline: float | None = None

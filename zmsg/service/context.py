"""What a handler (or a middleware, or an exception handler) may know about the record it is handling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zmsg.protocol import EMPTY_METADATA

__all__ = ["Context"]


@dataclass(frozen=True, slots=True)
class Context:
    """Injected into a handler that declares a parameter annotated ``zmsg.Context``.

    ``pattern`` is the route as text (a dict pattern in its canonical JSON form),
    ``correlation_id`` the request's id (the emitter's sequence number for events), ``peer`` the
    caller's ZeroMQ routing identity as hex (the emitter id for events), ``service`` the
    service's name, ``kind`` ``"request"`` or ``"event"``, ``deadline`` the monotonic time after
    which the caller has given up (None when the request carried no timeout), ``metadata`` what
    the caller sent beside the payload (a read-only mapping, empty when none was sent) and
    ``payload`` the validated payload (what the handler receives; middleware reads it here).
    """

    pattern: str
    correlation_id: int
    peer: str
    service: str
    kind: str
    deadline: float | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: EMPTY_METADATA)  # shared, read-only
    payload: Any = None

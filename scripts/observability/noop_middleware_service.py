"""The bench service with one middleware that does nothing: the pipeline's own cost, for comparison.

    zmsg serve noop_middleware_service:service   (from scripts/observability)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from zmsg.bench.service import service

__all__ = ["service"]


async def _pass_through(ctx: Any, call_next: Callable[[], Awaitable[Any]]) -> Any:
    return await call_next()


service.use(_pass_through)

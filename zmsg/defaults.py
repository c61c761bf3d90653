"""Default values shared by the service, both clients and configuration (one place each)."""

from __future__ import annotations

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_HWM",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_FLUSH_AT",
    "DEFAULT_MAX_IN_FLIGHT",
]

DEFAULT_TIMEOUT = 10.0
"""Seconds a request waits for its reply unless told otherwise: callers never hang forever."""
DEFAULT_HEARTBEAT = 1.0
"""Seconds between ZMTP heartbeats; a peer silent for 3 intervals is dropped as dead."""
DEFAULT_HWM = 100_000
"""ZeroMQ high-water mark (messages) per peer where nothing more specific is set."""
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
"""Bytes of pattern + payload in one record."""
DEFAULT_FLUSH_AT = 32
"""Queued records that make a client flush its batch at once (two batches then overlap)."""
DEFAULT_MAX_IN_FLIGHT = 100_000
"""Requests one ClientProxy keeps outstanding before callers wait for a slot."""

"""Log lines that hostile or broken peers can trigger, at a bounded rate.

A peer sending garbage as fast as it can must not turn the service's log into the bottleneck
(or fill a disk, or block on a full stdout pipe). The first ``burst`` warnings of a window are
logged as they come; the rest are counted and summed up in one line when the next window opens.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, *, burst: int = 10, window: float = 10.0) -> None:
        self._log = logger
        self._burst = burst
        self._window = window
        self._window_start = 0.0
        self._in_window = 0
        self.suppressed = 0

    def warning(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._window_start >= self._window:
            if self.suppressed:
                self._log.warning("%d similar warning(s) suppressed in the last %.0f s", self.suppressed, self._window)
            self._window_start, self._in_window, self.suppressed = now, 0, 0
        if self._in_window < self._burst:
            self._in_window += 1
            self._log.warning(msg, *args)
        else:
            self.suppressed += 1

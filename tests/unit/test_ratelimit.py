"""Warnings that peers can trigger are bounded per window and the rest summed up."""

from __future__ import annotations

import logging

import pytest

from zmsg.service import ratelimit
from zmsg.service.ratelimit import RateLimitedLog


def test_burst_then_summary(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: now[0])
    limited = RateLimitedLog(logging.getLogger("test.ratelimit"), burst=3, window=10)
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        for i in range(50):
            limited.warning("bad message %d", i)
        assert [r.getMessage() for r in caplog.records] == ["bad message 0", "bad message 1", "bad message 2"]
        assert limited.suppressed == 47
        now[0] += 10
        limited.warning("later")
    assert [r.getMessage() for r in caplog.records][3:] == [
        "47 similar warning(s) suppressed in the last 10 s",
        "later",
    ]

"""Loss detection for events: per-emitter sequence numbers in, missed counts out (sans-io).

Theory of operation: PUB/SUB is at most once, so every event carries its emitter's id and a
sequence number (see docs/protocol.md, "Events: delivery guarantee"). A receiver that sees a
jump in one emitter's sequence has missed the events in between. After a reconnection, events
still buffered on the old connection can arrive *after* newer ones on the new connection, so a
gap is remembered as a range: an event that later falls inside it is a late arrival, and is no
longer counted as missed. Plain integers in, plain integers out: no socket, clock or loop.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EventGaps", "Observation", "IN_ORDER", "MAX_GAP_RANGES"]

MAX_GAP_RANGES = 1024
"""Gaps remembered per emitter: arrivals older than that many gaps stay counted as missed."""


@dataclass(frozen=True, slots=True)
class Observation:
    """What one event's sequence number told: ``missed`` new losses (>= 0), or a late arrival."""

    missed: int = 0
    previous: int = 0  # the emitter's last sequence before this event (for the log line)
    out_of_order: bool = False
    recovered: bool = False  # out of order *and* inside a known gap: no longer missed


IN_ORDER = Observation()
"""The observation of an event that came in sequence (shared: identity tells it apart cheaply)."""


class EventGaps:
    """Per-emitter last sequence, open gaps, and the missed-event totals they add up to."""

    __slots__ = ("last", "gaps", "missed", "missed_by_emitter", "out_of_order")

    def __init__(self) -> None:
        self.last: dict[int, int] = {}
        self.gaps: dict[int, list[list[int]]] = {}  # emitter -> [low, high] ranges, oldest first
        self.missed = 0
        self.missed_by_emitter: dict[int, int] = {}
        self.out_of_order = 0

    def observe(self, emitter: int, seq: int) -> Observation:
        """Account for the event ``seq`` from ``emitter``."""
        last = self.last.get(emitter)
        if last is None or seq == last + 1:
            self.last[emitter] = seq
            return IN_ORDER
        if seq > last + 1:
            missed = seq - last - 1
            self.missed += missed
            self.missed_by_emitter[emitter] = self.missed_by_emitter.get(emitter, 0) + missed
            gaps = self.gaps.setdefault(emitter, [])
            gaps.append([last + 1, seq - 1])
            if len(gaps) > MAX_GAP_RANGES:
                del gaps[0]
            self.last[emitter] = seq
            return Observation(missed=missed, previous=last)
        self.out_of_order += 1
        recovered = self._fill(emitter, seq)
        if recovered:
            self.missed -= 1
            self.missed_by_emitter[emitter] -= 1
        return Observation(previous=last, out_of_order=True, recovered=recovered)

    def _fill(self, emitter: int, seq: int) -> bool:
        gaps = self.gaps.get(emitter)
        if not gaps:
            return False
        for index, gap in enumerate(gaps):
            low, high = gap
            if low <= seq <= high:
                if low == high:
                    del gaps[index]
                elif seq == low:
                    gap[0] = seq + 1
                elif seq == high:
                    gap[1] = seq - 1
                else:
                    gap[1] = seq - 1
                    gaps.insert(index + 1, [seq + 1, high])
                return True
        return False

    def restore(self, sequences: dict[int, int]) -> None:
        """Seed the last sequence per emitter, e.g. from what a previous process persisted."""
        for emitter, seq in sequences.items():
            if seq > self.last.get(emitter, 0):
                self.last[emitter] = seq

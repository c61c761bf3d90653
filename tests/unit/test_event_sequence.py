"""EventGaps: loss detection from per-emitter sequence numbers, on plain integers."""

from __future__ import annotations

from hypothesis import given, strategies as st

from zmsg.event_sequence import IN_ORDER, MAX_GAP_RANGES, EventGaps


def test_in_order_events_miss_nothing() -> None:
    gaps = EventGaps()
    for seq in range(1, 100):
        assert gaps.observe(1, seq) is IN_ORDER
    assert gaps.missed == 0 and gaps.last == {1: 99}


def test_a_jump_counts_the_events_in_between_per_emitter() -> None:
    gaps = EventGaps()
    gaps.observe(1, 1)
    seen = gaps.observe(1, 5)
    assert (seen.missed, seen.previous) == (3, 1)
    gaps.observe(2, 10)  # a new emitter starts wherever it is: nothing missed
    gaps.observe(2, 12)
    assert gaps.missed == 4 and gaps.missed_by_emitter == {1: 3, 2: 1}
    assert gaps.gaps == {1: [[2, 4]], 2: [[11, 11]]}


def test_a_late_arrival_inside_a_gap_is_no_longer_missed_and_splits_it() -> None:
    gaps = EventGaps()
    for seq in (1, 10):
        gaps.observe(7, seq)
    assert gaps.missed == 8
    seen = gaps.observe(7, 5)
    assert seen.out_of_order and seen.recovered
    assert gaps.gaps[7] == [[2, 4], [6, 9]] and gaps.missed == 7
    gaps.observe(7, 2)
    gaps.observe(7, 9)
    assert gaps.gaps[7] == [[3, 4], [6, 8]] and gaps.missed == 5
    gaps.observe(7, 3)
    gaps.observe(7, 4)
    assert gaps.gaps[7] == [[6, 8]]


def test_a_duplicate_or_old_event_outside_any_gap_is_out_of_order_only() -> None:
    gaps = EventGaps()
    for seq in (1, 2, 3):
        gaps.observe(1, seq)
    seen = gaps.observe(1, 2)
    assert seen.out_of_order and not seen.recovered
    assert gaps.missed == 0 and gaps.out_of_order == 1


def test_restore_carries_loss_detection_across_restarts() -> None:
    before = EventGaps()
    before.observe(3, 40)
    after = EventGaps()
    after.restore(before.last)
    after.restore({3: 10})  # an older snapshot never moves the sequence back
    assert after.observe(3, 43).missed == 2


def test_old_gaps_are_forgotten_past_the_bound() -> None:
    gaps = EventGaps()
    seq = 1
    gaps.observe(1, seq)
    for _ in range(MAX_GAP_RANGES + 5):
        seq += 2
        gaps.observe(1, seq)
    assert len(gaps.gaps[1]) == MAX_GAP_RANGES
    assert not gaps.observe(1, 2).recovered  # the oldest gap was dropped: stays counted


@given(st.permutations(list(range(1, 40))), st.sets(st.integers(1, 39)))
def test_missed_is_exactly_what_never_arrived(order: list[int], lost: set[int]) -> None:
    """Whatever the arrival order, once every sequence up to the newest has been seen or
    lost, ``missed`` counts exactly the lost ones below the newest seen."""
    gaps = EventGaps()
    gaps.observe(5, 0)  # the emitter's start is known (as after restore)
    arrived = [s for s in order if s not in lost]
    for seq in arrived:
        gaps.observe(5, seq)
    if arrived:
        newest = max(arrived)
        gone = {s for s in lost if s < newest}
        # Arrivals older than the newest are recovered only when they fall in a gap: with
        # fewer gaps than MAX_GAP_RANGES, none is forgotten, so the count is exact.
        assert gaps.missed == len(gone)

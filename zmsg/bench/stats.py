"""How sure a repeated measurement is: a distribution-free interval for the median of N runs.

Sweep cells on a shared 2-CPU VM move by +-0.1-0.15 between repeats, so a median just under a
target says little on its own. The k-th smallest and the k-th largest of n independent runs
bracket the true median with probability 1 - 2 P(Binomial(n, 1/2) < k), whatever the runs'
distribution (no normality assumed, no bootstrap needed), which is what a verdict "beyond the
noise" can rest on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["CONFIDENCE", "median_interval", "verdict"]

CONFIDENCE = 0.9
"""The coverage a verdict asks of its interval (the narrowest order-statistic interval reaching it)."""


def _coverage(n: int, k: int) -> float:
    """P(the k-th smallest <= median <= the k-th largest) for n runs of any continuous distribution."""
    below = sum(math.comb(n, i) for i in range(k)) / (1 << n)
    return 1.0 - 2.0 * below


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(low, high, coverage): the narrowest interval [k-th smallest, k-th largest] of ``values``
    that holds their true median with probability >= ``confidence``; with too few values for that,
    their whole range and the smaller coverage it has (3 runs: 0.75, 5: 0.94, 10 -> 2nd..9th: 0.98).
    """
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    n = len(ordered)
    k = 1
    while k + 1 <= (n + 1) // 2 and _coverage(n, k + 1) >= confidence:
        k += 1
    return ordered[k - 1], ordered[n - k], _coverage(n, k)


def verdict(rate: tuple[float, float], p50: tuple[float, float], min_rate: float, max_p50: float) -> str:
    """The point's verdict from the (low, high) intervals of its two median ratios: "met" when
    both clear their targets, "missed" when either lies wholly on the wrong side, "unclear" when
    the noise could put the point on either side."""
    if rate[1] < min_rate or p50[0] > max_p50:
        return "missed"
    if rate[0] >= min_rate and p50[1] <= max_p50:
        return "met"
    return "unclear"

"""Distribution values as Cloud Monitoring serialises them, and percentiles read from them.

``request_latencies`` is a DELTA DISTRIBUTION in milliseconds. Google does not document
the bucket layout Cloud Run uses; the lab uses exponential buckets (``BUCKETS``), and a
reader must take the layout from each reply's ``bucketOptions`` (the product does).

A percentile of a distribution is read from its buckets alone, as Google's percentile
aligners must (the raw values are gone): find the bucket that holds the rank, then
interpolate linearly inside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# Exponential buckets (monitoring/api/ref_v3/rest/v3/TypedValue#exponential): finite
# bucket i (1 <= i <= N) holds [scale * growth^(i-1), scale * growth^i); bucket 0 is the
# underflow, N+1 the overflow.
NUM_FINITE = 64
GROWTH = 1.4
SCALE_MS = 1.0
BUCKETS: dict[str, Any] = {
    "exponentialBuckets": {
        "numFiniteBuckets": NUM_FINITE,
        "growthFactor": GROWTH,
        "scale": SCALE_MS,
    }
}


def bucket_of(value_ms: float) -> int:
    if value_ms < SCALE_MS:
        return 0
    index = math.floor(math.log(value_ms / SCALE_MS, GROWTH)) + 1
    return min(index, NUM_FINITE + 1)


def bounds(index: int) -> tuple[float, float]:
    """The [lower, upper) edges of bucket ``index``; the overflow's upper edge is infinite."""
    if index == 0:
        return 0.0, SCALE_MS
    lower = SCALE_MS * GROWTH ** (index - 1)
    upper = math.inf if index > NUM_FINITE else SCALE_MS * GROWTH**index
    return lower, upper


def distribution(values_ms: Sequence[float]) -> dict[str, Any]:
    """The ``distributionValue`` of these samples: count, mean, deviation and buckets."""
    count = len(values_ms)
    mean = sum(values_ms) / count if count else 0.0
    counts = [0] * (NUM_FINITE + 2)
    for v in values_ms:
        counts[bucket_of(v)] += 1
    # Trailing empty buckets may be left out (TypedValue Distribution.bucketCounts).
    while counts and counts[-1] == 0:
        counts.pop()
    return {
        "count": str(count),
        "mean": mean,
        "sumOfSquaredDeviation": sum((v - mean) ** 2 for v in values_ms),
        "bucketOptions": BUCKETS,
        "bucketCounts": [str(c) for c in counts],
    }


def percentile(values_ms: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of the samples, read from their buckets."""
    if not values_ms:
        return 0.0
    counts = [0] * (NUM_FINITE + 2)
    for v in values_ms:
        counts[bucket_of(v)] += 1
    rank = fraction * len(values_ms)
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            lower, upper = bounds(index)
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return bounds(len(counts) - 1)[0]

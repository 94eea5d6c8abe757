"""Token buckets per key (customer id, client IP): pure, with the clock passed in.

A bucket holds ``burst`` tokens and refills at ``rate_per_s``; a request takes one. When empty the
answer says how long until a token is back, which becomes ``Retry-After``. Buckets idle long
enough to be full again are forgotten, so the table is bounded by recent activity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now_s: float) -> float:
        """Take one token for ``key``: 0.0 if allowed, else seconds to wait before retrying."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_full(now_s)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now_s)
        elapsed_s = max(0.0, now_s - bucket.at_s)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed_s * self.rate_per_s)
        bucket.at_s = now_s
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s

    def _forget_full(self, now_s: float) -> None:
        full_after_s = self.burst / self.rate_per_s
        stale = [k for k, b in self._buckets.items() if now_s - b.at_s >= full_after_s]
        for key in stale:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:  # still full: drop the oldest half
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k].at_s)
            for key in oldest[: len(oldest) // 2]:
                del self._buckets[key]


def retry_after_header(wait_s: float) -> str:
    """Retry-After is whole seconds (RFC 9110 10.2.3); never 0 for a refused request."""
    return str(max(1, math.ceil(wait_s)))

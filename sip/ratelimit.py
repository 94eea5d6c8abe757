"""Per-source token buckets for new INVITEs, sans-I/O (the caller passes the time in).

An INVITE flood from one address is answered 503 with Retry-After (RFC 3261 21.5.4) instead of
costing an RTP port, a call task and an agent link each. The table of sources is bounded:
a flood from many spoofed addresses evicts the least recently seen bucket, never grows memory.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_SOURCES = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, max_sources: int = MAX_SOURCES) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._max_sources = max_sources
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, source: str, now_s: float) -> bool:
        """Take one token for ``source``; False when its bucket is empty."""
        bucket = self._buckets.pop(source, None)  # re-inserted last: the dict is LRU-ordered
        if bucket is None:
            bucket = _Bucket(float(self.burst), now_s)
            if len(self._buckets) >= self._max_sources:
                del self._buckets[next(iter(self._buckets))]
        elapsed = max(0.0, now_s - bucket.updated_s)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
        bucket.updated_s = now_s
        self._buckets[source] = bucket
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def retry_after_s(self, source: str) -> int:
        """Whole seconds until ``source`` has a token again (at least 1)."""
        bucket = self._buckets.get(source)
        missing = 1.0 - (bucket.tokens if bucket else 1.0)
        return max(1, int(missing / self.rate_per_s + 0.999))

    def __len__(self) -> int:
        return len(self._buckets)

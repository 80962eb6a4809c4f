"""Per-operation call counts, failures and latency, as a middleware."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .middleware import OperationMiddleware

__all__ = ["MetricsMiddleware", "OperationStats"]

T = TypeVar("T")

_BUCKETS = 40
_BASE_SECONDS = 1e-6  # bucket k holds latencies in [1us * 2**(k-1), 1us * 2**k)


@dataclass
class OperationStats:
    """What one operation (hook) did: calls, failures by error class, and latency."""

    calls: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    total_seconds: float = 0.0
    max_seconds: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * _BUCKETS)

    @property
    def mean_seconds(self) -> float:
        return self.total_seconds / self.calls if self.calls else 0.0

    def quantile(self, q: float) -> float:
        """Return an upper bound of the ``q`` quantile (0 < q <= 1), within a factor of 2."""
        if not 0 < q <= 1:
            raise ValueError("q must be in (0, 1]")
        if not self.calls:
            return 0.0
        rank = math.ceil(q * self.calls)
        seen = 0
        for bucket, count in enumerate(self.histogram):
            seen += count
            if seen >= rank:
                return min(_BASE_SECONDS * 2.0**bucket, self.max_seconds)
        return self.max_seconds

    def _record(self, seconds: float, failure: str | None) -> None:
        self.calls += 1
        self.total_seconds += seconds
        if seconds > self.max_seconds:
            self.max_seconds = seconds
        ratio = seconds / _BASE_SECONDS
        bucket = 0 if ratio <= 1 else min(_BUCKETS - 1, math.ceil(math.log2(ratio)))
        self.histogram[bucket] += 1
        if failure is not None:
            self.failures[failure] = self.failures.get(failure, 0) + 1


class MetricsMiddleware(OperationMiddleware):
    """Count calls and failures and time every store operation.

    ``snapshot()`` returns copies keyed by hook name (``session_get``, ``session_update``...).
    A failure is any exception, counted under its class name (``SessionNotFoundError`` included:
    it is the answer "missing", which callers may want to see).
    """

    def __init__(self, timer: Callable[[], float] = time.perf_counter) -> None:
        self._timer = timer
        self._stats: dict[str, OperationStats] = {}

    async def around(self, operation: str, call: Awaitable[T]) -> T:
        started = self._timer()
        failure: str | None = None
        try:
            return await call
        except BaseException as exc:
            failure = type(exc).__name__
            raise
        finally:
            stats = self._stats.get(operation)
            if stats is None:
                stats = self._stats[operation] = OperationStats()
            stats._record(self._timer() - started, failure)

    def snapshot(self) -> dict[str, OperationStats]:
        """Return a copy of the statistics so far, by operation."""
        return {
            name: OperationStats(
                s.calls, dict(s.failures), s.total_seconds, s.max_seconds, list(s.histogram)
            )
            for name, s in self._stats.items()
        }

    def reset(self) -> None:
        """Forget everything recorded so far."""
        self._stats.clear()

"""Wall-clock time as the layer's records keep it (shared by the relay and the limits)."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["now_ms"]


def now_ms(clock: Callable[[], float] = time.time) -> int:
    """``clock()`` (Unix seconds) in whole milliseconds: the unit of every deadline and
    reservation time the layer writes into the store, so instances compare them directly."""
    return int(clock() * 1000)

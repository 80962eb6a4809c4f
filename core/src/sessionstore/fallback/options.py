"""The options of the fallback (``open_store(..., fallback_options={...})``), checked once."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError

__all__ = ["FALLBACK_OPTIONS", "check_fallback_options"]

FALLBACK_OPTIONS = ("failures", "probe_after", "cache_size", "on_conflict", "clock")
"""The keys ``open_store(..., fallback_options=...)`` accepts."""


def check_fallback_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``fallback_options`` and return them as keyword arguments of the middleware.

    Raises :class:`~sessionstore.ConfigurationError` naming an unknown key or a bad value.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(
            f"fallback_options must be a mapping, not {type(options).__name__}"
        )
    unknown = sorted(set(options) - set(FALLBACK_OPTIONS), key=str)
    if unknown:
        raise ConfigurationError(
            f"unknown fallback option(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(FALLBACK_OPTIONS)}"
        )
    failures = options.get("failures", 3)
    if type(failures) is not int or failures < 1:
        raise ConfigurationError(f"fallback option failures must be an int >= 1, not {failures!r}")
    probe_after = options.get("probe_after", 5.0)
    if (
        isinstance(probe_after, bool)
        or not isinstance(probe_after, int | float)
        or not 0 <= probe_after < math.inf
    ):
        raise ConfigurationError(
            f"fallback option probe_after must be a finite number of seconds >= 0, "
            f"not {probe_after!r}"
        )
    cache_size = options.get("cache_size", 10_000)
    if type(cache_size) is not int or cache_size < 0:
        raise ConfigurationError(
            f"fallback option cache_size must be an int >= 0, not {cache_size!r}"
        )
    on_conflict = options.get("on_conflict")
    if on_conflict is not None and not callable(on_conflict):
        raise ConfigurationError(
            "fallback option on_conflict must be a function taking a FallbackConflict, or None"
        )
    clock = options.get("clock", time.monotonic)
    if not callable(clock):
        raise ConfigurationError(
            "fallback option clock must be a function returning seconds (like time.monotonic)"
        )
    return {
        "failures": failures,
        "probe_after": float(probe_after),
        "cache_size": cache_size,
        "on_conflict": on_conflict,
        "clock": clock,
    }

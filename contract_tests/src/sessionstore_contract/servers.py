"""The rule for tests that need a server: skip on a developer's machine, fail in CI.

A developer without Redis (or another server a backend talks to) still gets a green run that
names what it did not test; CI, which is meant to have every server, cannot pass by skipping.
Backend authors use it in their own tests the same way.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["in_ci", "skip_or_fail"]


def in_ci() -> bool:
    """Whether this run is CI: the ``CI`` environment variable is ``true`` (any case)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the current test for ``reason``; fail it instead when :func:`in_ci`."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a skipped server test counts as a failure)", pytrace=False)
    pytest.skip(reason)

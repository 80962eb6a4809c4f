"""Stopping background tasks: one way, so none swallows a cancellation aimed at its caller."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has finished; their outcomes are dropped.

    Unlike ``task.cancel()`` then ``await task`` under ``suppress(CancelledError)``, a
    cancellation of the *caller* while it waits is not swallowed: it propagates.
    """
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

"""Concurrency: operations that race, recorded as histories and checked for linearizability."""

from __future__ import annotations

__all__ = ["ConcurrencyContract"]


class ConcurrencyContract:
    """Part of :class:`~sessionstore_contract.StoreContract`."""

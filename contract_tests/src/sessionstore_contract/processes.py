"""Processes and durability: several OS processes on one store, and a store closed and reopened."""

from __future__ import annotations

__all__ = ["ProcessContract"]


class ProcessContract:
    """Part of :class:`~sessionstore_contract.StoreContract`."""

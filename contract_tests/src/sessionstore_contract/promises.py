"""One deterministic test per sentence of the hookspecs and guarantees not covered elsewhere."""

from __future__ import annotations

__all__ = ["PromiseContract"]


class PromiseContract:
    """Part of :class:`~sessionstore_contract.StoreContract`."""

"""Limits: every size, count and character the core accepts, and ids that came back."""

from __future__ import annotations

__all__ = ["BoundaryContract"]


class BoundaryContract:
    """Part of :class:`~sessionstore_contract.StoreContract`."""

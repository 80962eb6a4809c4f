"""Capabilities a backend may declare it lacks (through the ``store_capabilities`` hook)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Capability"]


class Capability(StrEnum):
    """Guarantees that depend on what a backend's storage can do.

    A backend lists the ones it lacks, each with a reason; the contract suite skips their tests
    with that reason and never silently.
    """

    ATOMIC_BATCH_UPDATE = "atomic_batch_update"
    """``update_sessions_batch`` is all-or-nothing for any set of ids."""
    SHARED_HANDLES = "shared_handles"
    """Two stores opened with the same spec and namespace see the same sessions."""
    CONTROLLABLE_CLOCK = "controllable_clock"
    """Expiry follows the store's ``clock`` option, so tests can move time."""
    SHARED_PROCESSES = "shared_processes"
    """Stores opened with the same spec and namespace in several OS processes see the same
    sessions, and compare-and-set, batches and event appends stay atomic across them."""
    DURABLE = "durable"
    """What a store acknowledged is still there after every handle was closed and a new one was
    opened with the same spec and namespace."""
    EVENT_NOTIFICATIONS = "event_notifications"
    """The backend tells the store when a session's events changed (the optional ``event_watch``
    hook), so ``watch_events`` wakes on a change rather than polling. The core declares it
    missing for a backend without that hook."""

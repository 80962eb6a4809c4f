"""What every part of the contract suite shares: Hypothesis settings, sessions, and checks."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

from sessionstore import (
    EventNotFoundError,
    Session,
    SessionNotFoundError,
    SessionStore,
    TransportType,
)

__all__ = ["CONTRACT_PHASES", "CONTRACT_SETTINGS", "assert_gone", "new_session"]

SHRINK_VARIABLE = "SESSIONSTORE_CONTRACT_SHRINK"
CONTRACT_PHASES = (
    [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]
    if os.environ.get(SHRINK_VARIABLE, "").strip() == "1"
    else [Phase.explicit, Phase.reuse, Phase.generate]
)
"""No shrinking unless ``SESSIONSTORE_CONTRACT_SHRINK=1``: a failing example is reported as
found. Shrinking large values (megabyte payloads, thousands of ids) took Hypothesis minutes per
failure, and every promise also has a deterministic test that names it, so a fast verdict matters
more than a minimal example; set the variable when debugging a failure of the randomized tests."""

CONTRACT_SETTINGS = settings(
    deadline=None,
    phases=CONTRACT_PHASES,
    # differing_executors: a test module may subclass StoreContract once per configuration (one
    # server, a cluster...); each subclass runs the same test on its own target, and no state
    # lives on the instance, so the runs are independent as the health check wants.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.differing_executors,
    ],
)


def new_session(session_id: str | None = None, **fields: Any) -> Session:
    """A never-stored HTTP session, with ``session_id`` and ``fields`` when given."""
    if session_id is not None:
        fields["id"] = session_id
    return Session(transport=TransportType.HTTP, **fields)


async def assert_gone(
    store: SessionStore, session_id: str, session: Session, event_id: str
) -> None:
    """Every operation treats ``session_id`` as absent (``event_id`` was one of its events)."""
    with pytest.raises(SessionNotFoundError):
        await store.get_session(session_id)
    assert await store.get_sessions_batch([session_id]) == []
    assert session_id not in [s.id for s in await store.list_sessions()]
    with pytest.raises(SessionNotFoundError):
        await store.update_session(session)
    with pytest.raises(SessionNotFoundError):
        await store.get_last_event_id(session_id)
    with pytest.raises(SessionNotFoundError):
        await store.store_last_event_id(session_id, "e2")
    with pytest.raises(SessionNotFoundError):
        await store.append_event(session_id, "stream", b"more")
    with pytest.raises(EventNotFoundError):
        await store.replay_events_after(event_id)

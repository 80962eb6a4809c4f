"""The fallback middleware in front of a real redis-server that is stopped and started again."""

from __future__ import annotations

import pytest
from redis_servers import ServerFactory

from sessionstore import Session, StoreUnavailableError, TransportType, open_store


def session(session_id: str, **metadata: object) -> Session:
    return Session(id=session_id, transport=TransportType.HTTP, metadata=dict(metadata))


async def test_an_outage_is_served_from_memory_and_reconciled_without_overwriting(
    make_redis_server: ServerFactory,
) -> None:
    # Append-only persistence, so a stopped and restarted server still holds what it acknowledged.
    server = make_redis_server(config={"appendonly": "yes", "appendfsync": "always"})
    breaker_time = [0.0]
    options = {"failures": 2, "probe_after": 5.0, "clock": lambda: breaker_time[0]}
    async with open_store(
        server.url, timeout=1, fallback="memory", fallback_options=options
    ) as store:
        assert store.fallback is not None
        known = await store.create_session(session("known", n=0))
        other = await store.create_session(session("other", by="us"))
        assert store.fallback.state == "closed"

        server.stop()
        with pytest.raises(StoreUnavailableError):  # one failure: below the threshold
            await store.get_session("known")
        known = await store.get_session("known")  # the second opens the circuit: from memory
        assert store.fallback.state == "open"
        assert known.metadata == {"n": 0}
        for n in (1, 2):
            known.metadata = {"n": n}
            known = await store.update_session(known)
        assert known.version == 3
        other.metadata = {"by": "us, during the outage"}
        await store.update_session(other)
        await store.create_session(session("during"))
        await store.store_last_event_id("during", "ev-7")
        with pytest.raises(StoreUnavailableError, match="fallback"):
            await store.count_sessions()

        server.restart()
        async with open_store(server.url) as elsewhere:  # another instance, never cut off
            theirs = await elsewhere.get_session("other")
            theirs.metadata = {"by": "another instance"}
            await elsewhere.update_session(theirs)

        breaker_time[0] += 6  # past probe_after: the next operation probes and reconciles
        assert (await store.get_session("known")).version == 3
        assert store.fallback.state == "closed"
        assert [(c.session_id, c.what) for c in store.fallback.conflicts] == [("other", "update")]

    async with open_store(server.url) as primary:
        reconciled = await primary.get_session("known")
        assert (reconciled.version, reconciled.metadata) == (3, {"n": 2})
        assert (await primary.get_session("other")).metadata == {"by": "another instance"}
        assert (await primary.get_session("during")).version == 1
        assert await primary.get_last_event_id("during") == "ev-7"
        assert await primary.count_sessions() == 3

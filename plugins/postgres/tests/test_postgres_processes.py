"""Four processes x 250 ``modify_session`` increments of one counter end at exactly 1,000.

The contract suite's own process test (``test_processes_lose_no_update``, run on PostgreSQL by
test_postgres_contract.py) makes 4 x 50 increments; this is the issue's size, with the suite's
scenario and process runner."""

from __future__ import annotations

import asyncio

from sessionstore import Session, SessionStore, TransportType
from sessionstore_contract import ContractTarget
from sessionstore_contract.processes import run_in_processes

PROCESSES = 4
INCREMENTS = 250


def test_four_processes_lose_no_increment(postgres_url: str) -> None:
    target = ContractTarget.from_spec(postgres_url)

    async def scenario(store: SessionStore) -> None:
        await store.create_session(
            Session(id="counter", transport=TransportType.HTTP, metadata={"count": 0})
        )
        await asyncio.to_thread(
            run_in_processes,
            target,
            store.namespace,
            "sessionstore_contract.processes:increment_scenario",
            [{"counter": "counter", "increments": INCREMENTS}] * PROCESSES,
            options={"modify_attempts": 100_000},
            timeout=300,
        )
        counter = await store.get_session("counter")
        assert counter.metadata["count"] == PROCESSES * INCREMENTS
        assert counter.version == PROCESSES * INCREMENTS + 1

    target.run(scenario)

"""Concurrency: operations that race, recorded as histories and checked for linearizability.

For every pair of operations that can race (update/update, batch/batch, batch/update, last event
id/update, append/append, create/create, delete/update, dump and load against writes), several
clients run a fixed program of operations at once, and every operation is recorded with its
arguments, result, call and return time (:mod:`~sessionstore_contract.histories`). The history must
be explained by some order of the operations that respects real time and the contract run
sequentially (:class:`~sessionstore_contract.histories.StoreModel`), as the checker in
:mod:`~sessionstore_contract.linearizability` decides; a failure prints the shortest cut of the
history that no order explains.

Each race runs three ways: tasks sharing one handle; one handle per client, where the backend
offers ``shared_handles``; and clients in several OS processes, where it offers
``shared_processes``. The programs are deterministic (seeded per client); only the interleaving
varies, and every race is run on every backend the same way.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from sessionstore import Capability, SessionStore

from .histories import RecordingClient, StoreModel, from_json, operation_key, to_json
from .linearizability import Operation, assert_linearizable
from .target import ContractTarget

__all__ = ["ConcurrencyContract", "Race", "process_worker", "run_race"]

MODES = ("tasks", "handles", "processes")
CLIENTS = 4
PROCESSES = 2  # each runs CLIENTS // PROCESSES clients as tasks
ROUNDS = 6

Program = Callable[[RecordingClient, random.Random, int], Awaitable[None]]


async def _pause() -> None:
    await asyncio.sleep(0)  # let the other clients' operations start: that is the race


async def _read_then_update(client: RecordingClient, session_id: str, tag: str) -> None:
    session = await client.get(session_id)
    await _pause()
    if session is not None:
        await client.update(session, tag)


async def _update_update(client: RecordingClient, rng: random.Random, index: int) -> None:
    for round_ in range(ROUNDS):
        await _read_then_update(client, rng.choice(("a", "b")), f"{client.process}/{round_}")


async def _batch_batch(client: RecordingClient, rng: random.Random, index: int) -> None:
    for round_ in range(ROUNDS):
        ids = rng.sample(("a", "b", "c"), 2)
        read = [await client.get(i) for i in ids]
        await _pause()
        sessions = [s for s in read if s is not None]
        if sessions:
            await client.update_batch(sessions, f"{client.process}/{round_}")


async def _batch_update(client: RecordingClient, rng: random.Random, index: int) -> None:
    if index % 2:
        await _update_update(client, rng, index)
    else:
        await _batch_batch(client, rng, index)


async def _last_event_id_update(client: RecordingClient, rng: random.Random, index: int) -> None:
    for round_ in range(ROUNDS):
        session_id = rng.choice(("a", "b"))
        choice = rng.random()
        if choice < 0.4:
            await _read_then_update(client, session_id, f"{client.process}/{round_}")
        elif choice < 0.8:
            await client.set_last(session_id, f"{client.process}/{round_}")
        else:
            await client.get_last(session_id)
        await _pause()


async def _append_append(client: RecordingClient, rng: random.Random, index: int) -> None:
    mine: list[tuple[str, str]] = []
    for round_ in range(ROUNDS * 2):
        session_id = rng.choice(("a", "b"))
        if mine and rng.random() < 0.3:
            await client.replay(*rng.choice(mine))
        else:
            stream_id = rng.choice(("1", "_GET_stream"))
            event_id = await client.append(session_id, stream_id, f"{client.process}/{round_}")
            if event_id is not None:
                mine.append((session_id, event_id))
        await _pause()


async def _create_create(client: RecordingClient, rng: random.Random, index: int) -> None:
    for round_ in range(ROUNDS):
        session_id = rng.choice(("a", "b"))
        choice = rng.random()
        if choice < 0.6:
            await client.create(session_id, f"{client.process}/{round_}")
        elif choice < 0.8:
            await client.get(session_id)
        else:
            await client.delete(session_id)
        await _pause()


async def _delete_update(client: RecordingClient, rng: random.Random, index: int) -> None:
    for round_ in range(ROUNDS):
        session_id = rng.choice(("a", "b"))
        choice = rng.random()
        if choice < 0.5:
            await _read_then_update(client, session_id, f"{client.process}/{round_}")
        elif choice < 0.75:
            await client.delete(session_id)
        else:
            await client.create(session_id, f"{client.process}/{round_}")
        await _pause()


async def _dump_load(client: RecordingClient, rng: random.Random, index: int) -> None:
    # The clients take turns at four roles on the round's session, so in every round each role
    # races the other three on the same session.
    for round_ in range(ROUNDS):
        session_id = ("a", "b")[round_ % 2]
        tag = f"{client.process}/{round_}"
        role = (index + round_) % 4
        if role == 0:  # move the session out and back in, as a migration would
            dump = await client.dump(session_id)
            await _pause()
            if dump is not None and await client.delete(session_id):
                if index % 2:  # half the time, others may act between the delete and the load
                    await _pause()
                await client.load(dump)
        elif role == 1:  # several writes in one go: a dump sees all of them or none
            session = await client.get(session_id)
            if session is not None:
                await client.update(session, tag)
            await client.set_last(session_id, tag)
            await client.append(session_id, rng.choice(("1", "2")), tag)
        elif role == 2:  # create it the moment it is gone, racing the migration's load
            for _ in range(4):
                if await client.create(session_id, tag) is not None:
                    break
                await _pause()
            await client.dump(session_id)
        else:
            await client.dump(session_id)
        await _pause()


@dataclass(frozen=True)
class Race:
    """One pair of operations that can race: the sessions created first, and each client's
    program. ``by_key``: each session's sub-history is checked on its own (no operation spans
    sessions); ``batches``: the programs use ``update_sessions_batch``."""

    program: Program
    created: tuple[str, ...] = ("a", "b")
    by_key: bool = True
    batches: bool = False


RACES: dict[str, Race] = {
    "update_update": Race(_update_update),
    "batch_batch": Race(_batch_batch, ("a", "b", "c"), by_key=False, batches=True),
    "batch_update": Race(_batch_update, ("a", "b", "c"), by_key=False, batches=True),
    "last_event_id_update": Race(_last_event_id_update),
    "append_append": Race(_append_append),
    "create_create": Race(_create_create, created=()),
    "delete_update": Race(_delete_update),
    "dump_load": Race(_dump_load),
}


def _session_ids(race: Race) -> tuple[str, ...]:
    return ("a", "b", "c") if race.batches else ("a", "b")


async def _clients(clients: Sequence[RecordingClient], race: Race, offset: int = 0) -> None:
    await asyncio.gather(
        *(
            race.program(client, random.Random(f"{client.process}"), offset + index)
            for index, client in enumerate(clients)
        )
    )


async def process_worker(store: SessionStore, params: dict[str, Any]) -> Any:
    """The programs of one OS process (run by ``sessionstore_contract.worker``): its clients
    as tasks on one handle; returns their history as JSON."""
    race = RACES[params["race"]]
    history: list[Operation] = []
    first = params["first_client"]
    clients = [
        RecordingClient(store, f"client{first + n}", history) for n in range(params["clients"])
    ]
    await _clients(clients, race, first)
    return to_json(history)


async def run_race(target: ContractTarget, race_name: str, mode: str) -> list[Operation]:
    """Run race ``race_name`` on a fresh namespace of ``target``, its clients as ``mode`` says
    (``tasks``, ``handles`` or ``processes``); return the whole history, setup first."""
    race = RACES[race_name]
    history: list[Operation] = []
    store = target.open()
    handles: list[SessionStore] = []
    try:
        setup = RecordingClient(store, "setup", history)
        for session_id in race.created:
            await setup.create(session_id, "initial")
        if mode == "tasks":
            await _clients(
                [RecordingClient(store, f"client{n}", history) for n in range(CLIENTS)], race
            )
        elif mode == "handles":
            handles = [target.open(namespace=store.namespace) for _ in range(CLIENTS)]
            clients = [RecordingClient(h, f"client{n}", history) for n, h in enumerate(handles)]
            await _clients(clients, race)
        else:
            from .processes import run_in_processes

            per_process = CLIENTS // PROCESSES
            params = [
                {"race": race_name, "first_client": p * per_process, "clients": per_process}
                for p in range(PROCESSES)
            ]
            results = await asyncio.to_thread(
                run_in_processes,
                target,
                store.namespace,
                "sessionstore_contract.concurrency:process_worker",
                params,
            )
            for rows in results:
                history.extend(from_json(rows))
        return history
    finally:
        for handle in handles:
            await handle.aclose()
        try:
            await store.clear()
        finally:
            await store.aclose()


def check_race(history: Sequence[Operation], race_name: str) -> None:
    """Fail unless some order explains ``history``, and no event id was issued twice."""
    race = RACES[race_name]
    issued = [op.result[1] for op in history if op.call == "append" and op.result[0] == "ok"]  # type: ignore[index]
    duplicates = sorted({i for i in issued if issued.count(i) > 1})
    assert not duplicates, f"event ids issued twice in one namespace: {duplicates}"
    ids = _session_ids(race)
    if race.by_key:
        assert_linearizable(history, lambda key: StoreModel([key]), key=operation_key)  # type: ignore[list-item]
    else:
        assert_linearizable(history, StoreModel(ids))


class ConcurrencyContract:
    """Part of :class:`~sessionstore_contract.StoreContract`."""

    def _race(self, target: ContractTarget, race_name: str, mode: str) -> None:
        race = RACES[race_name]
        if race.batches:
            target.require(Capability.ATOMIC_BATCH_UPDATE)
        if mode == "handles":
            target.require(Capability.SHARED_HANDLES)
        elif mode == "processes":
            target.require(Capability.SHARED_PROCESSES)
        history = asyncio.run(run_race(target, race_name, mode))
        assert len(history) > len(race.created), "the race recorded no operation"
        check_race(history, race_name)

    @pytest.mark.parametrize("mode", MODES)
    def test_race_update_update(self, sessionstore_target: ContractTarget, mode: str) -> None:
        """Read-then-update on two sessions by racing clients: linearizable (no lost update)."""
        self._race(sessionstore_target, "update_update", mode)

    @pytest.mark.parametrize("mode", MODES)
    def test_race_batch_batch(self, sessionstore_target: ContractTarget, mode: str) -> None:
        """Overlapping batch updates: each all or nothing, linearizable with each other."""
        self._race(sessionstore_target, "batch_batch", mode)

    @pytest.mark.parametrize("mode", MODES)
    def test_race_batch_update(self, sessionstore_target: ContractTarget, mode: str) -> None:
        """Batch updates racing single updates of the same sessions: linearizable."""
        self._race(sessionstore_target, "batch_update", mode)

    @pytest.mark.parametrize("mode", MODES)
    def test_race_last_event_id_update(
        self, sessionstore_target: ContractTarget, mode: str
    ) -> None:
        """Last event ids stored while updates land: neither undoes the other."""
        self._race(sessionstore_target, "last_event_id_update", mode)

    @pytest.mark.parametrize("mode", MODES)
    def test_race_append_append(self, sessionstore_target: ContractTarget, mode: str) -> None:
        """Appends to shared streams, with replays: unique ids, per-stream order, replays exact."""
        self._race(sessionstore_target, "append_append", mode)

    @pytest.mark.parametrize("mode", MODES)
    def test_race_create_create(self, sessionstore_target: ContractTarget, mode: str) -> None:
        """Creates of the same ids (and deletes): one winner per live id, reads see the winner."""
        self._race(sessionstore_target, "create_create", mode)

    @pytest.mark.parametrize("mode", MODES)
    def test_race_delete_update(self, sessionstore_target: ContractTarget, mode: str) -> None:
        """Deletes and re-creates racing updates: no update resurrects or crosses incarnations."""
        self._race(sessionstore_target, "delete_update", mode)

    @pytest.mark.parametrize("mode", MODES)
    def test_race_dump_load(self, sessionstore_target: ContractTarget, mode: str) -> None:
        """Dumps and loads racing every kind of write: each dump one consistent view, each load
        all or nothing and only where no live session has the id."""
        self._race(sessionstore_target, "dump_load", mode)

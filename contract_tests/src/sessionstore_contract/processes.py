"""Processes and durability: several OS processes on one store, and a store closed and reopened.

A backend that offers ``Capability.SHARED_PROCESSES`` is opened, with the same spec (or factory)
and namespace, in several OS processes (``python -m sessionstore_contract.worker``, see
:func:`run_in_processes`) that race on one session: compare-and-set, batches, creates and event
appends must stay atomic across them. A backend that offers ``Capability.DURABLE`` gets every
kind of write, is closed, and is reopened (in this process, and in a fresh one where it is
shared across processes): everything it acknowledged must be there, exactly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

import pytest

from sessionstore import (
    Capability,
    ConflictError,
    Event,
    EventNotFoundError,
    Session,
    SessionDump,
    SessionExistsError,
    SessionNotFoundError,
    SessionStore,
)

from .common import new_session
from .target import ContractTarget, ManualClock, NotPortableError, scratch_namespace

__all__ = [
    "PROCESS_TIMEOUT",
    "ProcessContract",
    "append_scenario",
    "create_scenario",
    "increment_scenario",
    "observe",
    "reopened_scenario",
    "run_in_processes",
]

PROCESS_TIMEOUT = 60.0
"""Seconds :func:`run_in_processes` gives its processes, all together, by default."""
START_MARGIN = 0.5
"""Seconds between the moment every process is up and the moment they all start: time to open
the store (import the backend, connect) so that their scenarios really overlap."""
PROCESSES = 4
WORKER = "sessionstore_contract.worker"
HERE = __name__


# -- running a scenario in several OS processes -----------------------------------------------


class _Worker:
    """One ``python -m sessionstore_contract.worker`` process, its output read by a thread."""

    def __init__(self, index: int, env: Mapping[str, str]) -> None:
        self.index = index
        # A file, not a pipe: a chatty worker can never block on a full stderr.
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=dict(env),
        )
        self.lines: list[bytes] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                self.lines.append(line)
                self.ready.set()
        finally:
            self.ready.set()
            self.done.set()

    def send(self, job: Mapping[str, Any]) -> None:
        assert self.process.stdin is not None
        # A worker that already died closed its end; its output says why.
        with contextlib.suppress(BrokenPipeError, OSError):
            self.process.stdin.write(json.dumps(job).encode())
        with contextlib.suppress(BrokenPipeError, OSError):
            self.process.stdin.close()

    def message(self, position: int) -> dict[str, Any] | None:
        """The JSON message at ``position`` of its output (``None`` if none or not JSON)."""
        try:
            found = json.loads(self.lines[position])
        except (IndexError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def stderr_tail(self, size: int = 3000) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-size:]

    def stop(self) -> None:
        """Kill it if it still runs; release its pipes and files."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=5)
        for stream in (self.process.stdin, self.process.stdout, self.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _python_path() -> str:
    """This process's ``sys.path``, so the workers import what it imports (factories found
    through pytest's rootdir or a test's ``sys.path`` change included)."""
    seen: list[str] = []
    for entry in sys.path:
        path = os.path.abspath(entry) if entry else os.getcwd()
        if path not in seen:
            seen.append(path)
    return os.pathsep.join(seen)


def run_in_processes(
    target: ContractTarget,
    namespace: str,
    scenario: str,
    params_per_process: Sequence[Any],
    *,
    options: Mapping[str, Any] | None = None,
    timeout: float = PROCESS_TIMEOUT,
) -> list[Any]:
    """Run ``await scenario(store, params)`` in one new OS process per ``params`` at once, each
    on a store of ``target`` opened with ``namespace`` (and ``options``), and return what each
    returned, in order.

    ``scenario`` is ``"module:function"``, importable in a fresh interpreter with this one's
    ``sys.path``; ``params`` and results are JSON. The processes start together (each waits,
    with its store open, for one instant after all of them are up), so their scenarios race.
    Fails the calling test when the target cannot be rebuilt in another process (saying how to
    fix it), when a scenario raises (with its traceback), or when the processes are not done
    within ``timeout`` seconds (the stragglers are killed). Blocking: call it from a thread
    (``asyncio.to_thread``) inside a running loop.
    """
    recipe = _portable_recipe(target)
    extra = dict(options or {})
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"run_in_processes: options must be JSON: {exc}") from None
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    env = {**os.environ, "PYTHONPATH": _python_path()}
    workers: list[_Worker] = []
    try:
        for index in range(len(params_per_process)):
            workers.append(_Worker(index, env))
        for worker in workers:
            worker.ready.wait(left())
        _check_ready(workers, scenario, timeout)
        start_at = time.time() + START_MARGIN
        for worker, params in zip(workers, params_per_process, strict=True):
            worker.send(
                {
                    "target": recipe,
                    "namespace": namespace,
                    "options": extra,
                    "scenario": scenario,
                    "params": params,
                    "start_at": start_at,
                }
            )
        for worker in workers:
            worker.done.wait(left())
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(left())
        late = [w.index for w in workers if w.process.poll() is None]
        if late:
            _fail(workers, late, scenario, params_per_process, f"still running after {timeout}s")
        results = []
        for worker in workers:
            message = worker.message(-1) or {}
            if "result" not in message or worker.process.returncode != 0:
                reason = message.get("error", f"exit status {worker.process.returncode}")
                detail = message.get("traceback", "")
                _fail(workers, [worker.index], scenario, params_per_process, reason, detail)
            results.append(message["result"])
        return results
    finally:
        for worker in workers:
            worker.stop()


def _portable_recipe(target: ContractTarget) -> dict[str, Any]:
    """``target.recipe()``, or the calling test fails saying how to make the target portable."""
    try:
        return target.recipe()
    except NotPortableError as exc:
        pytest.fail(str(exc), pytrace=False)


def _check_ready(workers: Sequence[_Worker], scenario: str, timeout: float) -> None:
    broken = [w for w in workers if "ready" not in (w.message(0) or {})]
    if broken:
        worker = broken[0]
        state = "not up" if worker.process.poll() is None else "exited"
        pytest.fail(
            f"{len(broken)} of {len(workers)} worker processes for {scenario} did not start "
            f"({state} within {timeout}s); stderr of the first:\n{worker.stderr_tail()}",
            pytrace=False,
        )


def _fail(
    workers: Sequence[_Worker],
    indexes: Sequence[int],
    scenario: str,
    params_per_process: Sequence[Any],
    reason: str,
    detail: str = "",
) -> None:
    first = indexes[0]
    pytest.fail(
        f"process {first} of {len(workers)} running {scenario} with params "
        f"{json.dumps(params_per_process[first])[:300]}: {reason}\n{detail}\n"
        f"its stderr:\n{workers[first].stderr_tail()}",
        pytrace=False,
    )


# -- scenarios the worker processes run ---------------------------------------------------------


def _increment(session: Session) -> None:
    session.metadata = {**session.metadata, "count": session.metadata["count"] + 1}


async def increment_scenario(store: SessionStore, params: Mapping[str, Any]) -> dict[str, int]:
    """``params["increments"]`` increments of session ``params["counter"]`` through
    ``modify_session``; after every ``params["batch_every"]``-th, one increment of every session
    of ``params["batch_ids"]`` (if any) through ``update_sessions_batch``, read-modify-write,
    retried on conflict. Returns how many batches conflicted."""
    conflicts = 0
    batch_ids: list[str] = list(params.get("batch_ids") or [])
    for n in range(params["increments"]):
        await store.modify_session(params["counter"], _increment)
        if batch_ids and n % params["batch_every"] == 0:
            for _ in range(params["batch_attempts"]):
                batch = await store.get_sessions_batch(batch_ids)
                for session in batch:
                    _increment(session)
                try:
                    await store.update_sessions_batch(batch)
                    break
                except ConflictError:
                    conflicts += 1
            else:
                raise ConflictError(*batch_ids, detail="batch increment gave up")
    return {"batch_conflicts": conflicts}


async def create_scenario(store: SessionStore, params: Mapping[str, Any]) -> list[bool]:
    """Try to create every id of ``params["ids"]``, in order, tagged ``params["tag"]``; return,
    per id, whether this process's create succeeded (``SessionExistsError``: it did not)."""
    won = []
    for session_id in params["ids"]:
        try:
            await store.create_session(new_session(session_id, metadata={"tag": params["tag"]}))
            won.append(True)
        except SessionExistsError:
            won.append(False)
    return won


async def append_scenario(store: SessionStore, params: Mapping[str, Any]) -> list[str]:
    """Append ``params["count"]`` events ``"<tag>/<n>"`` to one stream of one session; return
    their ids in the order they were appended."""
    ids = []
    for n in range(params["count"]):
        data = f"{params['tag']}/{n}".encode()
        ids.append(await store.append_event(params["session_id"], params["stream_id"], data))
    return ids


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _dump_json(dump: SessionDump) -> Any:
    record = dump.record
    return {
        "record": [
            record.id,
            record.version,
            record.deadline_ms,
            _b64(record.payload),
            record.incarnation,
        ],
        "last_event_id": dump.last_event_id,
        "streams": [[stream_id, [_b64(d) for d in data]] for stream_id, data in dump.streams],
    }


def _events_json(events: Sequence[Event]) -> list[list[str | None]]:
    return [[e.id, e.stream_id, _b64(e.data)] for e in events]


async def observe(store: SessionStore, params: Mapping[str, Any]) -> dict[str, Any]:
    """Everything ``store`` says about the session ids ``params["ids"]`` and the event ids
    ``params["event_ids"]``, as JSON: sessions, dumps (records with version, deadline,
    incarnation and payload bytes; last event ids; every stream's data), last event ids, the
    replay after each event id, the count and the listed ids. Only reads."""
    sessions: dict[str, Any] = {}
    last_event_ids: dict[str, Any] = {}
    dumps: dict[str, Any] = {}
    for session_id in params["ids"]:
        try:
            sessions[session_id] = (await store.get_session(session_id)).model_dump(mode="json")
        except SessionNotFoundError:
            sessions[session_id] = None
        try:
            last_event_ids[session_id] = ["found", await store.get_last_event_id(session_id)]
        except SessionNotFoundError:
            last_event_ids[session_id] = ["not found"]
        try:
            dumps[session_id] = _dump_json(await store.dump_session(session_id))
        except SessionNotFoundError:
            dumps[session_id] = None
    replays: dict[str, Any] = {}
    for event_id in params["event_ids"]:
        try:
            stream_id, events = await store.replay_events_after(event_id)
            replays[event_id] = [stream_id, _events_json(events)]
        except EventNotFoundError as exc:
            replays[event_id] = ["not found", exc.evicted]
    return {
        "sessions": sessions,
        "last_event_ids": last_event_ids,
        "dumps": dumps,
        "replays": replays,
        "count": await store.count_sessions(),
        "listed": sorted(s.id for s in await store.list_sessions()),
    }


async def reopened_scenario(store: SessionStore, params: Mapping[str, Any]) -> dict[str, Any]:
    """In a fresh process: :func:`observe`, then purge (nothing should be left to purge), then
    append to an old stream and to a new session's stream; return all three."""
    observed = await observe(store, params)
    purged = await store.purge_expired()
    new_ids = [await store.append_event(params["old_session"], params["old_stream"], b"child")]
    await store.create_session(new_session(params["new_session"]))
    new_ids.append(await store.append_event(params["new_session"], "1", b"child"))
    return {"observed": observed, "purged": purged, "new_event_ids": new_ids}


# -- the durability scenario ---------------------------------------------------------------------

DURABLE_TTL = 3600.0


async def _write_everything(store: SessionStore, clock: ManualClock | None) -> dict[str, Any]:
    """Every kind of acknowledged write; returns the ids and event ids to check afterwards."""
    ids: list[str] = []
    event_ids: list[str] = []

    async def create(session_id: str, **metadata: Any) -> Session:
        ids.append(session_id)
        return await store.create_session(new_session(session_id, metadata=metadata))

    async def append(session_id: str, stream_id: str, data: bytes | None) -> str:
        event_ids.append(await store.append_event(session_id, stream_id, data))
        return event_ids[-1]

    if clock is not None:  # sessions that expire, then are purged
        for n in range(2):
            await create(f"expired-{n}", n=n)
            await store.store_last_event_id(f"expired-{n}", f"ev-expired-{n}")
            await append(f"expired-{n}", "1", b"expired")
        clock.advance(DURABLE_TTL + 1)
    await create("kept", text="\u00e9\u4e2d\U0001f600", nested={"list": [1, 2.5, None]})
    await create("Kept")  # ids differing only in case are two sessions
    await create("ns:key/*?[x]")  # characters a backend might join keys with
    updated = await create("updated", step=0)
    for step in (1, 2):
        updated.metadata = {"step": step}
        updated = await store.update_session(updated)
    await store.store_last_event_id("updated", "ev-updated")
    updated.metadata = {"step": 3}
    await store.update_session(updated)  # after the last event id: must not undo it
    await store.store_last_event_id("kept", "ev-kept")
    await create("batch-a", v=0)
    await create("batch-b", v=0)
    batch = await store.get_sessions_batch(["batch-a", "batch-b"])
    for session in batch:
        session.metadata = {"v": "batch"}
    await store.update_sessions_batch(batch)
    await create("events")
    last_of: dict[str, str] = {}
    for n in range(3):
        for stream_id in ("a", "b", "c"):
            last_of[stream_id] = await append("events", stream_id, f"{stream_id}{n}".encode())
    await append("events", "b", None)  # a priming event
    await append("ns:key/*?[x]", "a", b"strange")
    await create("deleted", doomed=True)
    await store.store_last_event_id("deleted", "ev-deleted")
    await append("deleted", "a", b"gone")
    assert await store.delete_session("deleted") is True
    await create("moved", step="before")
    await store.store_last_event_id("moved", "ev-moved")
    await append("moved", "a", b"m1")
    await append("moved", "b", b"m2")
    dump = await store.dump_session("moved")
    assert await store.delete_session("moved") is True
    assert await store.load_session(dump) is True
    if clock is not None:
        assert await store.purge_expired() == 2
    return {"ids": ids, "event_ids": event_ids, "last_of_a": last_of["a"]}


def _differences(expected: Any, found: Any, path: str = "") -> list[str]:
    """Where ``found`` differs from ``expected`` (JSON values), as readable lines."""
    if isinstance(expected, dict) and isinstance(found, dict):
        lines = []
        for key in [*expected, *(k for k in found if k not in expected)]:
            where = f"{path}[{key!r}]"
            if key not in found:
                lines.append(f"{where}: missing, expected {expected[key]!r:.120}")
            elif key not in expected:
                lines.append(f"{where}: unexpected {found[key]!r:.120}")
            else:
                lines.extend(_differences(expected[key], found[key], where))
        return lines
    if expected != found:
        return [f"{path}: expected {expected!r:.120}, found {found!r:.120}"]
    return []


def _assert_same(expected: Any, found: Any, when: str) -> None:
    lines = _differences(expected, found)
    assert not lines, f"{when}, the store lost or changed what it acknowledged:\n" + "\n".join(
        lines[:20]
    )


class ProcessContract:
    """Part of :class:`~sessionstore_contract.StoreContract`."""

    def test_processes_lose_no_update(self, sessionstore_target: ContractTarget) -> None:
        """4 processes x 50 ``modify_session`` increments of one counter end at exactly 200
        (version 201); with atomic batches, batch read-modify-writes of two sessions racing them
        (retried on conflict) end exact too."""
        target = sessionstore_target
        target.require(Capability.SHARED_PROCESSES)
        batches = Capability.ATOMIC_BATCH_UPDATE not in target.capabilities
        increments, batch_every = 50, 5
        batch_ids = ["batch-a", "batch-b"] if batches else []

        async def scenario(store: SessionStore) -> None:
            for session_id in ["counter", *batch_ids]:
                await store.create_session(new_session(session_id, metadata={"count": 0}))
            params = {
                "counter": "counter",
                "increments": increments,
                "batch_ids": batch_ids,
                "batch_every": batch_every,
                "batch_attempts": 10_000,
            }
            await asyncio.to_thread(
                run_in_processes,
                target,
                store.namespace,
                f"{HERE}:increment_scenario",
                [params] * PROCESSES,
                options={"modify_attempts": 10_000},
            )
            counter = await store.get_session("counter")
            total = PROCESSES * increments
            assert counter.metadata["count"] == total, (
                f"{PROCESSES} processes made {total} increments; "
                f"{total - counter.metadata['count']} were lost"
            )
            assert counter.version == total + 1
            rounds = PROCESSES * len(range(0, increments, batch_every))
            for session in await store.get_sessions_batch(batch_ids):
                assert session.metadata["count"] == rounds, (
                    f"{rounds} batch increments of {session.id} across processes; "
                    f"{rounds - session.metadata['count']} were lost"
                )
                assert session.version == rounds + 1

        target.run(scenario)

    def test_processes_create_one_winner_per_id(self, sessionstore_target: ContractTarget) -> None:
        """Processes creating the same ids at once: exactly one create per id succeeds (the
        others get SessionExistsError), and the stored session is the winner's."""
        target = sessionstore_target
        target.require(Capability.SHARED_PROCESSES)
        ids = [f"race-{n:03}" for n in range(100)]

        async def scenario(store: SessionStore) -> None:
            outcomes = await asyncio.to_thread(
                run_in_processes,
                target,
                store.namespace,
                f"{HERE}:create_scenario",
                [{"ids": ids, "tag": f"process-{p}"} for p in range(PROCESSES)],
            )
            stored = {s.id: s for s in await store.get_sessions_batch(ids)}
            for position, session_id in enumerate(ids):
                winners = [p for p in range(PROCESSES) if outcomes[p][position]]
                assert len(winners) == 1, (
                    f"{session_id}: {len(winners)} processes were told their create succeeded "
                    f"(processes {winners}); exactly one must be"
                )
                assert stored[session_id].metadata == {"tag": f"process-{winners[0]}"}, (
                    f"{session_id}: process {winners[0]} won the create, but the store holds "
                    f"{stored[session_id].metadata}"
                )
                assert stored[session_id].version == 1
            assert await store.count_sessions() == len(ids)

        target.run(scenario)

    def test_processes_append_unique_ordered_events(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """Processes appending to one stream at once: every event id is unique, a replay from
        before them returns every acknowledged event exactly once, under the id its append
        returned, and each process's events in the order it appended them."""
        target = sessionstore_target
        target.require(Capability.SHARED_PROCESSES)
        count = 50

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("s"))
            start = await store.append_event("s", "st", None)
            appended: list[list[str]] = await asyncio.to_thread(
                run_in_processes,
                target,
                store.namespace,
                f"{HERE}:append_scenario",
                [
                    {"session_id": "s", "stream_id": "st", "tag": f"p{p}", "count": count}
                    for p in range(PROCESSES)
                ],
            )
            issued = [start, *(i for ids in appended for i in ids)]
            repeated = sorted({i for i in issued if issued.count(i) > 1})
            assert not repeated, f"event ids issued twice across processes: {repeated[:10]}"
            acknowledged = {
                event_id: f"p{p}/{n}".encode()
                for p, ids in enumerate(appended)
                for n, event_id in enumerate(ids)
            }
            stream_id, events = await store.replay_events_after(start)
            assert stream_id == "st"
            replayed = {e.id: e.data for e in events}
            assert len(replayed) == len(events), "a replay returned one event id twice"
            assert replayed == acknowledged, (
                f"{len(acknowledged)} events acknowledged, {len(events)} replayed; "
                f"{len(set(acknowledged) - set(replayed))} acknowledged ids missing, "
                f"{sum(replayed.get(i) != d for i, d in acknowledged.items())} differ"
            )
            assert all(e.stream_id == "st" for e in events)
            for p in range(PROCESSES):
                mine = [e.data for e in events if (e.data or b"").startswith(f"p{p}/".encode())]
                assert mine == [f"p{p}/{n}".encode() for n in range(count)], (
                    f"process {p}'s events are replayed out of the order it appended them"
                )

        target.run(scenario)

    def test_acknowledged_writes_survive_reopening(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """Every kind of acknowledged write (creates, updates, a batch, last event ids, appends
        on several streams, deletes, a purge, a load), then every handle closed: a new handle
        (and, where the store is shared across processes, one in a fresh process) finds exactly
        that: sessions, versions, deadlines, last event ids, replays by the old event ids,
        deleted sessions gone, nothing left to purge; event ids issued afterwards are new."""
        target = sessionstore_target
        target.require(Capability.DURABLE)
        shared = Capability.SHARED_PROCESSES not in target.capabilities
        if shared:
            _portable_recipe(target)  # fail now, before writing, if no other process can open it
        controllable = Capability.CONTROLLABLE_CLOCK not in target.capabilities
        # Near the real time, so that a fresh process (on the real clock) finds the sessions
        # live that are live here.
        clock = ManualClock(time.time()) if controllable else None
        options: dict[str, Any] = {"ttl": DURABLE_TTL, "clock": clock}
        namespace = scratch_namespace()

        async def write() -> tuple[dict[str, Any], dict[str, Any]]:
            async with target.open(namespace=namespace, **options) as store:
                params = await _write_everything(store, clock)
                return params, await observe(store, params)

        async def reopen(params: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
            async with target.open(namespace=namespace, **options) as store:
                _assert_same(expected, await observe(store, params), "closed and reopened")
                if controllable:
                    assert await store.purge_expired() == 0, "a purge was undone by reopening"
                last_a = params["last_of_a"]
                assert expected["replays"][last_a][1] == []
                new_ids = [await store.append_event("events", "a", b"after")]
                await store.create_session(new_session("after-reopen"))
                new_ids.append(await store.append_event("after-reopen", "1", b"after"))
                new_ids.append(await store.append_event("events", "d", b"after"))
                reused = set(new_ids) & set(params["event_ids"])
                assert not reused, f"event ids issued again after reopening: {sorted(reused)}"
                _, after = await store.replay_events_after(last_a)
                assert after == [Event(new_ids[0], "a", b"after")]
                params["event_ids"].extend(new_ids)
                params["ids"].append("after-reopen")
                return await observe(store, params)

        async def clear() -> None:
            async with target.open(namespace=namespace, **options) as store:
                await store.clear()

        try:
            params, expected = asyncio.run(write())
            assert expected["sessions"]["deleted"] is None
            expected = asyncio.run(reopen(params, expected))
            if shared:
                child_params = {
                    **params,
                    "old_session": "events",
                    "old_stream": "c",
                    "new_session": "after-child",
                }
                [child] = run_in_processes(
                    target,
                    namespace,
                    f"{HERE}:reopened_scenario",
                    [child_params],
                    options={"ttl": DURABLE_TTL},
                )
                _assert_same(expected, child["observed"], "reopened in a fresh process")
                assert child["purged"] == 0, "a purge was undone in a fresh process"
                reused = set(child["new_event_ids"]) & set(params["event_ids"])
                assert not reused, f"event ids issued again in a fresh process: {sorted(reused)}"
        finally:
            asyncio.run(clear())

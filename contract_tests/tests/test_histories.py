"""The store's sequential model and the recording client, on histories with known answers."""

from __future__ import annotations

import pytest

from sessionstore import open_store
from sessionstore_contract.histories import (
    RecordingClient,
    StoreModel,
    from_json,
    operation_key,
    to_json,
)
from sessionstore_contract.linearizability import Operation, check, check_by_key


def _op(process: str, call: str, args: tuple[object, ...], result: object, at: float) -> Operation:
    return Operation(process, call, args, result, at, at + 0.5)  # type: ignore[arg-type]


async def _every_operation() -> list[Operation]:
    history: list[Operation] = []
    async with open_store("memory") as store:
        client = RecordingClient(store, "one", history)
        assert await client.create("a", "t0") is not None
        assert await client.create("a", "again") is None  # SessionExistsError, recorded
        session = await client.get("a")
        assert session is not None
        updated = await client.update(session, "t1")
        assert updated is not None
        assert await client.update(session, "stale") is None  # ConflictError (session is v1)
        await client.set_last("a", "e-7")
        assert await client.get_last("a") == "e-7"
        first = await client.append("a", "s", "d1")
        await client.append("a", "s", "d2")
        await client.append("a", "t", "d3")
        assert first is not None
        await client.replay("a", first)
        await client.create("b", "b0")
        pair = [await client.get("a"), await client.get("b")]
        await client.update_batch([s for s in pair if s is not None], "batch")
        dump = await client.dump("a")
        assert await client.delete("a") is True
        assert await client.load(dump) is True
        assert await client.load(dump) is False
        assert await client.delete("missing") is False
        await client.get("missing")
    return history


async def test_a_sequential_history_of_every_operation_is_explained() -> None:
    history = await _every_operation()
    assert len(history) == 21
    assert history[1].result == ("error", "SessionExistsError")
    assert history[4].result == ("error", "ConflictError", ("a",))
    assert check(history, StoreModel(["a", "b", "missing"])).linearizable
    assert check_by_key(
        history[:12],  # up to the batch, which spans sessions
        lambda key: StoreModel([key]),  # type: ignore[list-item]
        operation_key,
    ).linearizable


async def test_histories_survive_the_json_round_trip() -> None:
    history = await _every_operation()
    assert from_json(to_json(history)) == history


async def test_the_model_refuses_each_wrong_answer() -> None:
    history = await _every_operation()
    model = StoreModel(["a", "b", "missing"])
    wrong = {
        4: ("ok", 3),  # the stale update succeeded: a lost update
        6: ("ok", "e-6"),  # the last event id read back differs
        8: ("ok", history[7].result[1]),  # type: ignore[index] # an event id issued twice
        10: ("ok", "s", ()),  # a replay that missed an event after its cursor
        14: ("ok", (3, 3)),  # the batch wrote other versions than it should
        15: ("ok", "a", history[15].result[2], 3, "batch", None, ()),  # type: ignore[index] # a dump that lost the last event id and events
        17: ("ok", False),  # a load refused where no live session had the id
        18: ("ok", True),  # a load accepted over a live session
        19: ("ok", True),  # a delete of a session that never existed
    }
    for index, result in wrong.items():
        changed = list(history)
        changed[index] = Operation(
            history[index].process,
            history[index].call,
            history[index].args,
            result,
            history[index].start,
            history[index].end,
        )
        assert not check(changed, model).linearizable, f"operation {index} -> {result}"


def test_a_torn_dump_is_not_explained() -> None:
    """A dump showing the record before an update and the last event id after it, with both
    writes done before the dump was called."""
    history = [
        _op("w", "create", ("a", "t0"), ("ok", 7), 0),
        _op("w", "update", ("a", 7, 1, "t1"), ("ok", 2), 1),
        _op("w", "set_last", ("a", "e1"), ("ok",), 2),
        _op("r", "dump", ("a",), ("ok", "a", 7, 1, "t0", "e1", ()), 3),
    ]
    assert not check(history, StoreModel(["a"])).linearizable
    concurrent = [*history[:3], Operation("r", "dump", ("a",), history[3].result, 0.6, 3.5)]
    # Called before the update and the last event id: it may have seen neither... but not one
    # without the other, as this one did.
    assert not check(concurrent, StoreModel(["a"])).linearizable
    honest = [*history[:3], _op("r", "dump", ("a",), ("ok", "a", 7, 2, "t1", "e1", ()), 3)]
    assert check(honest, StoreModel(["a"])).linearizable


def test_a_write_seen_before_it_was_made_is_not_explained() -> None:
    history = [
        _op("w", "create", ("a", "t0"), ("ok", 7), 0),
        _op("r", "get", ("a",), ("ok", 7, 2, "t1"), 1),
        _op("w", "update", ("a", 7, 1, "t1"), ("ok", 2), 2),
    ]
    assert not check(history, StoreModel(["a"])).linearizable
    overlapping = [
        history[0],
        Operation("r", "get", ("a",), ("ok", 7, 2, "t1"), 1, 2.2),
        history[2],
    ]
    assert check(overlapping, StoreModel(["a"])).linearizable


def test_a_stale_incarnation_conflicts_even_at_the_right_version() -> None:
    history = [
        _op("w", "create", ("a", "t0"), ("ok", 7), 0),
        _op("w", "delete", ("a",), ("ok", True), 1),
        _op("w", "create", ("a", "t1"), ("ok", 9), 2),
        _op("old", "update", ("a", 7, 1, "stale"), ("ok", 2), 3),
    ]
    assert not check(history, StoreModel(["a"])).linearizable
    refused = [
        *history[:3],
        _op("old", "update", ("a", 7, 1, "s"), ("error", "ConflictError", ("a",)), 3),
    ]
    assert check(refused, StoreModel(["a"])).linearizable


def test_batches_cannot_be_checked_one_session_at_a_time() -> None:
    batch = _op("w", "update_batch", ((("a", 7, 1), ("b", 8, 1)), "t"), ("ok", (2, 2)), 0)
    with pytest.raises(ValueError, match="whole"):
        operation_key(batch)


def test_an_event_id_issued_twice_is_not_explained() -> None:
    """Even on two streams, where no replay would notice."""
    history = [
        _op("w", "create", ("a", "t0"), ("ok", 7), 0),
        _op("w", "append", ("a", "s", "d1"), ("ok", "1-1"), 1),
        _op("w", "append", ("a", "t", "d2"), ("ok", "1-1"), 2),
    ]
    assert not check(history, StoreModel(["a"])).linearizable
    distinct = [*history[:2], _op("w", "append", ("a", "t", "d2"), ("ok", "2-1"), 2)]
    assert check(distinct, StoreModel(["a"])).linearizable

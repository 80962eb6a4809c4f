"""The linearizability checker: hand-written histories, and agreement with a brute-force checker.

The models live here, not in the library: a register with read, write and compare-and-set, a
versioned register whose updates fail on a stale version (the shape of ``update_session``), and
a log whose appends return an id the system chose.
"""

from __future__ import annotations

import itertools
import pickle
import random
import time
from collections.abc import Hashable, Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionstore_contract.linearizability import (
    PENDING,
    Operation,
    SearchLimitExceeded,
    SequentialModel,
    Verdict,
    assert_linearizable,
    check,
    check_by_key,
)

# -- models -----------------------------------------------------------------------------------


class Register:
    """An integer register, initially 0: read() -> ("ok", v); write(v) -> ("ok",);
    cas(expected, new) -> ("ok", swapped)."""

    def initial(self) -> int:
        return 0

    def step(self, state: int, op: Operation, *, checked: bool = True) -> int | None:
        if op.call == "read":
            return state if not checked or op.result == ("ok", state) else None
        if op.call == "write":
            (value,) = op.args
            assert isinstance(value, int)
            return value if not checked or op.result == ("ok",) else None
        if op.call == "cas":
            expected, new = op.args
            assert isinstance(new, int)
            swapped = state == expected
            if checked and op.result != ("ok", swapped):
                return None
            return new if swapped else state
        raise AssertionError(f"unknown call {op.call}")


class VersionedRegister:
    """A value with a version, initially (1, "a"): get() -> ("ok", version, value);
    update(version, value) -> ("ok", version + 1) if version is the stored one, else
    ("error", "ConflictError") and nothing changes."""

    def initial(self) -> tuple[int, str]:
        return (1, "a")

    def step(
        self, state: tuple[int, str], op: Operation, *, checked: bool = True
    ) -> tuple[int, str] | None:
        version, value = state
        if op.call == "get":
            return state if not checked or op.result == ("ok", version, value) else None
        expected, new = op.args
        assert isinstance(expected, int)
        assert isinstance(new, str)
        after: tuple[int, str] = state
        result: tuple[str, int | str] = ("error", "ConflictError")
        if expected == version:
            after, result = (version + 1, new), ("ok", version + 1)
        return after if not checked or op.result == result else None


class Log:
    """An append-only log of ids the system chooses: append() -> ("ok", id) adds id;
    ids() -> ("ok", tuple of ids in order)."""

    def initial(self) -> tuple[str, ...]:
        return ()

    def step(
        self, state: tuple[str, ...], op: Operation, *, checked: bool = True
    ) -> tuple[str, ...] | None:
        if op.call == "ids":
            return state if not checked or op.result == ("ok", state) else None
        if op.result is PENDING:
            # Appended, but under an id nobody saw: no later read can name it.
            return (*state, "?")
        assert isinstance(op.result, tuple)
        status, new_id = op.result
        if status != "ok" or new_id in state:
            return None
        return (*state, new_id)


def op(
    process: str,
    call: str,
    args: tuple[Hashable, ...],
    result: Hashable,
    start: float,
    end: float | None,
) -> Operation:
    return Operation(process, call, args, result, start, end)


def read(process: str, value: int, start: float, end: float) -> Operation:
    return op(process, "read", (), ("ok", value), start, end)


def write(process: str, value: int, start: float, end: float | None) -> Operation:
    return op(process, "write", (value,), ("ok",) if end is not None else PENDING, start, end)


def cas(
    process: str, expected: int, new: int, swapped: bool, start: float, end: float
) -> Operation:
    return op(process, "cas", (expected, new), ("ok", swapped), start, end)


# -- an independent judge ---------------------------------------------------------------------


def precedes(a: Operation, b: Operation, returned_a: bool = True) -> bool:
    return returned_a and a.end is not None and a.end < b.start


def is_valid_order(
    order: Sequence[Operation],
    history: Sequence[Operation],
    model: SequentialModel[Any],
    returned: Sequence[bool] | None = None,
) -> bool:
    """Whether `order` linearizes `history` (``returned[i]``: history[i] counts as returned)."""
    flags = [op.end is not None for op in history] if returned is None else list(returned)
    position: dict[int, int] = {}
    for n, o in enumerate(order):
        matches = [i for i, h in enumerate(history) if h is o and i not in position.values()]
        if not matches:
            return False
        position[n] = matches[0]
    chosen = set(position.values())
    if any(flags[i] and i not in chosen for i in range(len(history))):
        return False
    for x, y in itertools.combinations(range(len(order)), 2):
        # x comes before y in the order: y must not precede x in real time.
        if precedes(history[position[y]], history[position[x]], flags[position[y]]):
            return False
    state = model.initial()
    for n, o in enumerate(order):
        after = model.step(state, o, checked=flags[position[n]])
        if after is None:
            return False
        state = after
    return True


def brute_linearizable(
    history: Sequence[Operation], returned: Sequence[bool], model: SequentialModel[Any]
) -> bool:
    """Every permutation of the returned operations plus every subset of the pending ones."""
    done = [i for i in range(len(history)) if returned[i]]
    pending = [i for i in range(len(history)) if not returned[i]]
    for size in range(len(pending) + 1):
        for extra in itertools.combinations(pending, size):
            for perm in itertools.permutations(done + list(extra)):
                if _run_ok(history, returned, model, perm):
                    return True
    return False


def _run_ok(
    history: Sequence[Operation],
    returned: Sequence[bool],
    model: SequentialModel[Any],
    perm: Sequence[int],
) -> bool:
    for x, y in itertools.combinations(perm, 2):
        if precedes(history[y], history[x], returned[y]):
            return False
    state = model.initial()
    for i in perm:
        after = model.step(state, history[i], checked=returned[i])
        if after is None:
            return False
        state = after
    return True


def brute_cut(
    history: Sequence[Operation], model: SequentialModel[Any]
) -> tuple[float, set[Operation]] | None:
    """The first return time t whose cut (called by t; returned by t or pending) fails."""
    for t in sorted({o.end for o in history if o.end is not None}):
        members = [o for o in history if o.start <= t]
        returned = [o.end is not None and o.end <= t for o in members]
        if not brute_linearizable(members, returned, model):
            return t, set(members)
    return None


# -- hand-written histories -------------------------------------------------------------------


def test_a_sequential_history_is_linearizable_with_its_own_order_as_witness() -> None:
    history = [
        write("p", 1, 0, 1),
        read("p", 1, 2, 3),
        cas("p", 1, 2, True, 4, 5),
        cas("p", 1, 3, False, 6, 7),
        read("p", 2, 8, 9),
    ]
    verdict = check(history, Register())
    assert verdict.linearizable
    assert verdict.order == tuple(history)
    assert verdict.counterexample == ()
    assert verdict.cut is None
    assert verdict.explored >= len(history)


def test_concurrent_writes_explain_reads_of_either_value_in_one_order() -> None:
    history = [
        write("a", 1, 0, 10),
        write("b", 2, 0, 10),
        read("c", 2, 1, 2),
        read("d", 1, 3, 4),
        read("e", 1, 11, 12),
    ]
    verdict = assert_linearizable(history, Register())
    assert is_valid_order(verdict.order, history, Register())
    order = [(o.process, o.call) for o in verdict.order]
    assert order == [("b", "write"), ("c", "read"), ("a", "write"), ("d", "read"), ("e", "read")]


def test_a_stale_read_is_not_linearizable() -> None:
    history = [write("a", 1, 0, 1), read("b", 0, 2, 3)]
    verdict = check(history, Register())
    assert not verdict.linearizable
    assert verdict.order == ()
    assert verdict.cut == 3
    assert set(verdict.counterexample) == set(history)


def test_a_read_overlapping_the_write_may_see_either_value() -> None:
    for value in (0, 1):
        assert check([write("a", 1, 0, 2), read("b", value, 1, 3)], Register()).linearizable
    # Equal times are concurrent, not ordered: the write returned as the read was called.
    assert check([write("a", 1, 0, 2), read("b", 0, 2, 3)], Register()).linearizable


def test_two_compare_and_sets_from_the_same_value_cannot_both_succeed() -> None:
    lost = [cas("a", 0, 1, True, 0, 5), cas("b", 0, 2, True, 1, 6)]
    verdict = check(lost, Register())
    assert not verdict.linearizable
    assert verdict.cut == 6
    assert check([lost[0], replace(lost[1], result=("ok", False))], Register()).linearizable


def test_two_updates_from_the_same_version_cannot_both_succeed() -> None:
    lost_update = [
        op("a", "update", (1, "b"), ("ok", 2), 0, 5),
        op("b", "update", (1, "c"), ("ok", 2), 1, 6),
        op("c", "get", (), ("ok", 2, "c"), 7, 8),
    ]
    verdict = check(lost_update, VersionedRegister())
    assert not verdict.linearizable
    assert verdict.cut == 6
    assert len(verdict.counterexample) == 2
    conflict = op("b", "update", (1, "c"), ("error", "ConflictError"), 1, 6)
    fixed = [lost_update[0], conflict, op("c", "get", (), ("ok", 2, "b"), 7, 8)]
    assert check(fixed, VersionedRegister()).linearizable


def test_a_read_cannot_see_a_write_called_after_it_returned() -> None:
    history = [read("a", 1, 0, 1), write("b", 1, 2, 3), read("c", 1, 4, 5)]
    verdict = check(history, Register())
    assert not verdict.linearizable
    # The read alone is the shortest history no order explains: the cut at its return.
    assert verdict.cut == 1
    assert verdict.counterexample == (history[0],)


def test_a_pending_write_may_have_taken_effect() -> None:
    history = [write("a", 1, 0, None), read("b", 1, 5, 6)]
    verdict = assert_linearizable(history, Register())
    assert verdict.order == tuple(history)


def test_a_pending_write_may_have_taken_no_effect_and_is_left_out_of_the_order() -> None:
    history = [write("a", 1, 0, None), read("b", 0, 5, 6)]
    verdict = assert_linearizable(history, Register())
    assert verdict.order == (history[1],)


def test_a_pending_write_is_needed_to_explain_a_read_and_cannot_be_undone() -> None:
    needed = [write("a", 1, 0, None), read("b", 1, 1, 2), read("c", 1, 3, 4)]
    verdict = assert_linearizable(needed, Register())
    assert verdict.order[0] is needed[0]
    undone = [write("a", 1, 0, None), read("b", 1, 1, 2), read("c", 0, 3, 4)]
    verdict = check(undone, Register())
    assert not verdict.linearizable
    assert verdict.cut == 4
    assert set(verdict.counterexample) == set(undone)


def test_a_pending_write_tried_early_in_vain_can_still_explain_a_later_read() -> None:
    # The search first puts the pending write at the start, which fails; the same state and
    # returned operations without it must then still be explored, for it belongs at the end.
    history = [
        write("p", 1, 0, None),
        write("w", 1, 0, 10),
        read("r1", 1, 11, 12),
        cas("x", 1, 2, True, 13, 14),
        read("r2", 1, 15, 16),
    ]
    verdict = assert_linearizable(history, Register())
    assert [o.process for o in verdict.order] == ["w", "r1", "x", "p", "r2"]


def test_a_pending_write_called_after_a_read_returned_cannot_explain_it() -> None:
    history = [read("b", 1, 0, 1), write("a", 1, 2, None)]
    verdict = check(history, Register())
    assert not verdict.linearizable
    assert verdict.counterexample == (history[0],)


def test_an_operation_returning_after_the_cut_keeps_the_id_the_system_chose() -> None:
    # At the cut (the read's return), the append has not returned, so it counts as pending;
    # its result still names the id it appended, which the read saw.
    history = [
        op("a", "append", (), ("ok", "x"), 0, 10),
        op("b", "ids", (), ("ok", ("x",)), 1, 2),
        op("c", "ids", (), ("ok", ("x", "y")), 3, 4),
    ]
    verdict = check(history, Log())
    assert not verdict.linearizable
    assert verdict.cut == 4
    assert check(history[:2], Log()).linearizable


def test_the_counterexample_is_the_shortest_failing_prefix_and_later_operations_are_left_out() -> (
    None
):
    history = [write("w", 1, 0, 1)]
    history += [read(f"r{n}", 1, 2 + 2 * n, 3 + 2 * n) for n in range(5)]
    history.append(read("stale", 0, 12, 13))
    history += [read(f"s{n}", 1, 14 + 2 * n, 15 + 2 * n) for n in range(20)]
    history.append(write("late", 0, 60, 61))
    verdict = check(history, Register())
    assert not verdict.linearizable
    assert verdict.cut == 13
    assert verdict.counterexample == tuple(history[:7])
    assert brute_cut(history[:9], Register()) == (13, set(history[:7]))


def test_the_report_is_a_timeline_naming_the_operations_and_why_no_order_explains_them() -> None:
    history = [
        write("writer", 7, 0.0, 0.010),
        write("slow", 9, 0.005, 0.100),
        read("reader", 0, 0.020, 0.030),
        read("never", 9, 0.025, 0.200),
        write("gone", 3, 0.026, None),
    ]
    verdict = check(history, Register())
    assert not verdict.linearizable
    assert verdict.cut == 0.030
    report = verdict.report()
    lines = report.splitlines()
    assert "Not linearizable" in lines[0]
    assert "+30.000ms" in lines[0]
    for process in ("writer", "slow", "reader", "never", "gone"):
        assert sum(1 for line in lines[1:6] if line.lstrip().startswith(process)) == 1
    by_process = {line.split()[0]: line for line in lines[1:6]}
    assert "write(7) -> ('ok',)" in by_process["writer"]
    assert "read() -> ('ok', 0)" in by_process["reader"]
    assert "returned +10.000ms" in by_process["writer"]
    assert "returned after the cut, at +100.000ms" in by_process["slow"]
    assert "never returned" in by_process["gone"]
    assert by_process["slow"].count(">") == 2  # the open-ended bar, and the "->"
    assert by_process["writer"].count(">") == 1
    assert "Why:" in report
    assert "reader: read() -> ('ok', 0)" in report.split("Why:")[1]
    assert "search nodes" in lines[-1]
    with pytest.raises(AssertionError) as raised:
        assert_linearizable(history, Register())
    assert str(raised.value) == report


def test_the_report_of_a_linearizable_verdict_lists_the_order() -> None:
    verdict = check([write("a", 1, 0, 1), read("b", 1, 2, 3)], Register())
    report = verdict.report()
    assert report.startswith("Linearizable")
    assert "1. a: write(1) -> ('ok',)" in report
    assert "2. b: read() -> ('ok', 1)" in report


def by_key_history() -> list[Operation]:
    # Two registers, "x" and "y", whose operations interleave: as one register it fails.
    return [
        op("a", "write", ("x", 1), ("ok",), 0, 1),
        op("b", "write", ("y", 2), ("ok",), 2, 3),
        op("c", "read", ("x",), ("ok", 1), 4, 5),
        op("d", "read", ("y",), ("ok", 2), 4, 6),
        op("e", "cas", ("x", 1, 3), ("ok", True), 5.5, 7),
        op("f", "read", ("y",), ("ok", 2), 8, 9),
        # On "z" the read must come first though it was called second.
        op("g", "write", ("z", 5), ("ok",), 10, 20),
        op("h", "read", ("z",), ("ok", 0), 11, 12),
        op("i", "read", ("x",), ("ok", 3), 13, 14),
    ]


class KeyedRegister(Register):
    """A Register for one key: the key is the first argument of every call."""

    def step(self, state: int, op: Operation, *, checked: bool = True) -> int | None:
        return super().step(state, replace(op, args=op.args[1:]), checked=checked)


def test_check_by_key_checks_each_key_alone_and_merges_the_orders_in_real_time() -> None:
    history = by_key_history()
    models: dict[Hashable, KeyedRegister] = {}

    def model(key: Hashable) -> KeyedRegister:
        return models.setdefault(key, KeyedRegister())

    def key(o: Operation) -> Hashable:
        return o.args[0]

    assert not check(history, KeyedRegister()).linearizable
    verdict = check_by_key(history, model, key)
    assert verdict.linearizable
    assert set(models) == {"x", "y", "z"}
    assert sorted(verdict.order, key=id) == sorted(history, key=id)
    for x, y in itertools.combinations(verdict.order, 2):
        assert not precedes(y, x)
    for k in ("x", "y", "z"):
        part = [o for o in history if o.args[0] == k]
        in_order = [o for o in verdict.order if o.args[0] == k]
        assert is_valid_order(in_order, part, KeyedRegister())
    assert verdict.explored >= len(history)
    assert assert_linearizable(history, model, key=key).linearizable


def test_check_by_key_returns_the_failing_part_naming_its_key() -> None:
    history = [*by_key_history(), op("j", "read", ("y",), ("ok", 0), 10, 11)]
    verdict = check_by_key(history, lambda _: KeyedRegister(), lambda o: o.args[0])
    assert not verdict.linearizable
    assert verdict.part == "'y'"
    assert verdict.cut == 11
    assert all(o.args[0] == "y" for o in verdict.counterexample)
    assert "(key 'y')" in verdict.report().splitlines()[0]


def concurrent_history(processes: int, per_process: int, seed: int) -> list[Operation]:
    """A linearizable history of a CAS register: each process issues operations one after
    another with random durations, each taking effect at a random instant within its call."""
    rng = random.Random(seed)
    calls: list[tuple[str, str, tuple[int, ...], float, float, float]] = []
    for p in range(processes):
        clock = rng.random()
        for _ in range(per_process):
            start = clock
            end = start + rng.uniform(0.5, 3.0)
            point = rng.uniform(start, end)
            kind = rng.choice(["read", "write", "cas", "cas"])
            count = 1 if kind == "write" else 2
            values = tuple(rng.randrange(3) for _ in range(count))
            calls.append((f"p{p}", kind, values, start, end, point))
            clock = end + rng.uniform(0.0, 0.5)
    state = 0
    history = []
    for process, kind, values, start, end, _ in sorted(calls, key=lambda c: c[5]):
        if kind == "read":
            history.append(op(process, "read", (), ("ok", state), start, end))
        elif kind == "write":
            state = values[0]
            history.append(op(process, "write", values, ("ok",), start, end))
        else:
            swapped = state == values[0]
            state = values[1] if swapped else state
            history.append(op(process, "cas", values, ("ok", swapped), start, end))
    return sorted(history, key=lambda o: o.start)


def test_a_search_past_max_nodes_is_inconclusive_and_says_what_to_change() -> None:
    history = concurrent_history(processes=4, per_process=5, seed=1)
    with pytest.raises(SearchLimitExceeded) as raised:
        check(history, Register(), max_nodes=3)
    message = str(raised.value)
    assert "gave up after 3 search nodes" in message
    assert "history of 20 operations from 4 processes" in message
    assert "Inconclusive, not a pass" in message
    assert "fewer concurrent operations per key" in message
    with pytest.raises(SearchLimitExceeded, match="for key 'k'"):
        check_by_key(history, lambda _: Register(), lambda _: "k", max_nodes=3)
    with pytest.raises(SearchLimitExceeded):
        assert_linearizable(history, Register(), max_nodes=3)


class Counter:
    """A counter, initially 0: incr() -> ("ok", the new value); get() -> ("ok", value)."""

    def initial(self) -> int:
        return 0

    def step(self, state: int, op: Operation, *, checked: bool = True) -> int | None:
        if op.call == "get":
            return state if not checked or op.result == ("ok", state) else None
        return state + 1 if not checked or op.result == ("ok", state + 1) else None


def test_a_cut_whose_search_gives_up_is_passed_over_for_a_longer_one_that_fails() -> None:
    # Returned, the increments can only be ordered by their results, which a search sees at
    # once. Pending (in the cut at the read's return), any subset of them may have taken
    # effect: 2**14 configurations, far more than 2,000 nodes to search.
    history = [op(f"i{n}", "incr", (), ("ok", n + 1), 0, 100) for n in range(14)]
    history.append(op("r", "get", (), ("ok", 99), 1, 2))
    verdict = check(history, Counter(), max_nodes=2_000)
    assert not verdict.linearizable
    assert verdict.cut == 100
    assert verdict.counterexample == tuple(sorted(history, key=lambda o: o.start))
    assert verdict.explored <= 4_000
    assert check(history, Counter()).cut == 2


def test_a_failing_cut_settles_a_history_too_large_to_search_whole() -> None:
    # The whole history is too much to search (pending increments, concurrent with a read they
    # could explain), but its first read already saw a value nothing wrote.
    history = [op("r0", "get", (), ("ok", 7), 0, 1)]
    history += [op(f"i{n}", "incr", (), PENDING, 2, None) for n in range(14)]
    history.append(op("r1", "get", (), ("ok", 99), 3, 4))
    with pytest.raises(SearchLimitExceeded):
        check(history[1:], Counter(), max_nodes=2_000)
    verdict = check(history, Counter(), max_nodes=2_000)
    assert not verdict.linearizable
    assert verdict.cut == 1
    assert verdict.counterexample == (history[0],)


def test_a_malformed_history_is_refused() -> None:
    with pytest.raises(ValueError, match="before it was called"):
        check([read("a", 0, 2, 1)], Register())
    with pytest.raises(ValueError, match="PENDING"):
        check([op("a", "read", (), PENDING, 0, 1)], Register())
    with pytest.raises(ValueError, match="PENDING"):
        check([op("a", "read", (), ("ok", 0), 0, None)], Register())
    assert check([], Register()).linearizable


def test_pending_survives_pickling_as_itself() -> None:
    history = [write("a", 1, 0, None)]
    (copy,) = pickle.loads(pickle.dumps(history))
    assert copy.result is PENDING
    assert copy == history[0]
    assert repr(PENDING) == "PENDING"


def test_two_hundred_operations_from_eight_processes_get_verdicts_quickly() -> None:
    history = concurrent_history(processes=8, per_process=25, seed=7)
    assert len(history) == 200
    began = time.monotonic()
    verdict = assert_linearizable(history, Register())
    assert is_valid_order(verdict.order, history, Register())
    # A stale read in the middle of the history: the cut ends at its return.
    reads = [n for n, o in enumerate(history) if o.call == "read" and n >= 90]
    victim = history[reads[0]]
    assert isinstance(victim.result, tuple)
    stale = replace(victim, result=("ok", 5))
    broken = [*history[: reads[0]], stale, *history[reads[0] + 1 :]]
    failed = check(broken, Register())
    elapsed = time.monotonic() - began
    assert not failed.linearizable
    assert failed.cut == stale.end
    assert stale in failed.counterexample
    assert stale.end is not None
    assert all(o.start <= stale.end for o in failed.counterexample)
    # Generous: this takes well under a second here; the bounds only guard against a regression
    # to exponential search.
    assert elapsed < 30
    assert verdict.explored + failed.explored < 200_000


# -- agreement with brute force ---------------------------------------------------------------


@st.composite
def small_histories(draw: st.DrawFn) -> list[Operation]:
    """Up to 7 operations on a CAS register over values 0..2, with random (often tied) integer
    intervals, some never returning; results either random or those of a true sequential run
    (then sometimes one corrupted), so both verdicts are common."""
    size = draw(st.integers(1, 7))
    honest = draw(st.booleans())
    rows = []
    for n in range(size):
        start = draw(st.integers(0, 10))
        length = draw(st.integers(0, 4))
        pending = draw(st.integers(0, 5)) == 0
        kind = draw(st.sampled_from(["read", "write", "cas"]))
        args: tuple[int, ...] = ()
        if kind == "write":
            args = (draw(st.integers(0, 2)),)
        elif kind == "cas":
            args = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        point = start + draw(st.integers(0, 2 * length)) / 2
        effect = not pending or draw(st.booleans())
        rows.append((n, kind, args, start, None if pending else start + length, point, effect))
    results: dict[int, Hashable] = {}
    state = 0
    for n, kind, args, _, end, _, effect in sorted(rows, key=lambda r: (r[5], r[0])):
        if kind == "read":
            result: Hashable = ("ok", state)
        elif kind == "write":
            result = ("ok",)
            state = args[0] if effect else state
        else:
            swapped = state == args[0]
            result = ("ok", swapped)
            state = args[1] if swapped and effect else state
        if not honest:
            if kind == "read":
                result = ("ok", draw(st.integers(0, 2)))
            elif kind == "cas":
                result = ("ok", draw(st.booleans()))
        results[n] = PENDING if end is None else result
    if honest and draw(st.booleans()):
        victim = draw(st.sampled_from([r[0] for r in rows]))
        if results[victim] is not PENDING and rows[victim][1] != "write":
            results[victim] = ("ok", 3 - len(rows))  # any value, maybe a wrong one
    return [
        op(f"p{n % 4}", kind, args, results[n], float(start), None if end is None else float(end))
        for n, kind, args, start, end, _, _ in rows
    ]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(small_histories())
def test_the_checker_agrees_with_brute_force_on_small_histories(history: list[Operation]) -> None:
    model = Register()
    returned = [o.end is not None for o in history]
    expected = brute_linearizable(history, returned, model)
    verdict = check(history, model)
    assert verdict.linearizable == expected
    if expected:
        assert is_valid_order(verdict.order, history, model)
        assert verdict.counterexample == ()
        return
    shortest = brute_cut(history, model)
    assert shortest is not None
    t, members = shortest
    assert verdict.cut == t
    assert sorted(verdict.counterexample, key=id) == sorted(members, key=id)
    assert [o.start for o in verdict.counterexample] == sorted(o.start for o in members)
    assert "Not linearizable" in verdict.report()


def test_verdicts_are_plain_values() -> None:
    verdict = Verdict(True, (), (), None, 0)
    assert verdict.why == ""
    assert verdict.part is None

"""Linearizability checking of recorded histories: Wing & Gong's search with Lowe's memoization.

A history is a sequence of :class:`Operation` records: who called what, with which arguments, what
it returned, and when it was called and returned (one clock for everyone: ``time.monotonic()``).
It is *linearizable* against a :class:`SequentialModel` when some total order of its operations
(1) contains every operation that returned and any subset of those that never did, (2) keeps
real-time order (``a`` precedes ``b`` whenever ``a`` returned before ``b`` was called) and (3) is
a run of the model in which every returned operation returns exactly what it returned.

:func:`check` searches for such an order depth-first (Wing & Gong 1993): at each point it tries to
linearize next any operation called before the earliest pending return, and backtracks when that
return is reached. Lowe's memoization ("Testing for linearizability", 2016) prunes every
configuration already explored: a configuration is the set of operations linearized so far (a
bitset) with the model state they lead to, and the rest of the search depends on nothing else.
A configuration is pruned too when one with the same state and the same returned operations but
fewer pending ones was explored (the extra pending operations could have been left out), which
keeps histories with operations that never returned tractable.
:func:`check_by_key` checks each key's sub-history separately (P-compositionality: a history of
independent objects is linearizable iff each object's sub-history is), which keeps the search
small. When a history is not linearizable, the verdict carries the shortest prefix of it (a "cut")
that no order explains; :meth:`Verdict.report` prints it as a timeline.

The search is bounded: past ``max_nodes`` steps of the model it gives up, and the check raises
:class:`SearchLimitExceeded`, an inconclusive outcome that must never be taken for a pass.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar, overload

__all__ = [
    "PENDING",
    "Operation",
    "SearchLimitExceeded",
    "SequentialModel",
    "Verdict",
    "assert_linearizable",
    "check",
    "check_by_key",
]

DEFAULT_MAX_NODES: Final = 2_000_000
_SUBSET_SCAN: Final = 64
_SHOWN_ORDER: Final = 12


class _Pending(enum.Enum):
    # An enum member, not a bare object(): it survives pickling between processes as itself, so
    # `result is PENDING` holds for histories recorded in another OS process.
    PENDING = "PENDING"

    def __repr__(self) -> str:
        return "PENDING"


PENDING: Final = _Pending.PENDING
"""The result of an operation that never returned (cancelled, timed out, or its process died)."""


@dataclass(frozen=True)
class Operation:
    """One call in a history.

    ``result`` is what the call returned, as a hashable value the model understands (for example
    ``("ok", 2)`` or ``("error", "ConflictError")``), or :data:`PENDING` when it never returned;
    ``end`` is then ``None``. ``start`` and ``end`` come from one clock shared by every process.
    """

    process: str
    call: str
    args: tuple[Hashable, ...]
    result: Hashable
    start: float
    end: float | None


S = TypeVar("S", bound=Hashable)


class SequentialModel(Protocol[S]):
    """The sequential specification the history is checked against; states are hashable."""

    def initial(self) -> S:
        """The state before any operation."""
        ...

    def step(self, state: S, op: Operation, *, checked: bool = True) -> S | None:
        """The state after `op` runs alone in `state`.

        With checked=True: None unless op.result is a result the sequential specification allows
        for op in `state`. With checked=False the result is not judged (the op's return was not
        observed in this (sub)history), only its effect is applied; op.result may still be read for
        identifiers the system chose (for example an id it returned), unless it is PENDING.

        Whenever ``step(state, op, checked=True)`` is not None, ``step(state, op, checked=False)``
        must return the same state: a returned operation that is cut off from its return (see
        :func:`check`) must have the effect it had. Return None with checked=False only when `op`
        cannot take effect in `state` at all.
        """
        ...


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check.

    ``order`` is a witness when ``linearizable``: every operation in a valid order (pending ones
    that took no effect left out). Otherwise ``counterexample`` is the shortest non-linearizable
    cut of the history (every operation called by time ``cut``; those that had not returned by
    then count as pending), in call order, and ``why`` says why no order explains it.
    ``explored`` counts the search nodes visited (every step of the model tried), over every
    search the verdict needed. ``part`` names the key of the sub-history, for :func:`check_by_key`.
    """

    linearizable: bool
    order: tuple[Operation, ...]
    counterexample: tuple[Operation, ...]
    cut: float | None
    explored: int
    why: str = ""
    part: str | None = None

    def report(self) -> str:
        """A human-readable account: for a failure, the counterexample as a timeline."""
        where = f" (key {self.part})" if self.part is not None else ""
        if self.linearizable:
            lines = [
                f"Linearizable{where}: {len(self.order)} operations in a valid order "
                f"({self.explored} search nodes):"
            ]
            lines += [f"  {n:>4}. {_describe(op)}" for n, op in enumerate(self.order, 1)]
            return "\n".join(lines)
        return _timeline(self, where)


class SearchLimitExceeded(Exception):
    """The search visited more than ``max_nodes`` nodes: inconclusive, never a pass."""


# -- the search -------------------------------------------------------------------------------


@dataclass
class _Outcome:
    linearizable: bool
    exceeded: bool
    order: tuple[int, ...]  # the witness when linearizable, indices into the searched ops
    explored: int
    # The longest order the search found for a prefix (when not linearizable) and its state.
    deepest: tuple[int, ...]
    deepest_state: Hashable


def _search(
    ops: Sequence[Operation],
    returned: Sequence[bool],
    model: SequentialModel[Any],
    max_nodes: int,
) -> _Outcome:
    """Wing & Gong's search with Lowe's memoization over `ops`.

    ``returned[i]`` says whether ops[i] counts as returned here: then its result is judged and its
    end bounds real-time order; otherwise it is pending (its result not judged, its end ignored,
    and it may be left out of the order).
    """
    # Call and return entries in time order, in a doubly linked list (index 0 is the head,
    # -1 the end) from which an operation's entries are lifted while it is linearized. At equal
    # times calls come first: an operation returning when another is called does not precede it.
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.start, 0, i))
        if returned[i]:
            assert op.end is not None
            events.append((op.end, 1, i))
    events.sort()
    size = len(events) + 1
    op_of = [-1] * size
    is_call = [False] * size
    return_entry = [-1] * len(ops)
    for e, (_, kind, i) in enumerate(events, 1):
        op_of[e] = i
        is_call[e] = kind == 0
        if kind == 1:
            return_entry[i] = e
    nxt = [*range(1, size), -1]
    prv = [-1, *range(size - 1)]

    def unlink(e: int) -> None:
        nxt[prv[e]] = nxt[e]
        if nxt[e] != -1:
            prv[nxt[e]] = prv[e]

    def relink(e: int) -> None:
        nxt[prv[e]] = e
        if nxt[e] != -1:
            prv[nxt[e]] = e

    step = model.step
    state: Hashable = model.initial()
    remaining = sum(1 for r in returned if r)
    if remaining == 0:
        return _Outcome(True, False, (), 0, (), state)
    done = 0  # bitset of the returned operations in the order so far
    pend = 0  # bitset of the pending operations in it
    # Lowe's cache: the configurations settled (explored, or being explored below on the stack).
    # A configuration is (done, pend, state). It is also settled as soon as one with the same done
    # and state and a subset of its pend is: every continuation of the larger one continues the
    # smaller one too (the extra pending operations can be left out, they precede nothing, and the
    # remaining returned operations are the same); if the smaller one is still on the stack, its
    # own search reaches every such continuation. Scanning for subsets costs time, so only the
    # first few pend sets met per (done, state) are scanned; the rest are matched exactly.
    seen: set[tuple[int, int, Hashable]] = set()
    smallest: dict[tuple[int, Hashable], list[int]] = {}
    stack: list[tuple[int, Hashable]] = []  # (call entry, state before it)
    deepest: tuple[int, ...] = ()
    deepest_state = state
    explored = 0
    e = nxt[0]
    while True:
        if e == -1 or not is_call[e]:
            # An operation returned and is not in the order yet: whatever the order so far, it
            # cannot be extended. Undo its last choice and try the next candidate after it.
            if not stack:
                return _Outcome(False, False, (), explored, deepest, deepest_state)
            c, state = stack.pop()
            i = op_of[c]
            if return_entry[i] != -1:
                done ^= 1 << i
                relink(return_entry[i])
                remaining += 1
            else:
                pend ^= 1 << i
            relink(c)
            e = nxt[c]
            continue
        explored += 1
        if explored > max_nodes:
            return _Outcome(False, True, (), explored - 1, deepest, deepest_state)
        i = op_of[e]
        after = step(state, ops[i], checked=returned[i])
        if after is not None:
            if return_entry[i] != -1:
                config, pending = (done | (1 << i), after), pend
            else:
                config, pending = (done, after), pend | (1 << i)
            known = smallest.setdefault(config, [])
            if (config[0], pending, after) not in seen and not any(
                k & ~pending == 0 for k in known
            ):
                seen.add((config[0], pending, after))
                if len(known) < _SUBSET_SCAN:
                    known.append(pending)
                stack.append((e, state))
                state = after
                done, pend = config[0], pending
                unlink(e)
                if return_entry[i] != -1:
                    unlink(return_entry[i])
                    remaining -= 1
                    if remaining == 0:
                        order = tuple(op_of[c] for c, _ in stack)
                        return _Outcome(True, False, order, explored, (), state)
                if len(stack) > len(deepest):
                    deepest = tuple(op_of[c] for c, _ in stack)
                    deepest_state = state
                e = nxt[0]
                continue
        e = nxt[e]


# -- cuts and verdicts ------------------------------------------------------------------------
#
# cut(t) is the history as seen at time t: every operation called by t (start <= t); those that
# had not returned by t (end > t, or never) are pending in it. Linearizability of cuts is monotone
# in t, which is what lets the shortest failing cut be found by binary search:
#
#   If H is linearizable, so is cut(t) for every t. Take a linearization L of H and let P be its
#   prefix ending with the last operation that returned by t (empty if none did). An operation b
#   called after t cannot be in P: every a that returned by t has a.end <= t < b.start, so a
#   precedes b in real time and comes before b in L, and P ends with such an a. So P consists of
#   operations of cut(t), and it holds every operation that returned by t. P is a run of the model
#   in which every operation that returned by t returns what it returned; the others of P are
#   pending in cut(t), where step(..., checked=False) gives them the same effect (the model's
#   rule). Real-time order in cut(t) only relates operations that returned by t, with the same ends
#   as in H, so P keeps it. Hence P linearizes cut(t).
#
#   And cut(t1) of cut(t2) is cut(t1) of H for t1 <= t2 (an operation pending at t2 is pending at
#   t1), so applying the above to cut(t2) gives: cut(t2) linearizable => cut(t1) linearizable.
#
# So the cuts that fail form a suffix of time. cut(t) only changes when t passes a call (a new
# pending operation, which can always be left out, so never the first failure) or a return, so
# the first failing cut is at some return time. The last return time's cut is H itself, minus the
# pending operations called after every return (they follow every returned operation in any
# order, so they can always be left out): it fails exactly when H does.


def _validate(history: Sequence[Operation]) -> None:
    for op in history:
        if not isinstance(op, Operation):
            raise TypeError(f"a history holds Operation records, not {op!r}")
        if not math.isfinite(op.start) or (op.end is not None and not math.isfinite(op.end)):
            raise ValueError(f"times must be finite: {op!r}")
        if (op.end is None) != (op.result is PENDING):
            raise ValueError(f"an operation has no end exactly when its result is PENDING: {op!r}")
        if op.end is not None and op.end < op.start:
            raise ValueError(f"an operation cannot return before it was called: {op!r}")


def _cut(ops: Sequence[Operation], t: float) -> tuple[list[Operation], list[bool]]:
    """cut(t) of `ops` sorted by call time: a prefix of them, and which had returned by t."""
    members = list(ops[: bisect.bisect_right(ops, t, key=lambda op: op.start)])
    return members, [op.end is not None and op.end <= t for op in members]


def _end_key(op: Operation) -> float:
    return math.inf if op.end is None else op.end


def _limit_message(history: Sequence[Operation], max_nodes: int, part: str | None) -> str:
    processes = {op.process for op in history}
    pending = sum(1 for op in history if op.end is None)
    where = f" for key {part}" if part is not None else ""
    return (
        f"linearizability check{where} gave up after {max_nodes} search nodes (max_nodes) on a "
        f"history of {len(history)} operations from {len(processes)} processes, at most "
        f"{_max_overlap(history)} of them running at once, {pending} that never returned (and "
        f"found no failing prefix of it within as many nodes again). Inconclusive, not a pass: "
        f"record fewer concurrent operations per key (fewer processes or tasks on one key, "
        f"shorter runs, more keys, fewer operations left unfinished), or raise max_nodes."
    )


def _max_overlap(history: Sequence[Operation]) -> int:
    marks = sorted(
        [(op.start, 0) for op in history] + [(_end_key(op), 1) for op in history],
    )
    running = most = 0
    for _, kind in marks:
        running += 1 if kind == 0 else -1
        most = max(most, running)
    return most


def _check(
    history: Sequence[Operation],
    model: SequentialModel[Any],
    max_nodes: int,
    part: str | None,
) -> Verdict:
    _validate(history)
    ops = sorted(history, key=lambda op: (op.start, _end_key(op)))
    returned = [op.end is not None for op in ops]
    outcome = _search(ops, returned, model, max_nodes)
    explored = outcome.explored
    if outcome.linearizable:
        return Verdict(True, tuple(ops[i] for i in outcome.order), (), None, explored, part=part)

    # Bisect the return times for the first failing cut (failures are monotone, see above). The
    # last return time's cut stands for the whole history, whose search already failed or gave
    # up; `best` is the earliest cut known to fail. The cut searches share one budget of
    # max_nodes. A cut whose search gives up sends the bisection to earlier, smaller cuts: the
    # cut reported then fails for certain, though a shorter one may exist. So a failing cut can
    # be found even where the whole history was too much to search, which proves that the whole
    # history fails too.
    ends = sorted({op.end for op in ops if op.end is not None})
    best: tuple[float, list[Operation], list[bool], _Outcome] | None = None
    if not outcome.exceeded:
        # That cut is a prefix of `ops` (see above), so the search's indices hold in it.
        best = (ends[-1], *_cut(ops, ends[-1]), outcome)
    budget = max_nodes
    lo, hi = 0, len(ends) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        cut_ops, cut_returned = _cut(ops, ends[mid])
        attempt = _search(cut_ops, cut_returned, model, budget)
        explored += attempt.explored
        budget -= attempt.explored
        if attempt.linearizable:
            lo = mid + 1
        else:
            hi = mid
            if not attempt.exceeded:
                best = (ends[mid], cut_ops, cut_returned, attempt)
    if best is None:
        raise SearchLimitExceeded(_limit_message(ops, max_nodes, part))
    t, failing_ops, failing_returned, failing = best
    why = _explain(failing_ops, failing_returned, failing, model)
    return Verdict(False, (), tuple(failing_ops), t, explored, why=why, part=part)


def _explain(
    ops: Sequence[Operation],
    returned: Sequence[bool],
    outcome: _Outcome,
    model: SequentialModel[Any],
) -> str:
    """Why no order explains `ops`: the longest order the search found, and what blocks it."""
    done = set(outcome.deepest)
    state = outcome.deepest_state
    origin = min(op.start for op in ops)
    # What may come next: the operations not ordered yet that were called by the earliest return
    # of one not ordered yet (whatever was called after that return must follow it).
    waiting = [n for n, op in enumerate(ops) if n not in done and returned[n]]
    first = min(waiting, key=lambda n: _end_key(ops[n]))
    horizon = _end_key(ops[first])
    candidates = [n for n, op in enumerate(ops) if n not in done and op.start <= horizon]
    lines: list[str] = []
    if outcome.deepest:
        lines.append(
            f"Why: the longest order that explains any prefix of it has {len(outcome.deepest)} "
            f"of the {len(ops)} operations:"
        )
        numbered = list(enumerate(outcome.deepest, 1))
        if len(numbered) > _SHOWN_ORDER:
            lines.append(f"        ({len(numbered) - _SHOWN_ORDER} earlier ones)")
            numbered = numbered[-_SHOWN_ORDER:]
        lines += [f"  {k:>4}. {_describe(ops[n])}" for k, n in numbered]
        lines.append(f"It leaves {type(model).__name__} in state {state!r}.")
    else:
        lines.append(
            f"Why: no operation can even come first, from {type(model).__name__}'s initial "
            f"state {state!r}."
        )
    lines.append(
        f"Next must come {_describe(ops[first])}, which returned at "
        f"+{(horizon - origin) * 1000:.3f}ms, or an operation called by then; none can:"
    )
    for n in candidates:
        op = ops[n]
        after = model.step(state, op, checked=returned[n])
        if after is None and returned[n]:
            reason = "the model does not allow this result here"
        elif after is None:
            reason = "it cannot take effect here"
        else:
            reason = f"allowed (state {after!r}), but no order of the rest works after it"
        unjudged = "" if returned[n] else " (not returned by then: result not judged)"
        lines.append(f"  - {_describe(op)}{unjudged}: {reason}")
    return "\n".join(lines)


def _call_text(op: Operation) -> str:
    args = ", ".join(repr(a) for a in op.args)
    return f"{op.call}({args}) -> {op.result!r}"


def _describe(op: Operation) -> str:
    return f"{op.process}: {_call_text(op)}"


def _timeline(verdict: Verdict, where: str) -> str:
    ops = verdict.counterexample
    cut = verdict.cut
    assert cut is not None
    origin = min(op.start for op in ops)
    span = max(cut - origin, 1e-12)
    width = 40

    def rel(t: float) -> str:
        return f"+{(t - origin) * 1000:.3f}ms"

    def column(t: float) -> int:
        return min(width - 1, int((t - origin) / span * (width - 1)))

    def bar(op: Operation) -> str:
        open_ended = op.end is None or op.end > cut
        stop = width - 1 if op.end is None or open_ended else column(op.end)
        cells = [" "] * width
        for k in range(column(op.start), stop + 1):
            cells[k] = "="
        if open_ended:
            cells[-1] = ">"
        return "|" + "".join(cells) + "|"

    proc_width = max(len(op.process) for op in ops)
    lines = [
        f"Not linearizable{where}: no order explains the {len(ops)} operations called by "
        f"{rel(cut)}, the shortest such prefix of the history (times relative to the first "
        f"call; '>' marks an operation that had not returned by then: its result is not judged "
        f"and it may or may not have taken effect):"
    ]
    for op in ops:
        if op.end is None:
            end = "never returned"
        elif op.end > cut:
            end = f"returned after the cut, at {rel(op.end)}"
        else:
            end = f"returned {rel(op.end)}"
        lines.append(
            f"  {op.process:<{proc_width}} {bar(op)} {_call_text(op)}  "
            f"(called {rel(op.start)}, {end})"
        )
    if verdict.why:
        lines.append(verdict.why)
    lines.append(f"({verdict.explored} search nodes explored.)")
    return "\n".join(lines)


# -- the public checks ------------------------------------------------------------------------


def check(
    history: Sequence[Operation],
    model: SequentialModel[S],
    *,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> Verdict:
    """Whether `history` is linearizable against `model`, with a witness or a counterexample.

    Real-time order: ``a`` precedes ``b`` iff ``a.end is not None and a.end < b.start``. The
    verdict is linearizable iff some total order of a subset of `history` holding every returned
    operation keeps real-time order and is a run of the model in which each returned operation
    passes ``step(..., checked=True)`` and each pending one ``step(..., checked=False)``. When it
    is not, ``counterexample`` is cut(t) for the smallest return time t for which cut(t) is not
    linearizable, where cut(t) holds the operations called by t (start <= t) and those that had
    not returned by t are pending in it.

    Cost: the search of the whole history may take `max_nodes` steps of the model, and the
    searches for the shortest failing cut as many again, together. Should a cut's search give up,
    the counterexample is the earliest cut found to fail, which may not be the shortest.
    Raises :class:`SearchLimitExceeded` when the whole history's search gave up and no cut was
    found to fail, and ValueError for a malformed history (an end before its start, or an end
    missing exactly when the result is not PENDING).
    """
    return _check(history, model, max_nodes, None)


def check_by_key(
    history: Sequence[Operation],
    model: Callable[[Hashable], SequentialModel[Any]],
    key: Callable[[Operation], Hashable],
    *,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> Verdict:
    """:func:`check` each key's sub-history against ``model(key)``.

    Sound and complete when the keys are independent objects (each operation reads and changes
    only its key's state): a history of independent objects is linearizable iff each object's
    sub-history is. An operation on several keys belongs to one part only; check those with one
    model of every key instead, or split them into one operation per key (which no longer checks
    that they were atomic across keys).

    Returns the first failing part's verdict (parts in order of their first call), ``part``
    naming its key; else a linearizable verdict whose ``order`` merges the parts' orders in an
    order that keeps real time, and whose ``explored`` sums every part's. `max_nodes` bounds the
    search of each part.
    """
    _validate(history)
    parts: dict[Hashable, list[Operation]] = {}
    for op in sorted(history, key=lambda op: (op.start, _end_key(op))):
        parts.setdefault(key(op), []).append(op)
    explored = 0
    orders: list[tuple[Operation, ...]] = []
    for k, ops in parts.items():
        verdict = _check(ops, model(k), max_nodes, repr(k))
        if not verdict.linearizable:
            return verdict
        explored += verdict.explored
        orders.append(verdict.order)
    return Verdict(True, _merge(orders), (), None, explored)


def _merge(orders: Sequence[tuple[Operation, ...]]) -> tuple[Operation, ...]:
    """One order of all parts' operations that keeps each part's order and real-time order.

    Each operation gets a linearization point: the latest call time among it and the operations
    before it in its part. That point lies within the operation's interval (an operation earlier
    in a valid order cannot have been called after this one returned) and never decreases along a
    part, and an operation that returned before another was called gets a smaller point.
    Sorting by point, then by position within the part, gives the order.
    """
    points: list[tuple[float, int, int, Operation]] = []
    for p, order in enumerate(orders):
        point = -math.inf
        for n, op in enumerate(order):
            point = max(point, op.start)
            points.append((point, p, n, op))
    points.sort(key=lambda item: item[:3])
    return tuple(item[3] for item in points)


@overload
def assert_linearizable(
    history: Sequence[Operation],
    model: SequentialModel[Any],
    *,
    key: None = None,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> Verdict: ...


@overload
def assert_linearizable(
    history: Sequence[Operation],
    model: Callable[[Hashable], SequentialModel[Any]],
    *,
    key: Callable[[Operation], Hashable],
    max_nodes: int = DEFAULT_MAX_NODES,
) -> Verdict: ...


def assert_linearizable(
    history: Sequence[Operation],
    model: Any,
    *,
    key: Callable[[Operation], Hashable] | None = None,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> Verdict:
    """:func:`check` (or, given `key`, :func:`check_by_key` with `model` a factory per key).

    Returns the verdict when linearizable; raises AssertionError carrying
    :meth:`Verdict.report` when not, and :class:`SearchLimitExceeded` when inconclusive.
    """
    if key is None:
        verdict = check(history, model, max_nodes=max_nodes)
    else:
        verdict = check_by_key(history, model, key, max_nodes=max_nodes)
    if not verdict.linearizable:
        raise AssertionError(verdict.report())
    return verdict

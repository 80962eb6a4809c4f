"""``run_in_processes`` and the worker it starts: results, races, errors, timeouts, recipes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sessionstore import SessionStore
from sessionstore_contract import ContractTarget, ManualClock
from sessionstore_contract.processes import run_in_processes
from sessionstore_contract.target import NotPortableError
from sessionstore_memory import create_backend

HERE = __name__


async def overlap_scenario(store: SessionStore, params: dict[str, Any]) -> dict[str, Any]:
    """Say who ran, and when, holding on for a while so overlapping runs can be seen."""
    started = time.time()
    await store.count_sessions()
    await asyncio.sleep(params["hold"])
    return {
        "n": params["n"],
        "namespace": store.namespace,
        "started": started,
        "ended": time.time(),
    }


async def failing_scenario(store: SessionStore, params: dict[str, Any]) -> None:
    raise ValueError(f"boom {params['n']}")


async def sleeping_scenario(store: SessionStore, params: dict[str, Any]) -> None:
    await asyncio.sleep(params["seconds"])


def memory_factory(spec: str, *, namespace: str) -> object:
    return create_backend("memory", namespace=namespace)


def test_results_come_back_in_order_from_processes_that_run_at_once() -> None:
    target = ContractTarget.from_spec("memory")
    params = [{"n": n, "hold": 1.0} for n in range(3)]
    results = run_in_processes(target, "ns-run", f"{HERE}:overlap_scenario", params)
    assert [r["n"] for r in results] == [0, 1, 2]
    assert {r["namespace"] for r in results} == {"ns-run"}
    # Every run was going on at one instant: they race, they do not take turns.
    assert max(r["started"] for r in results) < min(r["ended"] for r in results)


def test_a_failing_scenario_fails_the_test_with_its_traceback() -> None:
    target = ContractTarget.from_spec("memory")
    with pytest.raises(pytest.fail.Exception) as failed:
        run_in_processes(target, "ns", f"{HERE}:failing_scenario", [{"n": 7}])
    message = str(failed.value)
    assert "ValueError: boom 7" in message
    assert "Traceback" in message
    assert "failing_scenario" in message


def test_an_unimportable_scenario_is_reported() -> None:
    target = ContractTarget.from_spec("memory")
    with pytest.raises(pytest.fail.Exception, match="no_such_scenario"):
        run_in_processes(target, "ns", f"{HERE}:no_such_scenario", [{}])


def test_stragglers_are_killed_at_the_timeout() -> None:
    target = ContractTarget.from_spec("memory")
    began = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="still running after 3"):
        run_in_processes(
            target, "ns", f"{HERE}:sleeping_scenario", [{"seconds": 60}] * 2, timeout=3
        )
    assert time.monotonic() - began < 20


def test_recipes_rebuild_specs_factories_and_options() -> None:
    by_spec = ContractTarget.from_spec("memory://x", max_sessions=5)
    assert by_spec.recipe() == {"spec": "memory://x", "options": {"max_sessions": 5}}
    rebuilt = ContractTarget.from_recipe(by_spec.recipe())
    assert (rebuilt.spec, rebuilt.options) == ("memory://x", {"max_sessions": 5})

    by_path = ContractTarget.from_factory(f"{HERE}:memory_factory")
    assert by_path.recipe() == {"factory": f"{HERE}:memory_factory", "options": {}}
    assert ContractTarget.from_recipe(by_path.recipe()).spec is memory_factory
    # A factory given as an object is found again by its module and name.
    assert ContractTarget(memory_factory).recipe()["factory"] == f"{HERE}:memory_factory"


def test_a_target_other_processes_cannot_open_says_how_to_fix_it() -> None:
    closure = ContractTarget(
        lambda spec, *, namespace: create_backend("memory", namespace=namespace)
    )
    with pytest.raises(NotPortableError, match="module:callable"):
        closure.recipe()
    with pytest.raises(pytest.fail.Exception, match="--sessionstore-factory"):
        run_in_processes(closure, "ns", f"{HERE}:overlap_scenario", [{"n": 0, "hold": 0}])
    with pytest.raises(NotPortableError, match="not JSON"):
        ContractTarget.from_spec("memory", clock=ManualClock()).recipe()

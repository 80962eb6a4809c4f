"""One OS process of the contract suite's process tests: ``python -m sessionstore_contract.worker``.

The protocol, one JSON document per line (:func:`sessionstore_contract.processes.run_in_processes`
speaks the parent's side):

1. The worker imports what it needs and prints ``{"ready": <pid>}``, so the parent knows every
   process is up before it picks the instant they start at.
2. It reads one job from stdin, to end of input::

       {"target": <ContractTarget.recipe()>, "namespace": "...", "options": {...},
        "scenario": "module:function", "params": {...}, "start_at": <time.time() to start at>}

   ``options`` (optional) go to ``open_store`` besides the target's own.
3. It opens the store (that namespace), waits until ``start_at`` so that the processes race,
   runs ``await scenario(store, params)`` and closes the store (never clearing it: the namespace
   belongs to the parent).
4. It prints ``{"result": <what the scenario returned>}``, or ``{"error": "...", "traceback":
   "..."}`` and exits with status 1.

A scenario is any importable ``async def scenario(store, params) -> JSON``. Anything printed to
stdout by the scenario or the backend goes to stderr instead, so it cannot garble the protocol.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from sessionstore import SessionStore

from .target import ContractTarget

__all__ = ["Scenario", "load_scenario", "main"]

Scenario = Callable[[SessionStore, Any], Awaitable[Any]]
"""``async def scenario(store, params) -> JSON``."""


def load_scenario(path: str) -> Scenario:
    """Import ``"package.module:function"`` (the function may be a dotted attribute path)."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"scenario {path!r}: expected module:function")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise TypeError(f"scenario {path!r} is not callable")
    scenario: Scenario = found
    return scenario


async def _run(job: dict[str, Any]) -> Any:
    target = ContractTarget.from_recipe(job["target"])
    scenario = load_scenario(job["scenario"])
    store = target.open(namespace=job["namespace"], **(job.get("options") or {}))
    try:
        delay = float(job.get("start_at") or 0) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return await scenario(store, job.get("params"))
    finally:
        await store.aclose()


def _emit(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def main() -> int:
    """Run one job as the module docstring says; return the exit status."""
    out = sys.stdout
    sys.stdout = sys.stderr  # the protocol owns the real stdout
    _emit(out, {"ready": os.getpid()})
    try:
        job = json.loads(sys.stdin.read())
        result = asyncio.run(_run(job))
        line = json.dumps({"result": result})
    except BaseException as exc:  # every failure, SystemExit too, is reported to the parent
        _emit(
            out,
            {"error": f"{type(exc).__qualname__}: {exc}", "traceback": traceback.format_exc()},
        )
        return 1
    out.write(line + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the contract suite on several backends, one after another, in this one process.

``python suite_runner.py PLAN.json`` reads a list of ``[pytest arguments, ...]`` runs, calls
``pytest.main`` once per run with its output captured, and prints a JSON list of
``{"returncode": ..., "output": ...}`` in the same order. Each run is the same pytest command a
backend author types, only without starting a new interpreter: the interpreter, pytest's plugins
and the suite's modules load once for the whole plan (about two seconds a run saved, which is most
of a run's time when it selects a few tests).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

import pytest


def run_plan(plan: list[list[str]]) -> list[dict[str, object]]:
    """Run each argument list through ``pytest.main``; its exit code and what it printed."""
    results: list[dict[str, object]] = []
    for arguments in plan:
        output = io.StringIO()
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            code = pytest.main(arguments)
        results.append({"returncode": int(code), "output": output.getvalue()})
    return results


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as plan_file:
        runs = run_plan(json.load(plan_file))
    json.dump(runs, sys.stdout)

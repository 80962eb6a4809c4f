"""The contract suite fails on every deliberately broken backend, on the guarantee it breaks.

Each broken backend of the ``broken_*.py`` modules is run through the suite exactly as a backend
author would run it (the arguments of ``pytest --pyargs sessionstore_contract --sessionstore-factory
...``, run by ``suite_runner.py``: one process per core, each running its share of the backends one
after another), on the tests its module expects to fail (``-k``); ``faithful`` (the same
wrapping, nothing broken) runs the whole suite and must pass, so each failure is the defect's
doing. The runs use a fixed Hypothesis seed: the randomized tests (the state machine) then explore
the same examples everywhere, and the deterministic tests catch each defect anyway.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

HERE = Path(__file__).parent
BROKEN_MODULES = sorted(p.stem for p in HERE.glob("broken_*.py"))
EXPECTED_FAILURES: dict[str, set[str]] = {
    f"{module}:{name}": tests
    for module in BROKEN_MODULES
    for name, tests in importlib.import_module(module).EXPECTED_FAILURES.items()
}
FAITHFUL = "broken_backends:faithful"
TIMEOUT = 600


class Result(NamedTuple):
    """One run of the suite on one backend: pytest's exit code and what it printed."""

    returncode: int
    stdout: str


def _arguments(backend: str, tests: set[str] | None) -> list[str]:
    """The pytest arguments a backend author would type, with the selection of ``tests``."""
    selection = ["-k", " or ".join(sorted(tests))] if tests else []
    return [
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
        "--pyargs",
        "sessionstore_contract",
        "--sessionstore-factory",
        backend,
        "--hypothesis-profile",
        "sessionstore-quick",
        # Reproducible: the same examples on every machine, so a pass here is a pass in CI.
        "--hypothesis-seed",
        "20261124",
        *selection,
    ]


def _run_group(backends: list[str], env: dict[str, str], plan_file: Path) -> list[Result]:
    """Run the suite on each of ``backends`` in one process (suite_runner.py): pytest and the
    suite load once per group rather than once per backend."""
    plan = [
        _arguments(backend, None if backend == FAITHFUL else EXPECTED_FAILURES[backend])
        for backend in backends
    ]
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    process = subprocess.run(
        [sys.executable, str(HERE / "suite_runner.py"), str(plan_file)],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return [Result(run["returncode"], run["output"]) for run in json.loads(process.stdout)]


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    # One group per core. The faithful run (the whole suite) costs about as much as a dozen
    # broken runs (a few tests each), so it starts a group and the rest fill the others first.
    workers = max(2, os.cpu_count() or 2)
    groups: list[list[str]] = [[FAITHFUL], *([] for _ in range(workers - 1))]
    for backend in EXPECTED_FAILURES:
        lightest = min(range(workers), key=lambda g: len(groups[g]) + 12 * (FAITHFUL in groups[g]))
        groups[lightest].append(backend)
    directory = tmp_path_factory.mktemp("teeth")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(_run_group, group, env, directory / f"plan-{number}.json")
            for number, group in enumerate(groups)
            if group
        ]
        results = [future.result() for future in futures]
    return {
        backend: result
        for group, group_results in zip([g for g in groups if g], results, strict=True)
        for backend, result in zip(group, group_results, strict=True)
    }


def _failed_tests(output: str) -> set[str]:
    return set(re.findall(r"^FAILED \S+::(test_\w+)", output, re.MULTILINE))


def test_faithful_wrapper_passes_the_whole_suite(
    suite_runs: dict[str, Result],
) -> None:
    run = suite_runs[FAITHFUL]
    assert run.returncode == 0, run.stdout[-3000:]
    assert re.search(r"\d+ passed", run.stdout)


@pytest.mark.parametrize("backend", sorted(EXPECTED_FAILURES))
def test_suite_fails_on_broken_backend(backend: str, suite_runs: dict[str, Result]) -> None:
    run = suite_runs[backend]
    failed = _failed_tests(run.stdout)
    assert run.returncode == 1, run.stdout[-3000:]
    missing = EXPECTED_FAILURES[backend] - failed
    assert not missing, f"{backend}: these tests should have failed but did not: {missing}"

"""The contract suite fails on every deliberately broken backend, on the guarantee it breaks.

Each broken backend of the ``broken_*.py`` modules is run through the suite exactly as a backend
author would run it (``pytest --pyargs sessionstore_contract --sessionstore-factory ...``), in
parallel subprocesses, on the tests its module expects to fail (``-k``); ``faithful`` (the same
wrapping, nothing broken) runs the whole suite and must pass, so each failure is the defect's
doing. The runs use a fixed Hypothesis seed: the randomized tests (the state machine) then explore
the same examples everywhere, and the deterministic tests catch each defect anyway.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def _command(backend: str, tests: set[str] | None) -> list[str]:
    selection = ["-k", " or ".join(sorted(tests))] if tests else []
    return [
        sys.executable,
        "-m",
        "pytest",
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


def _run(backend: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    tests = None if backend == FAITHFUL else EXPECTED_FAILURES[backend]
    return subprocess.run(
        _command(backend, tests),
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="module")
def suite_runs() -> dict[str, subprocess.CompletedProcess[str]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    backends = [FAITHFUL, *EXPECTED_FAILURES]
    # A few at a time: each run is a whole pytest process, and the machine may have two cores.
    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2) * 2)) as pool:
        runs = pool.map(lambda backend: _run(backend, env), backends)
        return dict(zip(backends, runs, strict=True))


def _failed_tests(output: str) -> set[str]:
    return set(re.findall(r"^FAILED \S+::(test_\w+)", output, re.MULTILINE))


def test_faithful_wrapper_passes_the_whole_suite(
    suite_runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    run = suite_runs[FAITHFUL]
    assert run.returncode == 0, run.stdout[-3000:]
    assert re.search(r"\d+ passed", run.stdout)


@pytest.mark.parametrize("backend", sorted(EXPECTED_FAILURES))
def test_suite_fails_on_broken_backend(
    backend: str, suite_runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    run = suite_runs[backend]
    failed = _failed_tests(run.stdout)
    assert run.returncode == 1, run.stdout[-3000:]
    missing = EXPECTED_FAILURES[backend] - failed
    assert not missing, f"{backend}: these tests should have failed but did not: {missing}"

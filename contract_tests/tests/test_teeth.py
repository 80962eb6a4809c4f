"""The contract suite fails on every deliberately broken backend, on the guarantee it breaks.

Each broken backend in ``broken_backends.py`` is run through the suite exactly as a backend author
would run it (``pytest --pyargs sessionstore_contract --sessionstore-factory ...``), in parallel
subprocesses. ``faithful`` (the same wrapping, nothing broken) must pass, so each failure is the
defect's doing. The runs use a fixed Hypothesis seed: the randomized tests (the state machine)
then explore the same examples everywhere, and the deterministic tests catch each defect anyway.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from broken_backends import EXPECTED_FAILURES

HERE = Path(__file__).parent
BACKENDS = ["faithful", *EXPECTED_FAILURES]


def _command(backend: str) -> list[str]:
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
        f"broken_backends:{backend}",
        "--hypothesis-profile",
        "sessionstore-quick",
        # Reproducible: the same examples on every machine, so a pass here is a pass in CI.
        "--hypothesis-seed",
        "20261124",
    ]


@pytest.fixture(scope="module")
def suite_runs() -> dict[str, subprocess.CompletedProcess[str]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    running = {
        backend: subprocess.Popen(
            _command(backend),
            cwd=HERE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for backend in BACKENDS
    }
    results = {}
    for backend, process in running.items():
        out, _ = process.communicate(timeout=600)
        results[backend] = subprocess.CompletedProcess(process.args, process.returncode, out, "")
    return results


def _failed_tests(output: str) -> set[str]:
    return set(re.findall(r"^FAILED \S+::(test_\w+)", output, re.MULTILINE))


def test_faithful_wrapper_passes_the_whole_suite(
    suite_runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    run = suite_runs["faithful"]
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

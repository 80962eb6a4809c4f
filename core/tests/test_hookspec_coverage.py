"""Every hook of ``sessionstore.hookspecs`` is documented and exercised by the contract suite.

For each hook: it has a docstring; the generated hookspec reference (``docs/reference/
hookspecs.md``, ``::: sessionstore.hookspecs``, built here with mkdocs) renders it; the backend
guide (``docs/writing-a-backend.md``) lists it; and the contract suite calls it when it runs on
the memory backend. The last is measured, not assumed: the suite runs in a subprocess exactly as
a backend author runs it, on ``hook_tracing:create_backend`` (the memory backend with every hook
method recording its name), and each hook the suite never called fails its own test, named after
the hook.
"""

from __future__ import annotations

import html
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from docs_snippets import REPO
from hook_tracing import HOOKS

from sessionstore import hookspecs
from sessionstore_memory import MemoryBackend

HERE = Path(__file__).parent

# Optional hooks the memory backend leaves out (checked below): the contract suite's tests of
# them run on a traced SQLite backend instead, selected by these -k expressions.
NOT_CALLED_ON_MEMORY = {"raw_get": "raw_get"}


def test_the_hooks_are_found() -> None:
    assert len(HOOKS) >= 19, HOOKS
    assert {"session_create", "session_update", "event_replay", "store_close"} <= set(HOOKS)
    assert set(HOOKS) >= hookspecs.OPTIONAL_HOOKS
    assert set(HOOKS) >= hookspecs.SYNC_HOOKS


def test_the_exceptions_are_optional_hooks_the_memory_backend_leaves_out() -> None:
    for hook in NOT_CALLED_ON_MEMORY:
        assert hook in HOOKS
        assert hook in hookspecs.OPTIONAL_HOOKS, f"{hook} is required: the suite must call it"
        assert not hasattr(MemoryBackend, hook), f"memory implements {hook}: the suite must call it"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc, f"hook {hook} has no docstring"
    assert len(doc.split()) >= 5, f"hook {hook} has no docstring worth the name: {doc!r}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_in_the_backend_guide(hook: str) -> None:
    guide = (REPO / "docs" / "writing-a-backend.md").read_text(encoding="utf-8")
    assert f"`{hook}(" in guide, f"docs/writing-a-backend.md does not list hook {hook}"


@pytest.fixture(scope="module")
def hookspec_reference_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The built hookspec reference page (not strict here: `make docs` checks strictness)."""
    site = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [
            *(sys.executable, "-m", "mkdocs", "build", "--no-strict", "--quiet"),
            *("--config-file", str(REPO / "mkdocs.yml"), "--site-dir", str(site)),
        ],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    # Pages are files (mkdocs.yml: use_directory_urls: false, so the site opens from a folder).
    return (site / "reference" / "hookspecs.html").read_text(encoding="utf-8")


def _text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_in_the_generated_reference(hook: str, hookspec_reference_html: str) -> None:
    assert f'id="sessionstore.hookspecs.{hook}"' in hookspec_reference_html, (
        f"the generated hookspec reference has no entry for {hook}"
    )
    # The docstring's first sentence is on the page, as text (markup and links aside).
    first = _plain(inspect.getdoc(getattr(hookspecs, hook)) or "").split(". ")[0]
    assert len(first.split()) >= 3, first
    assert first in _text(hookspec_reference_html), f"{hook}'s docstring is not rendered: {first}"


def _plain(docstring: str) -> str:
    """A docstring as the page shows it in text: roles as their names, no backticks."""
    roles = re.sub(
        r":[a-z]+:`(~?)([^`]+)`",
        lambda m: m[2].rsplit(".", 1)[-1] if m[1] else m[2],
        docstring,
    )
    return " ".join(roles.replace("`", "").split())


def _run_traced_suite(
    folder: Path, factory: str, *pytest_args: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the contract suite in a subprocess on the traced backend ``factory`` makes (see
    hook_tracing.py), as a backend author runs it; return the run (checked to have passed) and
    the hooks it called."""
    trace = folder / "hooks.txt"
    trace.touch()
    env = {
        **os.environ,
        "SESSIONSTORE_HOOK_TRACE": str(trace),
        "SESSIONSTORE_HOOK_TRACE_DB": str(folder / "contract.db"),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs"),
            *("--pyargs", "sessionstore_contract"),
            *("--sessionstore-factory", factory),
            *pytest_args,
        ],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    assert re.search(r"\d+ passed", run.stdout), run.stdout[-2000:]
    return run, set(trace.read_text(encoding="utf-8").split())


@pytest.fixture(scope="module")
def hooks_called(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The hooks the whole contract suite called on the (traced) memory backend."""
    run, called = _run_traced_suite(tmp_path_factory.mktemp("trace"), "hook_tracing:create_backend")
    # Every contract test ran, but those of the optional hooks the memory backend leaves out and
    # those of the capabilities it declares missing (other processes, reopening).
    skips = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all(
        ("optional" in line and any(hook in line for hook in NOT_CALLED_ON_MEMORY))
        or "lacks shared_processes" in line
        or "lacks durable" in line
        for line in skips
    ), run.stdout[-2000:]
    return called


@pytest.fixture(scope="module")
def optional_hooks_called(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The hooks the contract suite's tests of the optional hooks called on a traced SQLite
    backend (the memory backend leaves those hooks out)."""
    run, called = _run_traced_suite(
        tmp_path_factory.mktemp("trace-sqlite"),
        "hook_tracing:create_sqlite_backend",
        *("-k", " or ".join(NOT_CALLED_ON_MEMORY.values())),
    )
    assert "skipped" not in run.stdout, run.stdout[-2000:]
    return called


@pytest.mark.parametrize("hook", HOOKS)
def test_the_contract_suite_calls_every_hook(
    hook: str, hooks_called: set[str], request: pytest.FixtureRequest
) -> None:
    if hook in NOT_CALLED_ON_MEMORY:
        called = request.getfixturevalue("optional_hooks_called")
        where = "a backend that offers it (SQLite)"
    else:
        called, where = hooks_called, "the memory backend"
    assert hook in called, (
        f"the contract suite never calls hook {hook} on {where}: add a contract test that "
        "exercises it"
    )

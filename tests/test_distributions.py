"""Our distributions as users get them: built into wheels, installed into fresh virtual envs.

Nothing here imports from the source tree. Each test builds wheels (sdist first, then the wheel
from the sdist, exactly as ``make dist`` does), creates a virtual environment under the test's
temporary directory, installs wheels with pip the way a user would, and runs that environment's
Python in a directory outside the repository with ``PYTHONPATH`` cleared.

* The third-party example (``examples/third_party_backend``, ``sessionstore-files``) is chosen by
  name and passes the contract suite; its compare-and-set holds across processes. ``make test``
  runs the suite with the contract's ``sessionstore-fast`` Hypothesis profile (every
  deterministic test, 10 examples per randomized one); ``make long`` runs it as the example's own
  CI would, with Hypothesis's default profile (``SESSIONSTORE_FULL_CONTRACT=1``).
* Copies of it with a hook removed, or with compare-and-set broken, are told exactly what is
  wrong: the missing hook by name, the failing contract tests by name.
* ``pip install --find-links <wheels> sessionstore-sqlite`` brings the core and its dependencies
  along from the package index, and ``sessionstore-redis`` brings the Redis driver.

None of our distribution names exists on PyPI today, but one could be registered. Every install
pins our distributions to the version built here (a constraint), so a newer release on the index
is never taken; but pins alone do not stop pip from taking a same-named distribution of the same
version from an index instead of ``--find-links`` (tried: it does). So each install then checks in
pip's installation report (``--report``) that every ``sessionstore*`` distribution came from our
wheel, by path and SHA-256, and fails naming the URL it came from otherwise.

Dependencies come from the package index through pip's cache. If the index cannot be reached the
tests are skipped with that reason, and fail under ``CI=true``.
"""

from __future__ import annotations

import email
import email.message
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trove_classifiers

from sessionstore_contract import skip_or_fail

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "third_party_backend"
OURS = {
    "sessionstore": REPO / "core",
    "sessionstore-memory": REPO / "plugins" / "memory",
    "sessionstore-sqlite": REPO / "plugins" / "sqlite",
    "sessionstore-redis": REPO / "plugins" / "redis",
    "sessionstore-postgres": REPO / "plugins" / "postgres",
    "sessionstore-contract": REPO / "contract_tests",
}
VERSION = tomllib.loads((REPO / "core" / "pyproject.toml").read_text())["project"]["version"]
SEED = "20261124"  # the broken copies' runs explore the same examples on every machine
# The example's contract run with Hypothesis's default profile (100 examples per randomized test,
# ~2.5 times as long); without it, the sessionstore-fast profile. `make long` sets it.
FULL_CONTRACT = os.environ.get("SESSIONSTORE_FULL_CONTRACT", "").strip() == "1"

# pip's output when it could not reach an index (as opposed to a real resolution failure): a
# network error, or (with retries off, pip says nothing else) no version at all of a dependency
# such as click or pydantic.
_UNREACHABLE = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Name or service not known|"
    r"Network is unreachable|Connection refused|ConnectTimeout|ReadTimeout|ProxyError|"
    r"Could not fetch URL|Retrying \(Retry\(|"
    r"requirement (?!sessionstore)\S+ .*\(from versions: none\)"
)


def _env() -> dict[str, str]:
    """The environment of every subprocess: nothing pointing into the source tree or the dev
    venv, nothing changing how pytest runs."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTEST_ADDOPTS"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(
    command: Sequence[str | Path], *, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def _build(projects: Sequence[Path], outdir: Path) -> None:
    """Build an sdist and, from it, a wheel of each project into ``outdir``, in parallel."""
    if importlib.util.find_spec("build") is None:
        pytest.fail("the `build` package is missing from the dev venv: run make (see dev.txt)")
    running = [
        (
            project,
            subprocess.Popen(
                [sys.executable, "-m", "build", "--no-isolation", "--outdir", outdir, project],
                cwd=outdir,
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
        for project in projects
    ]
    for project, process in running:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, f"building {project} failed:\n{output}"


def _wheel(wheelhouse: Path, distribution: str) -> Path:
    (wheel,) = wheelhouse.glob(f"{distribution.replace('-', '_')}-{VERSION}-py3-none-any.whl")
    return wheel


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Venv:
    """A fresh virtual environment and the directory (outside the repository) it runs in."""

    path: Path
    workdir: Path
    with_pip: bool

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @classmethod
    def create(cls, path: Path, *, with_pip: bool = True) -> Venv:
        """``python -m venv PATH``. Without pip (5 seconds saved), the dev venv's pip installs
        into it through ``pip --python``: the same pip, run by the new venv's interpreter."""
        workdir = path.parent / f"{path.name}-work"
        workdir.mkdir()
        assert not workdir.resolve().is_relative_to(REPO), "run the tests with a tmp outside"
        options = [] if with_pip else ["--without-pip"]
        done = _run([sys.executable, "-m", "venv", *options, path], cwd=workdir)
        assert done.returncode == 0, done.stdout
        return cls(path, workdir, with_pip)

    def install(self, wheelhouse: Path, *requirements: str) -> list[dict[str, Any]]:
        """``pip install --find-links wheelhouse REQUIREMENTS``, our distributions pinned to the
        version built here; return pip's report of what it installed, checked to have taken each
        of our distributions from our own wheel."""
        # A constraint names a distribution only: "sessionstore[sqlite]" pins "sessionstore".
        pins = sorted({*OURS, *(re.split(r"[\[=<>~!; ]", r, maxsplit=1)[0] for r in requirements)})
        constraints = self.workdir / "constraints.txt"
        constraints.write_text("".join(f"{name}=={VERSION}\n" for name in pins))
        report = self.workdir / "pip-report.json"
        pip: list[str | Path] = [self.python, "-m", "pip"]
        if not self.with_pip:
            pip = [sys.executable, "-m", "pip", "--python", self.python]
        done = _run(
            [
                *pip,
                *("install", "--report", report),
                *("--find-links", wheelhouse, "--constraint", constraints),
                *requirements,
            ],
            cwd=self.workdir,
        )
        if done.returncode != 0:
            if _UNREACHABLE.search(done.stdout):
                skip_or_fail(f"the package index cannot be reached:\n{done.stdout[-2000:]}")
            pytest.fail(f"pip install {' '.join(requirements)} failed:\n{done.stdout}")
        installed: list[dict[str, Any]] = json.loads(report.read_text())["install"]
        for item in installed:
            name = item["metadata"]["name"].lower().replace("_", "-")
            url = item["download_info"]["url"]
            if name.startswith("sessionstore"):
                wheel = _wheel(wheelhouse, name)
                assert url == wheel.as_uri(), f"{name} was not installed from our wheel: {url}"
                sha256 = item["download_info"]["archive_info"]["hashes"]["sha256"]
                assert sha256 == _sha256(wheel), f"{name}: a wheel other than ours was installed"
            else:
                assert not url.startswith(wheelhouse.as_uri()), f"{name} came from {url}"
        return installed

    def python_json(self, script: str, *args: str) -> Any:
        """Run ``script`` with this venv's Python (``args`` in ``sys.argv[1:]``); it prints one
        JSON document as its last line."""
        done = _run([self.python, "-c", script, *args], cwd=self.workdir)
        assert done.returncode == 0, done.stdout
        return json.loads(done.stdout.splitlines()[-1])

    def start_contract(self, spec: str, *extra: str) -> subprocess.Popen[str]:
        """Start the contract suite on ``spec``, as a backend's CI runs it."""
        return subprocess.Popen(
            [
                *(str(self.python), "-m", "pytest", "-p", "no:cacheprovider", "-rfEs", "-q"),
                *extra,
                *("--pyargs", "sessionstore_contract", "--sessionstore-backend", spec),
            ],
            cwd=self.workdir,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _names(installed: list[dict[str, Any]]) -> set[str]:
    return {i["metadata"]["name"].lower().replace("_", "-") for i in installed}


def _failed_tests(output: str) -> set[str]:
    """The contract tests the short summary of a run lists as failed."""
    return set(re.findall(r"^FAILED \S+::(test_\w+)", output, re.MULTILINE))


def _failure_report(output: str, test: str) -> str:
    """The traceback pytest printed for ``test`` (its ``____ Class.test ____`` section)."""
    match = re.search(
        rf"^_+ \w+\.{test} _+$(.*?)(?=^_+ \w+\.test_\w+ _+$|^=+ )", output, re.M | re.S
    )
    assert match is not None, f"no failure report of {test}:\n{output[-3000:]}"
    return match[1]


# Checks where each module comes from; printed as JSON for the test to assert on.
_WHERE = """
import importlib, json, sys, sysconfig
modules = {name: importlib.import_module(name).__file__ for name in sys.argv[1:]}
print(json.dumps({"modules": modules, "site": sysconfig.get_paths()["purelib"],
                  "path": sys.path, "prefix": sys.prefix}))
"""


def _assert_outside_repo(venv: Venv, facts: dict[str, Any]) -> None:
    site = facts["site"]
    assert Path(facts["prefix"]) == venv.path
    for module, file in facts["modules"].items():
        assert Path(file).is_relative_to(site), f"{module} imported from {file}, not {site}"
    leaks = [p for p in facts["path"] if p and Path(p).resolve().is_relative_to(REPO)]
    assert not leaks, f"the source tree is on sys.path: {leaks}"


# -- copies of the example with one defect --------------------------------------------------------


def _replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name} no longer contains exactly one {old!r}"
    path.write_text(text.replace(old, new))


def _broken_copy(destination: Path, suffix: str, backend_old: str, backend_new: str) -> Path:
    """A copy of the example as distribution ``sessionstore-files-SUFFIX`` (import
    ``sessionstore_files_SUFFIX``, backend ``files-SUFFIX``) with one edit to backend.py."""
    project = destination / f"sessionstore-files-{suffix}"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    package = project / "src" / f"sessionstore_files_{suffix}"
    (project / "src" / "sessionstore_files").rename(package)
    pyproject = project / "pyproject.toml"
    _replace_once(pyproject, 'name = "sessionstore-files"', f'name = "sessionstore-files-{suffix}"')
    _replace_once(
        pyproject,
        'files = "sessionstore_files:create_backend"',
        f'files-{suffix} = "sessionstore_files_{suffix}:create_backend"',
    )
    _replace_once(pyproject, '"src/sessionstore_files"', f'"src/sessionstore_files_{suffix}"')
    _replace_once(package / "backend.py", 'SCHEME = "files"', f'SCHEME = "files-{suffix}"')
    _replace_once(package / "backend.py", backend_old, backend_new)
    return project


# files-nohook: the session_update hook is gone.
MISSING_HOOK = """\
    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        await self._run(self._update_many, [record], now_ms)
"""
# files-nocas: updates (single and batch) no longer check the stored version.
VERSION_CHECK = """\
        return stored.version != write.version - 1 or (
            write.incarnation != 0 and stored.incarnation != write.incarnation
        )
"""

# -- building and installing everything once, in parallel ----------------------------------------


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels and sdists of our five distributions, of the example and of its broken copies."""
    outdir = tmp_path_factory.mktemp("wheelhouse")
    sources = tmp_path_factory.mktemp("broken-sources")
    copies = [
        _broken_copy(sources, "nohook", MISSING_HOOK, ""),
        _broken_copy(sources, "nocas", VERSION_CHECK, "        return False  # no check\n"),
    ]
    _build([*OURS.values(), EXAMPLE, *copies], outdir)
    return outdir


@pytest.fixture(scope="module")
def venvs(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Venv]:
    """Two fresh venvs, made at the same time: ``files`` has the example, the core and the
    contract suite; ``broken`` has the two broken copies, the core and the contract suite."""
    plans = {
        "files": ["sessionstore-files", "sessionstore-contract"],
        "broken": [
            "sessionstore-files-nohook",
            "sessionstore-files-nocas",
            "sessionstore-contract",
        ],
    }
    homes = {name: tmp_path_factory.mktemp(name) for name in plans}

    def make(name: str) -> Venv:
        venv = Venv.create(homes[name] / "venv", with_pip=False)
        installed = _names(venv.install(wheelhouse, *plans[name]))
        assert {"sessionstore", *plans[name]} <= installed
        return venv

    with ThreadPoolExecutor(len(plans)) as pool:
        futures = {name: pool.submit(make, name) for name in plans}
    return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def contract_runs(venvs: dict[str, Venv]) -> dict[str, subprocess.CompletedProcess[str]]:
    """The contract suite on the example and on each broken copy, run at the same time.

    The example runs with no seed, as its CI would, and with the ``sessionstore-fast`` profile
    unless :data:`FULL_CONTRACT` (then Hypothesis's default profile, exactly as its CI would).
    The broken copies run with a fixed seed and the fast profile: the failures the tests expect
    come from deterministic tests, and no profile of the suite shrinks failing examples.
    """
    files, broken = venvs["files"], venvs["broken"]
    fast = ("--hypothesis-profile", "sessionstore-fast")
    running = {
        "files": files.start_contract(
            f"files://{files.workdir / 'contract-store'}", *(() if FULL_CONTRACT else fast)
        ),
        "nohook": broken.start_contract(f"files-nohook://{broken.workdir / 'nohook'}", "-x"),
        # fsync=false: this run proves which tests name the broken check, not durability; the
        # flush of every file is most of its slowest test (10,000 sessions at the batch limit).
        "nocas": broken.start_contract(
            f"files-nocas://{broken.workdir / 'nocas'}",
            *(*fast, "--hypothesis-seed", SEED, "--sessionstore-option", "fsync=false"),
        ),
    }
    runs = {}
    for name, process in running.items():
        output, _ = process.communicate(timeout=600)
        runs[name] = subprocess.CompletedProcess(process.args, process.returncode, output, "")
    return runs


# -- the third-party example ----------------------------------------------------------------------

SELECT_FILES = """
import asyncio, json, sys
from sessionstore import Session, installed_backends, open_store

async def main(directory):
    async with open_store(f"files://{directory}", ttl=60) as store:
        created = await store.create_session(Session(id="../../etc/passwd*%", transport="http"))
        found = await store.get_session(created.id)
        count = await store.count_sessions()
    info = installed_backends()["files"]
    print(json.dumps({"version": found.version, "count": count,
                      "backend": [info.value, info.distribution, info.version]}))

asyncio.run(main(sys.argv[1]))
"""


def test_the_example_backend_is_chosen_by_name_from_its_wheel(venvs: dict[str, Venv]) -> None:
    venv = venvs["files"]
    store = venv.workdir / "by-name"
    facts = venv.python_json(SELECT_FILES, str(store))
    assert facts["backend"] == ["sessionstore_files:create_backend", "sessionstore-files", VERSION]
    assert (facts["version"], facts["count"]) == (1, 1)
    # The id became a file name in the store's directory, spelled in hex: nothing escaped it.
    files = sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())
    namespace = b"default".hex()
    assert files == [f"{namespace}.lock", f"{namespace}/{b'../../etc/passwd*%'.hex()}.session"]
    where = venv.python_json(_WHERE, "sessionstore", "sessionstore_files")
    _assert_outside_repo(venv, where)


def test_the_example_backend_passes_the_contract_suite(
    venvs: dict[str, Venv], contract_runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    run = contract_runs["files"]
    assert run.returncode == 0, run.stdout[-5000:]
    summary = run.stdout.strip().splitlines()[-1]
    passed = re.fullmatch(
        r"=* ?(\d+) passed(?:, (\d+) skipped)? in [\d.]+s(?: \([\d:]+\))? ?=*", summary
    )
    assert passed is not None, f"not a clean pass (a failure, an xfail?): {summary}"
    assert int(passed[1]) >= 30, summary
    # The example cannot push changes to other processes: only the notification tests are
    # skipped, each saying so (the core declares the capability missing without event_watch).
    skips = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    counted = sum(int(re.match(r"SKIPPED \[(\d+)\]", line)[1]) for line in skips)  # type: ignore[index]
    assert counted == int(passed[2] or 0), run.stdout[-3000:]
    assert all("lacks event_notifications" in line for line in skips), skips
    store = venvs["files"].workdir / "contract-store"
    assert not [p for p in store.rglob("*") if p.is_file()], "the suite leaves nothing behind"


CROSS_PROCESS = """
import asyncio, json, multiprocessing, sys
from sessionstore import Session, open_store

SPEC = sys.argv[1]

def increment(session):
    session.metadata = {"count": session.metadata["count"] + 1}

async def work(times):
    async with open_store(SPEC, modify_attempts=100_000) as store:
        for _ in range(times):
            await store.modify_session("shared", increment)

def child(times):
    asyncio.run(work(times))

async def main():
    async with open_store(SPEC) as store:
        await store.create_session(Session(id="shared", transport="http", metadata={"count": 0}))
    processes = [multiprocessing.Process(target=child, args=(25,)) for _ in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    async with open_store(SPEC) as store:
        final = await store.get_session("shared")
    print(json.dumps({"exit": [p.exitcode for p in processes], "metadata": final.metadata,
                      "version": final.version}))

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_the_example_backend_compare_and_set_holds_across_processes(
    venvs: dict[str, Venv],
) -> None:
    """Four processes, 25 read-modify-writes each, on one session: no increment is lost."""
    venv = venvs["files"]
    script = venv.workdir / "cross_process.py"
    script.write_text(CROSS_PROCESS)
    done = _run([venv.python, script, f"files://{venv.workdir / 'processes'}"], cwd=venv.workdir)
    assert done.returncode == 0, done.stdout
    facts = json.loads(done.stdout.splitlines()[-1])
    assert facts == {"exit": [0, 0, 0, 0], "metadata": {"count": 100}, "version": 101}


DIES_IN_A_BATCH = """
import asyncio, json, multiprocessing, os, sys
from sessionstore import Session, open_store
from sessionstore_files import FilesBackend

SPEC = sys.argv[1]

def die_once_the_journal_is_written():
    recover = FilesBackend._recover
    def dying(self):
        if (self._dir / "batch.journal").exists():
            os._exit(3)  # the writer dies between the journal and the moves
        recover(self)
    FilesBackend._recover = dying

async def batch():
    async with open_store(SPEC) as store:
        sessions = await store.get_sessions_batch(["a", "b"])
        for session in sessions:
            session.metadata = {"batch": True}
        await store.update_sessions_batch(sessions)

def child():
    die_once_the_journal_is_written()
    asyncio.run(batch())

async def versions(store):
    return [s.version for s in await store.get_sessions_batch(["a", "b"])]

async def main():
    async with open_store(SPEC) as store:
        for session_id in ["a", "b"]:
            await store.create_session(Session(id=session_id, transport="http"))
        process = multiprocessing.Process(target=child)
        process.start()
        process.join()
        before = await versions(store)
        await store.purge_expired()  # a write finds nothing left to finish
        after = await versions(store)
        metadata = [s.metadata for s in await store.list_sessions()]
    print(json.dumps({"exit": process.exitcode, "before": before, "after": after,
                      "metadata": metadata}))

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_the_example_backend_finishes_a_batch_whose_writer_died(venvs: dict[str, Venv]) -> None:
    """The journal at work: a writer dies after journaling a batch, before moving its files in;
    the next reader (or writer) moves them, so the batch lands whole."""
    venv = venvs["files"]
    script = venv.workdir / "dies_in_a_batch.py"
    script.write_text(DIES_IN_A_BATCH)
    done = _run([venv.python, script, f"files://{venv.workdir / 'journal'}"], cwd=venv.workdir)
    assert done.returncode == 0, done.stdout
    facts = json.loads(done.stdout.splitlines()[-1])
    assert facts == {
        "exit": 3,
        # The writer died before moving anything in; the next reader finished the batch before
        # reading (readers never see half a batch), so it is whole already.
        "before": [2, 2],
        "after": [2, 2],
        "metadata": [{"batch": True}, {"batch": True}],
    }


# -- what a broken third-party backend is told ----------------------------------------------------

OPEN_NOHOOK = """
import json
from sessionstore import BackendLoadError, open_store

try:
    open_store("files-nohook:///unused")
except BackendLoadError as exc:
    print(json.dumps([type(exc).__name__, exc.name, exc.reason, str(exc)]))
"""


def test_a_backend_missing_a_hook_is_told_which(
    venvs: dict[str, Venv], contract_runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    message = "backend 'files-nohook' cannot be used: missing hook session_update"
    kind, name, reason, text = venvs["broken"].python_json(OPEN_NOHOOK)
    assert (kind, name, reason, text) == (
        "BackendLoadError",
        "files-nohook",
        "missing hook session_update",
        message,
    )
    # Its CI, running the contract suite, is told the same.
    run = contract_runs["nohook"]
    assert run.returncode == 1, run.stdout[-3000:]
    assert f"sessionstore.errors.BackendLoadError: {message}" in run.stdout, run.stdout[-3000:]


# The contract tests that rely on compare-and-set: the copy without the version check must fail
# the ones that catch it for sure, fail none outside this set, and pass everything else.
CAS_TESTS = {
    "test_stale_update_raises_conflict",
    "test_a_writer_of_a_deleted_session_cannot_overwrite_its_successor",
    "test_concurrent_modify_session_loses_no_increment",
    "test_concurrent_modify_across_handles",
    "test_batch_update_is_all_or_nothing",
    "test_dump_and_load_copy_a_session_whole",  # a stale write to the copy must conflict
    "test_state_machine",
    # The tests that compare-and-set also decides, one way or another:
    "test_refused_writes_change_nothing",
    "test_an_update_keeps_the_stored_incarnation",
    "test_not_found_comes_before_conflict_and_names_every_id",
    "test_versions_at_their_limit",
    "test_batch_update_at_the_size_limit",
    "test_id_created_again_after_delete_or_clear_starts_clean",
    "test_id_created_again_after_purge_starts_clean",
    "test_processes_lose_no_update",
    "test_race_update_update",
    "test_race_batch_batch",
    "test_race_batch_update",
    "test_race_last_event_id_update",
    "test_race_delete_update",
    "test_race_dump_load",
    "test_ids_that_differ_only_in_case_are_distinct",  # it updates each of them
    "test_separator_characters_never_join_keys",
    "test_a_read_through_one_handle_sees_every_write_of_another",
    "test_unknown_fields_survive_a_read_modify_write",
    "test_a_batch_update_moves_every_deadline",
    "test_batch_update_writes_all",
    "test_acknowledged_writes_survive_reopening",
}


def test_a_backend_breaking_compare_and_set_fails_the_contract_by_name(
    contract_runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    run = contract_runs["nocas"]
    assert run.returncode == 1, run.stdout[-3000:]
    failed = _failed_tests(run.stdout)
    certain = {
        "test_stale_update_raises_conflict",
        "test_concurrent_modify_session_loses_no_increment",
        "test_batch_update_is_all_or_nothing",
    }
    assert certain <= failed <= CAS_TESTS, f"{sorted(failed)}\n{run.stdout[-5000:]}"
    report = _failure_report(run.stdout, "test_stale_update_raises_conflict")
    # pytest spells it "DID NOT RAISE ConflictError" or, before 9, with the class's repr.
    assert re.search(r"Failed: DID NOT RAISE \S*ConflictError", report), report
    assert "await store.update_session(reader_b)" in report, report
    # Counted per test case: a parametrized test (the races' three modes) fails more than once.
    passed = re.search(r"\d+ failed, (\d+) passed(, \d+ skipped)? in", run.stdout)
    assert passed is not None, run.stdout[-500:]
    assert int(passed[1]) >= 20, "a defect in compare-and-set breaks only its tests"


# -- our own distributions, as a user installs them -----------------------------------------------


@pytest.fixture
def user_venv(tmp_path: Path) -> Venv:
    return Venv.create(tmp_path / "venv")


USE_SQLITE = """
import asyncio, json, sys
from sessionstore import Session, UnknownBackendError, installed_backends, open_store

async def main(path):
    async with open_store(f"sqlite:///{path}") as store:
        created = await store.create_session(Session(transport="http"))
        found = await store.get_session(created.id)
    try:
        open_store("redis://localhost:6379/0")
    except UnknownBackendError as exc:
        redis = str(exc)
    print(json.dumps({"found": found == created, "backends": sorted(installed_backends()),
                      "redis": redis}))

asyncio.run(main(sys.argv[1]))
"""

USE_REDIS = """
import asyncio, json
import redis
from sessionstore import StoreUnavailableError, open_store

async def main():
    store = open_store("redis://127.0.0.1:1/0", timeout=2)  # nothing listens on port 1
    try:
        await store.count_sessions()
    except StoreUnavailableError as exc:
        error = type(exc).__name__
    finally:
        await store.aclose()
    print(json.dumps({"backend": store.backend_name, "error": error, "redis": redis.__file__}))

asyncio.run(main())
"""

USE_POSTGRES = """
import asyncio, json
from sessionstore import StoreUnavailableError, open_store

async def main():
    store = open_store("postgresql://postgres@127.0.0.1:1/test", timeout=2)  # nothing on port 1
    try:
        await store.count_sessions()
    except StoreUnavailableError as exc:
        error = type(exc).__name__
    finally:
        await store.aclose()
    print(json.dumps({"backend": store.backend_name, "error": error}))

asyncio.run(main())
"""


OPEN_WITHOUT_BACKENDS = """
import json
from sessionstore import UnknownBackendError, installed_backends, open_store

try:
    open_store("sqlite:///never.db")
except UnknownBackendError as exc:
    print(json.dumps({"backends": sorted(installed_backends()), "error": str(exc)}))
"""


def test_our_backends_install_from_wheels_with_their_dependencies(
    wheelhouse: Path, user_venv: Venv
) -> None:
    """The core alone opens nothing and says which extra to install; the extra installs the
    backend; a backend's distribution installed by name brings its driver."""
    installed = _names(user_venv.install(wheelhouse, "sessionstore"))
    # The core, with its own dependencies from the index; no backend, no driver.
    assert {"sessionstore", "pydantic", "msgpack", "pluggy", "click"} <= installed
    assert not {"sessionstore-sqlite", "sessionstore-redis", "sessionstore-memory"} & installed
    facts = user_venv.python_json(OPEN_WITHOUT_BACKENDS)
    assert facts["backends"] == []
    assert facts["error"] == (
        "no sessionstore backend named 'sqlite' (installed: none); "
        "install it with: pip install 'sessionstore[sqlite]'"
    )

    installed = _names(user_venv.install(wheelhouse, "sessionstore[sqlite]"))
    assert "sessionstore-sqlite" in installed
    assert not {"sessionstore-redis", "sessionstore-memory", "redis", "aiosqlite"} & installed
    db = user_venv.workdir / "sessions.db"
    facts = user_venv.python_json(USE_SQLITE, str(db))
    assert facts["found"] is True
    assert facts["backends"] == ["sqlite"]
    assert facts["redis"].endswith("install it with: pip install 'sessionstore[redis]'")
    assert db.exists()

    installed = _names(user_venv.install(wheelhouse, "sessionstore-redis"))
    assert {"sessionstore-redis", "redis", "hiredis"} <= installed
    assert "sessionstore" not in installed, "the core installed before was reused"
    facts = user_venv.python_json(USE_REDIS)
    assert facts["backend"] == "redis"
    assert facts["error"] == "StoreUnavailableError"  # the driver ran: no server, not no backend
    installed = _names(user_venv.install(wheelhouse, "sessionstore-postgres"))
    assert {"sessionstore-postgres", "asyncpg"} <= installed
    facts = user_venv.python_json(USE_POSTGRES)
    assert facts["backend"] == "postgresql"
    assert facts["error"] == "StoreUnavailableError"  # the driver ran: no server, not no backend
    modules = [
        "sessionstore",
        "sessionstore_sqlite",
        "sessionstore_redis",
        "sessionstore_postgres",
        "redis",
        "asyncpg",
        "pydantic",
    ]
    where = user_venv.python_json(_WHERE, *modules)
    _assert_outside_repo(user_venv, where)


# -- what an index shows of each distribution, and the core's extras ------------------------------

REPOSITORY = "https://github.com/sessionstore/sessionstore"
PROJECT_URLS = {
    "Homepage": REPOSITORY,
    "Documentation": f"{REPOSITORY}/tree/main/docs",
    "Repository": REPOSITORY,
    "Issues": f"{REPOSITORY}/issues",
    "Changelog": f"{REPOSITORY}/blob/main/CHANGELOG.md",
}


def _metadata(wheel: Path) -> email.message.Message:
    """The wheel's ``METADATA``: what pip and an index read."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


@pytest.mark.parametrize("distribution", sorted(OURS))
def test_each_distribution_describes_itself(wheelhouse: Path, distribution: str) -> None:
    """Project URLs (the same repository as the docs site's ``repo_url``), classifiers known to
    the index, and a Markdown description that reads on an index page: no link relative to the
    repository (they break there), an install line."""
    meta = _metadata(_wheel(wheelhouse, distribution))
    urls = dict(value.split(", ", 1) for value in meta.get_all("Project-URL", []))
    assert urls == PROJECT_URLS
    site = (REPO / "mkdocs.yml").read_text()
    assert f"repo_url: {REPOSITORY}\n" in site, "mkdocs.yml's repo_url is the same repository"

    classifiers = meta.get_all("Classifier", [])
    unknown = set(classifiers) - trove_classifiers.classifiers
    assert not unknown, f"{distribution}: classifiers the index rejects: {unknown}"
    for wanted in ("Programming Language :: Python :: 3.11", "Typing :: Typed"):
        assert wanted in classifiers, f"{distribution} lacks {wanted!r}"
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert meta["Summary"], f"{distribution} has no summary"
    assert len(meta["Summary"]) <= 200, meta["Summary"]

    assert meta["Description-Content-Type"] == "text/markdown"
    description = meta.get_payload()
    assert isinstance(description, str)
    assert description.startswith(f"# {distribution}\n"), description[:200]
    relative = re.findall(r"\]\((?!https?://|#)([^)]*)\)", description)
    assert not relative, f"{distribution}: links that break on an index page: {relative}"
    assert "pip install" in description
    assert REPOSITORY in description


def test_the_core_offers_an_extra_per_backend(wheelhouse: Path) -> None:
    """``sessionstore[sqlite]`` and the others name our distributions at this release's series,
    and ``[all]`` is every one of them with the MCP integration."""
    meta = _metadata(_wheel(wheelhouse, "sessionstore"))
    extras = {"sqlite", "redis", "memory", "postgres", "mcp", "otel", "encryption", "compression"}
    assert set(meta.get_all("Provides-Extra", [])) == {*extras, "all"}
    requires: dict[str, set[str]] = {}
    for line in meta.get_all("Requires-Dist", []):
        requirement, _, marker = line.partition(";")
        extra = re.fullmatch(r"\s*extra\s*==\s*['\"](\w+)['\"]\s*", marker)
        if extra is not None:
            requires.setdefault(extra[1], set()).add(requirement.strip().replace(" ", ""))
    for backend in ("sqlite", "redis", "memory", "postgres"):
        assert requires[backend] == {f"sessionstore-{backend}<0.2,>=0.1"}, requires[backend]
    # hatchling writes the extras `all` names out (older tools kept "sessionstore[...]").
    everything = set().union(*(requires[e] for e in extras))
    assert requires["all"] in (everything, {f"sessionstore[{','.join(sorted(extras))}]"})


def _pins(requirements: Path) -> dict[str, str]:
    lines = requirements.read_text().splitlines()
    pairs = (line.split("==") for line in lines if line and not line.startswith("#"))
    return {name.lower(): version for name, version in pairs}


def test_the_demo_environment_is_a_runtime_only(tmp_path: Path) -> None:
    """``make demo`` builds .venv-demo from requirements/demo.txt (the core's runtime and the
    tools of an editable install), never the development toolchain of .venv; its pins are
    dev.txt's, so the demo runs what the tests test."""
    demo, dev = _pins(REPO / "requirements" / "demo.txt"), _pins(REPO / "requirements" / "dev.txt")
    assert {name: dev.get(name) for name in demo} == demo
    core = tomllib.loads((REPO / "core" / "pyproject.toml").read_text())["project"]
    runtime = {re.split(r"[<>=~! \[]", d, maxsplit=1)[0].lower() for d in core["dependencies"]}
    assert runtime <= set(demo), "requirements/demo.txt pins every runtime dependency of the core"
    assert not {"mypy", "ruff", "mkdocs", "pytest"} & set(demo)
    # What `make demo` would run in a clone where no venv exists yet.
    done = _run(
        ["make", "--dry-run", "--always-make", "demo", f"DEMO_VENV={tmp_path / 'demo'}"], cwd=REPO
    )
    assert done.returncode == 0, done.stdout
    assert "requirements/demo.txt" in done.stdout, done.stdout
    assert "requirements/dev.txt" not in done.stdout, done.stdout
    assert f"{tmp_path / 'demo'}/bin/python examples/demo.py" in done.stdout, done.stdout

"""The official MCP conformance suite through a fleet (issue 15, item 9).

Every server scenario of ``@modelcontextprotocol/conformance`` applicable at the 2025-11-25
wire (``conformance_harness.py``; the version pinned in ``conformance/package.json``) runs
against ``conformance_server.py`` (SDK 2.x) four ways, all at once:

- ``plain``: one instance of the SDK alone;
- ``fleet-sqlite``: two instances wrapped by ``sessionstore.mcp`` on one SQLite file, behind the
  round-robin balancer (``balancer.py``: each HTTP request to the next instance, so the client's
  requests of one session, its answers to the server's own requests included, alternate);
- ``fleet-redis``: the same on a throwaway redis-server;
- ``fleet-postgres``: the same on a fresh PostgreSQL database (``postgres_servers``).

The fleet must pass every scenario the plain instance passes. The results are printed side by
side. ``KNOWN_FLEET_FAILURES`` lists a scenario the fleet is known to fail, with why; such an
entry is strict: once the scenario passes the test fails until the entry goes.

The harness is pinned at 0.2.0-alpha.12, the newest release: its server scenarios at
2025-11-25 are the same 33 as 0.2.0-alpha.11's (the issue's measurement; alpha.12 adds only
extension scenarios, ``sep-2640-skills-*``, which that wire does not select), with the newer
harness's fixes. ``--suite all`` includes the two scenarios the harness marks pending
(``json-schema-2020-12``, ``server-sse-polling``): the SDK passes them, so the fleet must too.
A scenario counts as passed when none of its checks failed or warned.

Without npm (to install the harness and Node.js 22 from the npm registry) or a usable Node.js
the tests skip, saying why; under ``CI=true`` they fail. The first run installs them into
``build/conformance`` (about 20 s from npm's cache); later runs reuse it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import pytest
from balancer import Balancer
from conformance_harness import Harness, Outcome, Unavailable, announced, install, read_results
from conformance_harness import table as results_table
from mcp_harness import ServerInstance, free_port

from sessionstore_contract import skip_or_fail

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "conformance_server.py"
RUN_TIMEOUT = 600.0  # seconds for one whole harness run (each scenario has its own 30 s)
FLEETS = ["fleet-sqlite", "fleet-redis", "fleet-postgres"]
SERVER_FIXTURES = {"fleet-redis": "mcp_redis_url", "fleet-postgres": "mcp_postgres_url"}

# Scenario -> why the fleet fails it (today). Strict: a passing entry fails the test.
KNOWN_FLEET_FAILURES: dict[str, str] = {}
# Scenario -> why the plain SDK instance fails it. Strict as well.
KNOWN_PLAIN_FAILURES: dict[str, str] = {}
STARTUP_SECONDS: list[float] = []  # how long the instances took to listen (for the printout)


class ConformanceInstance(ServerInstance):
    """One ``conformance_server.py`` (``wait_ready()`` reads its ``READY``)."""

    def __init__(
        self,
        python: str,
        name: str,
        *,
        store: str,
        namespace: str,
        log_dir: Path,
        plain: bool,
    ) -> None:
        super().__init__(
            python, name, free_port(), store=store, namespace=namespace, log_dir=log_dir
        )
        self._command = [python, str(SERVER_SCRIPT), "--port", str(self.port), "--instance", name]
        self._command += ["--plain"] if plain else ["--store", store, "--namespace", namespace]


@dataclass
class Run:
    """One harness run against one URL: its outcomes per scenario, when it is done."""

    name: str
    url: str
    output_dir: Path
    instances: list[ConformanceInstance]
    balancer: Balancer | None = None
    process: subprocess.Popen[str] | None = None
    stdout: str = ""
    seconds: float = 0.0
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    unavailable: str | None = None  # why this run could not happen here (a skip)

    def report(self) -> str:
        parts = [f"=== {self.name} ({self.url}) in {self.seconds:.1f} s", self.stdout[-4000:]]
        if self.balancer is not None:
            parts.append(f"balancer {self.balancer!r}: {len(self.balancer.requests)} requests")
        parts += [f"--- {i.name}:\n{i.log_text()[-6000:]}" for i in self.instances]
        return "\n".join(parts)


@pytest.fixture(scope="module")
def harness() -> Harness:
    try:
        return install()
    except Unavailable as exc:
        skip_or_fail(f"MCP conformance harness unavailable: {exc}")


@pytest.fixture(scope="module")
def runs(
    harness: Harness, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Run]]:
    """The four runs, made together: every server started at once, then the four harness
    runs in parallel (each its own client sessions, its own instances)."""
    python = _python()
    base = tmp_path_factory.mktemp("conformance")
    stores: dict[str, str | None] = {"fleet-sqlite": f"sqlite:///{base / 'sessions.db'}"}
    unavailable: dict[str, str] = {}
    for name, fixture in SERVER_FIXTURES.items():
        try:
            stores[name] = request.getfixturevalue(fixture)
        except pytest.skip.Exception as exc:  # no such server here (CI fails instead, above)
            stores[name] = None
            unavailable[name] = str(exc)

    all_runs: dict[str, Run] = {}
    try:
        plain = ConformanceInstance(
            python, "plain", store="memory", namespace="-", log_dir=base, plain=True
        )
        all_runs["plain"] = Run("plain", plain.url, base / "plain", [plain])
        for name in FLEETS:
            store = stores[name]
            if store is None:
                all_runs[name] = Run(name, "-", base / name, [], unavailable=unavailable[name])
                continue
            namespace = f"conformance-{uuid.uuid4().hex[:12]}"
            pair = [
                ConformanceInstance(
                    python,
                    f"{name}-{letter}",
                    store=store,
                    namespace=namespace,
                    log_dir=base,
                    plain=False,
                )
                for letter in "ab"
            ]
            all_runs[name] = Run(name, "", base / name, pair)
        starting = time.monotonic()
        started = [i for run in all_runs.values() for i in run.instances]
        for instance in started:
            instance.start()
        for instance in started:
            instance.wait_ready()
        STARTUP_SECONDS.append(time.monotonic() - starting)
        for run in all_runs.values():
            if len(run.instances) == 2:
                run.balancer = Balancer([i.port for i in run.instances]).start()
                run.url = f"{run.balancer.url}/mcp"

        env = {**os.environ, "NO_COLOR": "1"}
        begun = time.monotonic()
        for run in all_runs.values():
            if run.unavailable is None:
                run.output_dir.mkdir()
                run.process = subprocess.Popen(
                    harness.command(run.url, run.output_dir),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=env,
                )
        for run in all_runs.values():
            if run.process is None:
                continue
            try:
                run.stdout, _ = run.process.communicate(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.stdout, _ = run.process.communicate()
                run.stdout += f"\n(killed after {RUN_TIMEOUT:.0f} s)"
            run.seconds = time.monotonic() - begun
            run.outcomes = read_results(run.output_dir, announced(run.stdout))
        yield all_runs
    finally:
        for run in all_runs.values():
            if run.process is not None and run.process.poll() is None:
                run.process.kill()
                run.process.wait()
            if run.balancer is not None:
                run.balancer.close()
            for instance in run.instances:
                instance.close()


def _python() -> str:
    """This python, whose SDK must be 2.x (the server app uses its MCPServer)."""
    if not version("mcp").startswith("2."):
        skip_or_fail(f"this python has mcp {version('mcp')}, not SDK 2.x")
    return sys.executable


def test_plain_sdk_passes_the_suite(
    runs: dict[str, Run], capsys: pytest.CaptureFixture[str]
) -> None:
    """The baseline: the plain SDK instance passes every scenario announced. Prints the table."""
    plain = runs["plain"]
    columns = {name: run.outcomes for name, run in runs.items() if run.unavailable is None}
    with capsys.disabled():
        timings = ", ".join(f"{n} {r.seconds:.1f} s" for n, r in runs.items() if r.process)
        startup = f"{STARTUP_SECONDS[-1]:.1f} s" if STARTUP_SECONDS else "?"
        print(f"\nMCP conformance at the 2025-11-25 wire (servers up in {startup}; {timings}):")
        print(results_table(columns))
        for name, run in runs.items():
            if run.unavailable is not None:
                print(f"{name}: not run: {run.unavailable}")
    assert plain.outcomes, plain.report()
    # The SDK alone passed every scenario of the pinned harness. A scenario it fails measures
    # nothing about the layer: the server app misses something, or a new harness version asks
    # for more (then list it in KNOWN_PLAIN_FAILURES, with why).
    failed = {s: o.problems for s, o in plain.outcomes.items() if o.status != "pass"}
    unexpected = {s: p for s, p in failed.items() if s not in KNOWN_PLAIN_FAILURES}
    now_passing = [s for s in KNOWN_PLAIN_FAILURES if s not in failed]
    assert not unexpected, f"the plain SDK fails {unexpected}\n{plain.report()}"
    assert not now_passing, f"the plain SDK passes {now_passing}: remove from KNOWN_PLAIN_FAILURES"


@pytest.mark.parametrize("fleet", FLEETS)
def test_fleet_passes_what_the_plain_sdk_passes(runs: dict[str, Run], fleet: str) -> None:
    run = runs[fleet]
    if run.unavailable is not None:
        skip_or_fail(run.unavailable)
    plain = runs["plain"].outcomes
    assert list(run.outcomes) == list(plain), (
        f"{fleet} ran other scenarios than plain\n{run.report()}"
    )
    assert run.balancer is not None
    routed = {routed.port for routed in run.balancer.requests}
    assert routed == {i.port for i in run.instances}, f"not every instance was used: {routed}"

    lost = {
        scenario: run.outcomes[scenario].problems
        for scenario, outcome in plain.items()
        if outcome.status == "pass"
        and run.outcomes[scenario].status != "pass"
        and scenario not in KNOWN_FLEET_FAILURES
    }
    now_passing = [
        s for s in KNOWN_FLEET_FAILURES if run.outcomes.get(s, Outcome("-")).status == "pass"
    ]
    assert not lost, f"{fleet} fails what the plain SDK passes: {lost}\n{run.report()}"
    assert not now_passing, (
        f"{fleet} now passes {now_passing}: remove them from KNOWN_FLEET_FAILURES"
    )


def test_without_npm_or_node_22_the_reason_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the harness fixture skips (or, under CI, fails) with: no npm to install it, or no
    Node.js 22+ to run it."""
    import conformance_harness

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    old_node = bin_dir / "node"
    old_node.write_text("#!/bin/sh\necho v20.20.2\n")
    old_node.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(conformance_harness, "INSTALL_DIR", tmp_path / "conformance")
    monkeypatch.setattr(conformance_harness, "STAMP", tmp_path / "conformance" / ".installed")
    monkeypatch.setattr(conformance_harness, "CLI", tmp_path / "conformance" / "index.js")
    monkeypatch.setattr(conformance_harness, "BUNDLED_NODE", tmp_path / "nowhere" / "node")
    with pytest.raises(Unavailable, match="npm not found on PATH"):
        install()
    with pytest.raises(Unavailable, match=r"no Node.js 22\+.*`node` on PATH is version 20"):
        conformance_harness._node()

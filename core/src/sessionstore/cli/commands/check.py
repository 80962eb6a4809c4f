"""``sessionstore check``: run the contract suite against a live store."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import click

from ..._check_progress import PROGRESS_FD
from ...plugins import load_backend_factory
from ...urls import backend_name_of, redact_text, redact_url
from .. import output
from ..options import (
    CommandFailed,
    Interrupted,
    examples,
    json_flag,
    option_flag,
    plural,
    progress_flag,
)
from ..root import cli


@dataclass(frozen=True)
class ContractTestResult:
    """One contract test's outcome: ``passed``, ``failed``, ``error`` or ``skipped``."""

    name: str
    outcome: str
    detail: str


_SECTION = re.compile(r"\s*# -- (.+?) -+\s*$")
_TEST_DEF = re.compile(r"\s*def (test_\w+)\(")
_THEME = re.compile(r'\s*"""([A-Z][\w ]+):')


def _contract_sections(package_dir: Path) -> dict[str, str]:
    """Each contract test's guarantee, from the suite's source (read, not imported): the
    ``# -- N. name ---`` headings of ``suite.py``, and for the suite's other parts the theme
    their module docstring opens with (``Limits: ...``); ``{}`` when nothing can be read."""
    sections: dict[str, str] = {}
    for path in sorted(package_dir.glob("*.py")):
        try:
            source = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if path.name == "suite.py":
            heading = "other"
        else:
            theme = _THEME.match(source)
            heading = theme[1].lower() if theme else "other"
        for line in source.splitlines():
            if path.name == "suite.py" and (match := _SECTION.match(line)):
                heading = match[1]
            elif match := _TEST_DEF.match(line):
                sections[match[1]] = heading
    return sections


def _junit_results(path: Path) -> list[ContractTestResult]:
    results = []
    for case in ElementTree.parse(path).iter("testcase"):
        name = case.get("name", "?").split("[")[0]
        outcome, detail = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                detail = (child.get("message") or child.text or "").strip()
                break
        lines = detail.splitlines()
        results.append(
            ContractTestResult(name, outcome, output.one_line(lines[0] if lines else ""))
        )
    return results


@contextlib.contextmanager
def _progress_reader(enabled: bool) -> Iterator[tuple[dict[str, str], tuple[int, ...]]]:
    """While enabled: a pipe the suite's progress plugin writes to, read by a thread that shows
    the progress on stderr: a progress bar on a terminal, else a line at each tenth of the tests.
    Yields the environment naming the pipe and the descriptors to pass to pytest."""
    if not enabled:
        yield {}, ()
        return
    read_end, write_end = os.pipe()

    def draw() -> None:
        with os.fdopen(read_end, "r", encoding="ascii", errors="replace") as lines:
            total, done = 0, 0
            bar: Any = None
            with contextlib.ExitStack() as stack:
                for line in lines:
                    word, _, number = line.strip().partition(" ")
                    if word == "total" and number.isdigit():
                        total = int(number)
                        if terminal:
                            bar = stack.enter_context(
                                click.progressbar(
                                    length=max(total, 1),
                                    label="checking",
                                    file=sys.stderr,
                                    show_pos=True,
                                    update_min_steps=1,
                                )
                            )
                    elif word == "done":
                        done += 1
                        if bar is not None:
                            bar.update(1)
                        elif total and (
                            done == total or done * 10 // total > (done - 1) * 10 // total
                        ):
                            # Not a terminal (--progress): a line at each tenth, for a log.
                            output.note(f"checking: {done}/{total} tests done")

    terminal = sys.stderr.isatty()
    reader = threading.Thread(target=draw, name="sessionstore-check-progress", daemon=True)
    reader.start()
    try:
        yield {PROGRESS_FD: str(write_end)}, (write_end,)
    finally:
        os.close(write_end)  # with pytest gone too, the reader sees the end of the pipe
        reader.join(timeout=5)


def _run_pytest(
    command: list[str], env: dict[str, str], pass_fds: tuple[int, ...]
) -> tuple[int, str]:
    """Run pytest; on Ctrl-C give it time to finish its scenarios (each clears its scratch
    namespace on the way out) before killing it."""
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        pass_fds=pass_fds,
    ) as process:
        try:
            output_text, _ = process.communicate()
        except KeyboardInterrupt:
            try:
                process.communicate(timeout=2)  # a terminal's Ctrl-C reached it too
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
                try:
                    process.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            raise Interrupted("interrupted") from None
        return process.returncode, output_text


@cli.command(
    epilog=examples(
        "sessionstore check sqlite:///sessions.db",
        "sessionstore check redis://localhost:6379/0 -o key_prefix=myapp",
        "sessionstore check redis://localhost:6379/0 -k 'namespace or batch' --verbose",
        "sessionstore check sqlite:///sessions.db --json --no-progress | jq .failed",
    )
)
@click.argument("url", envvar="SESSIONSTORE_URL", metavar="URL")
@option_flag("--option", "-o")
@click.option(
    "-k", "select", metavar="EXPRESSION", help="Only the contract tests pytest -k selects."
)
@click.option("--quick", is_flag=True, help="Hypothesis profile sessionstore-quick: no shrinking.")
@click.option("--verbose", "-v", is_flag=True, help="Also print pytest's own output.")
@progress_flag
@json_flag
def check(
    url: str,
    options: dict[str, Any],
    select: str | None,
    quick: bool,
    verbose: bool,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Run the contract suite against a live store and say which guarantees hold.

    Needs sessionstore-contract. Every test works in a scratch namespace of its own
    (contract-<random>) and clears it when done, so other data is never touched; what the backend
    keeps of an emptied namespace is listed in docs/cli.md. Takes about half a minute, with a
    progress bar on stderr when it is a terminal (or with --progress). URL may come from
    SESSIONSTORE_URL.

    --json prints {"store", "suite_version", "tests", "passed", "failed", "skipped", "seconds",
    "guarantees": [{"name", "verdict", "tests": [{"name", "outcome", "detail"}]}]}; --verbose
    then puts pytest's output on stderr.
    """
    try:
        suite = importlib.import_module("sessionstore_contract")
    except ImportError:
        raise CommandFailed(
            "the contract suite is not installed: pip install sessionstore-contract"
        ) from None
    load_backend_factory(backend_name_of(url))  # an unknown backend: one line, before pytest
    package_dir = Path(next(iter(suite.__path__)))
    try:
        suite_version = metadata.version("sessionstore-contract")
    except metadata.PackageNotFoundError:
        suite_version = "?"
    shown_url = redact_url(url)
    show_progress = sys.stderr.isatty() if progress is None else progress
    if show_progress:
        output.note(f"running the contract suite against {shown_url}...")
    with tempfile.TemporaryDirectory(prefix="sessionstore-check-") as scratch:
        folder = Path(scratch)
        (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        report = folder / "results.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(folder / "pytest.ini"),
            "--rootdir",
            scratch,
            "-p",
            "no:cacheprovider",
            "--pyargs",
            "sessionstore_contract",
            "-rA",
            "-q",
            f"--junitxml={report}",
        ]
        if show_progress:
            command += ["-p", "sessionstore._check_progress"]
        if select:
            command += ["-k", select]
        if quick:
            command += ["--hypothesis-profile", "sessionstore-quick"]
        # The URL goes through the environment, not the command line other users can read.
        addopts = ["--sessionstore-backend", url]
        for key, value in options.items():
            addopts += ["--sessionstore-option", f"{key}={json.dumps(value)}"]
        started = time.monotonic()
        with _progress_reader(show_progress) as (progress_env, pass_fds):
            env = {
                **os.environ,
                "PYTEST_ADDOPTS": shlex.join(addopts),
                "HYPOTHESIS_STORAGE_DIRECTORY": str(folder / "hypothesis"),
                **progress_env,
            }
            status, pytest_output = _run_pytest(command, env, pass_fds)
        elapsed = time.monotonic() - started
        if verbose:
            click.echo(redact_text(pytest_output), err=as_json)
        if status == 5:
            raise CommandFailed(f"no contract test matches -k {select!r}")
        if status not in (0, 1) or not report.exists():
            last = next(
                (ln for ln in reversed(pytest_output.splitlines()) if ln.strip()), "no output"
            )
            raise CommandFailed(
                f"the contract suite could not run (pytest exit status {status}): {last}"
            )
        results = _junit_results(report)
    _report_contract(
        results, _contract_sections(package_dir), shown_url, suite_version, elapsed, as_json
    )


_VERDICT_WORDS = {"FAILS": "fails", "not checked (skipped)": "skipped"}


def _report_contract(
    results: list[ContractTestResult],
    sections: dict[str, str],
    shown_url: str,
    suite_version: str,
    elapsed: float,
    as_json: bool,
) -> None:
    grouped: dict[str, list[ContractTestResult]] = {}
    for result in results:
        grouped.setdefault(sections.get(result.name, "other"), []).append(result)
    broken = []
    verdicts: dict[str, str] = {}
    for heading, group in grouped.items():
        outcomes = [r.outcome for r in group]
        if any(o in ("failed", "error") for o in outcomes):
            verdicts[heading] = "FAILS"
            broken.append(heading)
        elif all(o == "skipped" for o in outcomes):
            verdicts[heading] = "not checked (skipped)"
        else:
            skipped = outcomes.count("skipped")
            verdicts[heading] = "holds" + (
                f" ({plural(skipped, 'test')} skipped)" if skipped else ""
            )
    tally = {o: sum(r.outcome == o for r in results) for o in ("passed", "skipped")}
    failed = len(results) - tally["passed"] - tally["skipped"]
    if as_json:
        output.emit_json(
            {
                "store": shown_url,
                "suite_version": suite_version,
                "tests": len(results),
                "passed": tally["passed"],
                "failed": failed,
                "skipped": tally["skipped"],
                "seconds": round(elapsed, 1),
                "guarantees": [
                    {
                        "name": heading,
                        "verdict": _VERDICT_WORDS.get(verdicts[heading], "holds"),
                        "tests": [asdict(r) for r in group],
                    }
                    for heading, group in grouped.items()
                ],
            },
            indent=2,
        )
    else:
        output.echo(f"contract suite {suite_version} against {shown_url}: {len(results)} tests")
        for heading, group in grouped.items():
            verdict = verdicts[heading]
            role: output.Role = (
                "bad" if verdict == "FAILS" else "good" if verdict.startswith("holds") else "warn"
            )
            output.echo(f"\n{heading}: {output.paint(verdict, role)}")
            for result in group:
                label = {"failed": "FAILED", "error": "ERROR"}.get(result.outcome, result.outcome)
                shown = output.paint(
                    f"{label:<8}", "bad" if result.outcome in ("failed", "error") else None
                )
                detail = (
                    f": {result.detail}" if result.detail and result.outcome != "passed" else ""
                )
                output.echo(f"  {shown} {result.name}{detail}")
        output.echo(
            f"\n{tally['passed']} passed, {failed} failed, {tally['skipped']} skipped "
            f"in {elapsed:.1f} s"
        )
    if failed:
        if tally["passed"] == 0:
            first = next(r for r in results if r.outcome in ("failed", "error"))
            raise CommandFailed(f"every contract test failed; the first: {first.detail}")
        raise CommandFailed(
            f"{failed} of {len(results)} contract tests failed: the store does not keep "
            f"{'; '.join(broken)}"
        )
    if not as_json:
        output.echo(output.paint("every guarantee checked holds", "good"))

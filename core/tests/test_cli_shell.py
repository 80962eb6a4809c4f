"""The ``sessionstore`` command as a user meets it in a shell: the installed console script (and
``python -m sessionstore``) in subprocesses, real pipes (one closed early by ``head``), a
pseudo-terminal for colour and progress, ``NO_COLOR``, ids that start with ``-``, ids on stdin,
``--json`` everywhere, real SQLite files in ``tmp_path``.

Tests are plain ``def``: the helpers run their own event loops.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sessionstore import Session, SessionStatus, TransportType, open_store
from sessionstore.transfer import MigrationCheckpoint

SCRIPT = Path(sys.executable).with_name("sessionstore")
ANSI = "\x1b["
ODD_IDS = ("-abc", "-n", "--zz", "-Xt0pQ9r2mK8s7Yb6aLc0dEf7gHi2jW1v")
"""Ids an older release could have generated (``-`` first) or a user chose: ``-n`` is spelled
like an option of the command, so it needs ``--``."""


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def sessionstore(
    *args: str,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    module: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the installed script (or ``python -m sessionstore``) with pipes for its streams."""
    assert SCRIPT.exists(), f"{SCRIPT} is missing: install core (make .venv/.installed)"
    command = [sys.executable, "-m", "sessionstore"] if module else [str(SCRIPT)]
    return subprocess.run(
        [*command, *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        timeout=300,
    )


def in_terminal(*args: str, env: Mapping[str, str]) -> tuple[int, str, str]:
    """Run the script with stderr (and, unless told, stdout) on a pseudo-terminal; returns the
    status, stdout (a pipe) and what the terminal showed (stderr)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [str(SCRIPT), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=dict(env),
    )
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not data:
            break
        shown += data
    os.close(master)
    assert process.stdout is not None
    out = process.stdout.read().decode()
    process.stdout.close()
    return process.wait(timeout=300), out, shown.decode(errors="replace")


def on_terminal(*args: str, env: Mapping[str, str]) -> tuple[int, str]:
    """Run the script with stdout and stderr on one pseudo-terminal; status and what it showed."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [str(SCRIPT), *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=dict(env)
    )
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        shown += data
    os.close(master)
    return process.wait(timeout=120), shown.decode(errors="replace")


def colour_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}
    return {**env, **extra}


async def _seed(spec: str, ids: list[str], *, ttl: float | None = 3600) -> None:
    async with open_store(spec, ttl=ttl, synchronous="off") as store:
        for session_id in ids:
            await store.create_session(Session(id=session_id, transport=TransportType.HTTP))


def seed(spec: str, ids: list[str], *, ttl: float | None = 3600) -> None:
    asyncio.run(_seed(spec, ids, ttl=ttl))


def live_ids(spec: str) -> set[str]:
    async def listing() -> set[str]:
        async with open_store(spec) as store:
            return {s.id async for s in store.iter_sessions()}

    return asyncio.run(listing())


def error_of(stderr: str) -> dict[str, object]:
    """The one line a failure prints with --json: ``{"error": {...}}``."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    error = json.loads(lines[0])["error"]
    assert set(error) == {"kind", "message", "status"}, error
    return dict(error)


# -- ids that start with "-" ----------------------------------------------------------------------


def test_an_id_that_starts_with_a_dash_is_an_argument(tmp_path: Path) -> None:
    spec = url(tmp_path / "dash.db")
    seed(spec, [*ODD_IDS, "plain"])
    for session_id in ("-abc", "--zz", ODD_IDS[3]):
        shown = sessionstore("show", session_id, "-s", spec, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["id"] == session_id
        assert sessionstore("events", session_id, "-s", spec).returncode == 0
    # Options before and after the id still work, short ones included.
    shown = sessionstore("show", "-n", "default", "-abc", "--store", spec, "--json")
    assert json.loads(shown.stdout)["id"] == "-abc", shown.stderr
    removed = sessionstore("rm", "-s", spec, "-abc", ODD_IDS[3])
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"deleted -abc\ndeleted {ODD_IDS[3]}\n"
    assert live_ids(spec) == {"-n", "--zz", "plain"}


def test_double_dash_ends_the_options(tmp_path: Path) -> None:
    """click's ``--``: an id spelled exactly like an option (``-n``) goes after it."""
    spec = url(tmp_path / "dd.db")
    seed(spec, ["-n", "--zz", "plain"])
    shown = sessionstore("show", "-s", spec, "--json", "--", "-n")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == "-n"
    removed = sessionstore("rm", "-s", spec, "--", "-n", "--zz")
    assert (removed.returncode, removed.stdout) == (0, "deleted -n\ndeleted --zz\n"), removed
    assert live_ids(spec) == {"plain"}


def test_rm_reads_ids_from_stdin_and_goes_on_to_the_end(tmp_path: Path) -> None:
    """The recipe of docs/cli.md, as a shell runs it: ls --json | jq | rm --stdin. Ids that
    start with "-", a line that is no id and an id already gone do not stop it half way."""
    spec = url(tmp_path / "bulk.db")
    ids = [f"s{i:04d}" for i in range(300)] + list(ODD_IDS)
    seed(spec, ids)
    pipeline = (
        f"{SCRIPT} ls -s {spec} --json | jq -r '.id // empty' "
        f"| {{ echo 'not an id'; echo gone; cat; }} | {SCRIPT} rm --stdin -s {spec} --quiet"
    )
    done = subprocess.run(
        ["bash", "-c", pipeline], capture_output=True, text=True, timeout=300, check=False
    )
    assert live_ids(spec) == set()
    assert done.returncode == 1, done  # naming what was not there, after deleting the rest
    lines = done.stderr.splitlines()
    assert lines[-1] == (
        "sessionstore: error: session not found: 'gone'; 1 line of stdin was not a session id "
        "(see above)"
    ), lines
    assert "line 1 of stdin" in lines[0], lines
    assert "'not an id'" in lines[0], lines
    assert done.stdout == ""  # --quiet

    seed(spec, ["a", "-b"])
    by_dash = sessionstore("rm", "-", "-s", spec, "--json", stdin="a\n\n  -b  \n")
    assert by_dash.returncode == 0, by_dash.stderr
    assert json.loads(by_dash.stdout) == {
        "dry_run": False,
        "deleted": 2,
        "missing": 0,
        "missing_ids": [],
        "invalid": 0,
    }
    assert live_ids(spec) == set()


def test_rm_and_purge_dry_run(tmp_path: Path) -> None:
    spec = url(tmp_path / "dry.db")
    seed(spec, ["keep-1", "-keep-2"])

    async def expired() -> None:  # deadlines an hour in the past
        async with open_store(spec, ttl=3600, clock=lambda: time.time() - 7200) as store:
            await store.create_session(Session(id="old", transport=TransportType.SSE))

    asyncio.run(expired())
    dry = sessionstore("rm", "--dry-run", "keep-1", "-keep-2", "nope", "-s", spec)
    assert dry.stdout == "would delete keep-1\nwould delete -keep-2\n"
    assert dry.returncode == 1, dry.stderr
    assert "'nope'" in dry.stderr
    assert live_ids(spec) == {"keep-1", "-keep-2"}
    purge = sessionstore("purge", "--dry-run", "--json", "-s", spec)
    assert json.loads(purge.stdout) == {"dry_run": True, "purged": 1}
    assert json.loads(sessionstore("purge", "--json", "-s", spec).stdout) == {
        "dry_run": False,
        "purged": 1,
    }


def test_purge_dry_run_counts_what_purge_then_removes(tmp_path: Path) -> None:
    path = tmp_path / "purge.db"
    spec = url(path)
    seed(spec, ["live-1", "-live-2"])

    async def expired() -> None:  # deadlines an hour in the past
        async with open_store(spec, ttl=3600, clock=lambda: time.time() - 7200) as store:
            for number in range(3):
                await store.create_session(Session(id=f"old-{number}", transport=TransportType.SSE))

    def rows() -> int:  # expired rows included: what a purge reclaims
        with closing(sqlite3.connect(path)) as db:
            count: int = db.execute("SELECT count(*) FROM sessions").fetchone()[0]
            return count

    asyncio.run(expired())
    assert rows() == 5
    dry = sessionstore("purge", "--dry-run", "-s", spec)
    assert (dry.returncode, dry.stdout, dry.stderr) == (0, "would purge 3 expired sessions\n", "")
    dry_json = sessionstore("purge", "--dry-run", "--json", "-s", spec)
    assert json.loads(dry_json.stdout) == {"dry_run": True, "purged": 3}, dry_json.stderr
    assert rows() == 5, "a dry run removed something"
    purge = sessionstore("purge", "-s", spec)
    assert (purge.returncode, purge.stdout) == (0, "purged 3 expired sessions\n"), purge.stderr
    assert rows() == 2
    assert live_ids(spec) == {"live-1", "-live-2"}
    assert (
        sessionstore("purge", "--dry-run", "-s", spec).stdout == "would purge 0 expired sessions\n"
    )


# -- --json everywhere, errors included -----------------------------------------------------------


def test_every_command_speaks_json_errors_included(tmp_path: Path) -> None:
    spec, copy = url(tmp_path / "j.db"), url(tmp_path / "copy.db")
    seed(spec, ["a", "b", "-c"])
    count = sessionstore("count", "-s", spec, "--json", module=True)  # python -m sessionstore
    assert json.loads(count.stdout) == {"sessions": 3}, count.stderr

    export = tmp_path / "backup.jsonl"
    exported = sessionstore("export", str(export), "-s", spec, "--json")
    assert json.loads(exported.stderr) == {"exported": 3, "to": str(export)}
    imported = sessionstore("import", str(export), "-s", copy, "--json")
    assert json.loads(imported.stdout) == {
        "imported": 3,
        "store": copy,
        "namespace": "default",
        "copied": 3,
        "present": 0,
        "expired": 0,
        "conflicts": 0,
        "conflict_ids": [],
    }
    migrated = sessionstore("migrate", "--from", spec, "--to", copy, "-n", "default", "--json")
    report = json.loads(migrated.stdout)
    assert (report["present"], report["source_count"], report["ok"]) == (3, 3, True), report

    # A failure: one JSON object on stderr, nothing on stdout.
    missing = sessionstore("show", "nope", "-s", spec, "--json")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert error_of(missing.stderr) == {
        "kind": "error",
        "message": "session not found: 'nope'",
        "status": 1,
    }
    usage = sessionstore("count", "--json", "--bogus")
    assert usage.returncode == 2
    error = error_of(usage.stderr)
    assert (error["kind"], error["status"]) == ("usage error", 2)
    assert "--bogus" in str(error["message"])
    gone = sessionstore("rm", "--json", "x", "-s", spec)
    assert json.loads(gone.stdout)["missing_ids"] == ["x"]
    assert error_of(gone.stderr)["status"] == 1
    # Without --json, the failure stays a line of text.
    assert sessionstore("show", "nope", "-s", spec).stderr == (
        "sessionstore: error: session not found: 'nope'\n"
    )


def test_check_json_and_its_progress_on_a_terminal(tmp_path: Path) -> None:
    """stderr on a terminal: a progress bar counting the tests while they run; stdout (a pipe)
    holds the JSON report alone."""
    spec = url(tmp_path / "check.db")
    select = "test_roundtrip_create_get or test_every_enum_value_roundtrips"
    status, out, shown = in_terminal("check", spec, "-k", select, "--json", env=colour_env())
    assert status == 0, (out, shown)
    report = json.loads(out)
    assert (report["tests"], report["passed"], report["failed"]) == (2, 2, 0)
    assert [g["verdict"] for g in report["guarantees"]] == ["holds"]
    assert "checking" in shown, shown
    assert "2/2" in shown, shown


# -- colour, pipes --------------------------------------------------------------------------------


def test_colour_on_a_terminal_only_and_never_with_no_color(tmp_path: Path) -> None:
    spec = url(tmp_path / "colour.db")
    seed(spec, ["a"])
    status, shown = on_terminal("ls", "-s", spec, env=colour_env())
    assert status == 0, shown
    assert ANSI in shown, shown
    status, shown = on_terminal("show", "nope", "-s", spec, env=colour_env())
    assert status == 1, shown
    assert ANSI in shown, shown  # the "error:" of a failure
    status, shown = on_terminal("ls", "-s", spec, env=colour_env(NO_COLOR="1"))
    assert status == 0, shown
    assert "TRANSPORT" in shown, shown
    assert ANSI not in shown, shown
    piped = sessionstore("ls", "-s", spec, env=colour_env())
    failed = sessionstore("show", "nope", "-s", spec, env=colour_env())
    assert ANSI not in piped.stdout + failed.stderr
    assert piped.stdout.startswith("ID ")


def test_a_pipe_closed_by_head_ends_quietly_with_status_0(tmp_path: Path) -> None:
    """More output than a pipe holds (64 KiB), read by ``head -n 1``: the command is told the
    pipe is closed when it writes, and stops without a word."""
    spec = url(tmp_path / "many.db")
    seed(spec, [f"session-{i:05d}" for i in range(1500)])
    for listing in ("ls", "ls --json", "ls --sort none"):
        shell = f"{SCRIPT} {listing} -s {spec} | head -n 1; exit ${{PIPESTATUS[0]}}"
        done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=300)
        assert (done.returncode, done.stderr) == (0, ""), (listing, done)
        assert len(done.stdout.splitlines()) == 1


# -- ls: expiry and order -------------------------------------------------------------------------


def test_ls_json_carries_the_expiry_as_show_does_and_ls_sorts(tmp_path: Path) -> None:
    spec = url(tmp_path / "order.db")
    now = datetime.now(UTC)

    async def make() -> None:
        async with (
            open_store(spec, ttl=3600) as timed,
            open_store(spec) as forever,
        ):
            # Ids in one order, creation in another, activity in a third.
            for name, created_ago, active_ago, store in (
                ("a", 1, 30, timed),
                ("b", 3, 10, forever),
                ("c", 2, 20, timed),
                ("d", 5, 40, timed),
                ("e", 4, 50, forever),
            ):
                await store.create_session(
                    Session(
                        id=name,
                        transport=TransportType.HTTP,
                        status=SessionStatus.ACTIVE,
                        created_at=now - timedelta(hours=created_ago),
                        last_activity=now - timedelta(minutes=active_ago),
                    )
                )

    asyncio.run(make())

    def listed(*args: str) -> list[dict[str, object]]:
        done = sessionstore("ls", "-s", spec, "--json", *args)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    for line in listed():
        shown = json.loads(sessionstore("show", str(line["id"]), "-s", spec, "--json").stdout)
        assert (line["deadline_ms"], line["expires_at"]) == (
            shown["deadline_ms"],
            shown["expires_at"],
        )
        assert (line["deadline_ms"] is None) == (line["id"] in ("b", "e"))

    def ids(*args: str) -> list[object]:
        return [line["id"] for line in listed(*args)]

    assert ids() == ["d", "e", "b", "c", "a"]  # oldest first
    assert ids("--sort", "activity") == ["e", "d", "a", "c", "b"]
    assert ids("--sort", "id", "--reverse") == ["e", "d", "c", "b", "a"]
    assert ids("--limit", "2") == ["d", "e"]
    assert ids("--sort", "activity", "--reverse", "--limit", "1") == ["b"]
    assert ids("--sort", "expiry")[-2:] in (["b", "e"], ["e", "b"])  # never expire: last
    table = sessionstore("ls", "-s", spec).stdout.splitlines()
    assert table[0].split() == [
        "ID",
        "TRANSPORT",
        "STATUS",
        "VERSION",
        "CREATED",
        "LAST",
        "ACTIVITY",
        "EXPIRES",
    ]
    assert [row.split()[0] for row in table[1:]] == ["d", "e", "b", "c", "a"]
    assert [row.split()[-1] for row in table[1:]][1:3] == ["never", "never"]


# -- files and hints ------------------------------------------------------------------------------


def test_export_and_checkpoint_files_are_owner_only(tmp_path: Path) -> None:
    spec = url(tmp_path / "files.db")
    seed(spec, ["a"])
    target = tmp_path / "backup.jsonl"
    target.write_text("an older file, readable by all\n")
    target.chmod(0o644)
    done = sessionstore("export", str(target), "-s", spec)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    # A checkpoint outlives an interrupted migration: what MigrationCheckpoint.save leaves.
    checkpoint = tmp_path / "m.ckpt"
    MigrationCheckpoint(
        checkpoint, source=spec, source_namespace="a", target="memory", target_namespace="b"
    ).save("a", 1)
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o600


def test_store_url_hints(tmp_path: Path) -> None:
    missing = sessionstore("count", "-s", f"sqlite:///{tmp_path}/no/such/x.db")
    assert missing.returncode == 1
    assert "sqlite:////abs/path" in missing.stderr, missing.stderr
    for spec in ("sqlite:///x.db?busy_timeout=3", "redis://localhost:6379/0?timeout=2"):
        query = sessionstore("count", "-s", spec)
        assert query.returncode == 1
        assert "-o key=value" in query.stderr, query.stderr

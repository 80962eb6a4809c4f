"""The ``sessionstore`` command, driven as a user drives it: click's runner in-process, and the
installed console script in a subprocess, against real SQLite files in ``tmp_path`` (the Redis
side lives in plugins/redis/tests/test_cli_redis.py).

Tests that invoke the command are plain ``def``: the command runs its own event loop.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from core_testkit import InstallDistribution

from sessionstore import (
    Session,
    SessionDump,
    SessionStatus,
    TransportType,
    open_store,
)
from sessionstore.benchmark import OPERATIONS
from sessionstore.cli import cli
from sessionstore.transfer import EXPORT_FORMAT, compare_dumps

SCRIPT = Path(sys.executable).with_name("sessionstore")


def invoke(*args: str, input: str | None = None) -> Result:
    """Run ``sessionstore ARGS`` in-process, as a user would from a shell."""
    return CliRunner().invoke(cli, list(args), input=input, prog_name="sessionstore")


def assert_one_error_line(result: Result, status: int = 1) -> str:
    """The command failed with ``status`` and said why in exactly one line on stderr."""
    assert result.exit_code == status, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("sessionstore")
    return lines[0]


def url(path: Path) -> str:
    return f"sqlite:///{path}"


async def seed(
    spec: str,
    count: int,
    *,
    namespace: str = "default",
    events_every: int = 3,
    prefix: str = "s",
) -> None:
    """``count`` sessions with every feature a dump carries: versions above 1, deadlines on
    half of them (the rest never expire), last event ids, several streams with data and
    priming events."""
    async with (
        open_store(spec, namespace=namespace, synchronous="off") as forever,
        open_store(spec, namespace=namespace, ttl=7200, synchronous="off") as timed,
    ):
        for index in range(count):
            store = timed if index % 2 else forever
            session = Session(
                id=f"{prefix}{index:06d}",
                transport=list(TransportType)[index % 3],
                status=list(SessionStatus)[index % 4],
                upstream_session_id=f"up-{index}",
                metadata={"index": index, "name": "séance ✓"},
            )
            await store.create_session(session)
            if index % 5 == 0:
                session.metadata = {"index": -index}
                await store.update_session(session)
            if index % events_every == 0:
                await store.append_event(session.id, "main", b'{"jsonrpc":"2.0","id":%d}' % index)
                await store.append_event(session.id, "other", None)
                await store.append_event(session.id, "main", bytes(range(256)))
                await store.store_last_event_id(session.id, f"ev-{index}")


async def dumps_of(spec: str, namespace: str = "default") -> dict[str, SessionDump]:
    async with open_store(spec, namespace=namespace) as store:
        return {dump.record.id: dump async for dump in store.iter_dumps()}


def assert_same_sessions(source: dict[str, SessionDump], target: dict[str, SessionDump]) -> None:
    """Every session of ``source`` is in ``target`` whole, and nothing else is."""
    assert sorted(source) == sorted(target)
    differences = [d for i in source for d in compare_dumps(source[i], target[i])]
    assert differences == []


# -- the command as a whole -----------------------------------------------------------------------


def test_import_sessionstore_does_not_import_click() -> None:
    code = "import sys, sessionstore; assert 'click' not in sys.modules, 'click imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_help_has_an_example(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    examples = result.output.split("Examples:", 1)[1]
    assert f"sessionstore {command} " in examples


def test_bare_command_shows_help_and_version() -> None:
    result = invoke()
    assert result.exit_code == 0
    assert "Commands:" in result.output
    assert "migrate" in result.output
    version = invoke("--version")
    assert version.exit_code == 0
    assert version.output.startswith("sessionstore ")


def test_usage_errors_are_one_line_with_status_2(tmp_path: Path) -> None:
    line = assert_one_error_line(invoke("ls", "--bogus", "-s", "memory"), 2)
    assert "--bogus" in line
    assert "sessionstore ls --help" in line
    assert "no store given" in assert_one_error_line(invoke("count"), 2)
    assert "No such command" in assert_one_error_line(invoke("frobnicate"), 2)
    assert "--older-than" in assert_one_error_line(
        invoke("ls", "-s", "memory", "--older-than", "x"), 2
    )
    assert "KEY=VALUE" in assert_one_error_line(invoke("count", "-s", "memory", "-o", "x"), 2)
    same = ["migrate", "--from", url(tmp_path / "a.db"), "--to", url(tmp_path / "a.db")]
    assert "same store" in assert_one_error_line(invoke(*same), 2)


def test_operational_errors_are_one_line_with_status_1(tmp_path: Path) -> None:
    assert "no sessionstore backend named 'nosuch'" in assert_one_error_line(
        invoke("count", "--store", "nosuch://host/0")
    )
    assert "neither a backend name nor a URL" in assert_one_error_line(
        invoke("count", "--store", "%%%")
    )
    missing_folder = url(tmp_path / "no" / "such" / "folder.db")
    assert "does not exist" in assert_one_error_line(invoke("count", "--store", missing_folder))
    store = url(tmp_path / "s.db")
    assert "session not found: 'nope'" in assert_one_error_line(invoke("show", "nope", "-s", store))
    assert "session not found" in assert_one_error_line(invoke("events", "nope", "-s", store))
    assert "namespace" in assert_one_error_line(invoke("count", "-s", store, "-n", "bad space"))
    assert "does not accept option" in assert_one_error_line(
        invoke("count", "-s", store, "-o", "colour=blue")
    )
    assert "No such file" in assert_one_error_line(
        invoke("import", str(tmp_path / "none.jsonl"), "-s", store)
    )


def test_store_and_namespace_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = url(tmp_path / "env.db")
    asyncio.run(seed(spec, 3, namespace="tenant-a"))
    monkeypatch.setenv("SESSIONSTORE_URL", spec)
    assert invoke("count").output == "0\n"
    monkeypatch.setenv("SESSIONSTORE_NAMESPACE", "tenant-a")
    assert invoke("count").output == "3\n"
    assert invoke("count", "-n", "default").output == "0\n"


# -- backends -------------------------------------------------------------------------------------


def test_backends_lists_distributions_schemes_and_a_stores_capabilities(tmp_path: Path) -> None:
    result = invoke("backends")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert "sqlite" in lines["sessionstore-sqlite"]
    assert lines["sessionstore-sqlite"].rstrip().endswith("ok")
    assert "redis, redis+cluster, rediss, rediss+cluster" in lines["sessionstore-redis"]
    assert "add --store URL" in result.output

    with_store = invoke("backends", "--store", url(tmp_path / "c.db"))
    assert with_store.exit_code == 0
    assert f"capabilities of {url(tmp_path / 'c.db')} (backend sqlite):" in with_store.output
    assert "atomic_batch_update  yes" in with_store.output

    data = json.loads(invoke("backends", "--json", "--store", "memory").output)
    by_distribution = {b["distribution"]: b for b in data["backends"]}
    assert by_distribution["sessionstore-memory"] == {
        "distribution": "sessionstore-memory",
        "version": by_distribution["sessionstore-memory"]["version"],
        "entry_point": "sessionstore_memory:create_backend",
        "schemes": ["memory"],
        "error": None,
    }
    assert data["store"]["backend"] == "memory"
    assert set(data["store"]["capabilities"]) == {
        "atomic_batch_update",
        "shared_handles",
        "controllable_clock",
        "shared_processes",
        "durable",
        "event_notifications",
    }


def test_backends_lists_a_plugin_that_fails_to_import_with_its_error(
    install_distribution: InstallDistribution,
) -> None:
    install_distribution(
        "broken_backend",
        {"brokendb": "broken_backend_mod:create"},
        {"broken_backend_mod.py": "raise ImportError('libbroken.so: cannot open shared object')"},
    )
    result = invoke("backends")
    assert result.exit_code == 0
    line = next(ln for ln in result.output.splitlines() if ln.startswith("broken_backend"))
    assert "brokendb" in line
    assert "error:" in line
    assert "libbroken.so: cannot open shared object" in line
    assert "sessionstore-sqlite" in result.output  # the others are still listed
    data = json.loads(invoke("backends", "--json").output)
    broken = next(b for b in data["backends"] if b["distribution"] == "broken_backend")
    assert "ImportError" in broken["error"]


# -- ls, show, events, rm, count, purge -----------------------------------------------------------


def test_ls_lists_and_filters(tmp_path: Path) -> None:
    spec = url(tmp_path / "ls.db")
    asyncio.run(seed(spec, 12, events_every=100))
    result = invoke("ls", "-s", spec)
    assert result.exit_code == 0
    rows = result.output.splitlines()
    assert rows[0].split()[:3] == ["ID", "TRANSPORT", "STATUS"]
    assert [row.split()[0] for row in rows[1:]] == [f"s{i:06d}" for i in range(12)]

    listed = [json.loads(line) for line in invoke("ls", "-s", spec, "--json").output.splitlines()]
    assert len(listed) == 12
    assert listed[5]["version"] == 2
    assert listed[5]["metadata"] == {"index": -5}
    assert listed[1]["metadata"] == {"index": 1, "name": "séance ✓"}

    def ids(*args: str) -> list[str]:
        result = invoke("ls", "-s", spec, "--json", *args)
        assert result.exit_code == 0, result.output
        return [json.loads(line)["id"] for line in result.output.splitlines()]

    assert ids("--status", "closed") == ["s000002", "s000006", "s000010"]
    assert ids("--status", "closed", "--status", "failed", "--transport", "sse") == [
        "s000002",
        "s000011",
    ]
    assert ids("--older-than", "1h") == []
    assert len(ids("--newer-than", "1h")) == 12
    assert len(ids("--older-than", "2999-01-01T00:00:00Z", "--by", "activity")) == 12
    assert ids("--limit", "2") == ["s000000", "s000001"]


def test_ls_age_filters_compare_created_or_last_activity(tmp_path: Path) -> None:
    spec = url(tmp_path / "ages.db")
    now = datetime.now(UTC)

    async def make() -> None:
        async with open_store(spec) as store:
            for name, created, active in (
                ("old-idle", now - timedelta(days=3), now - timedelta(days=2)),
                ("old-busy", now - timedelta(days=3), now - timedelta(minutes=1)),
                ("new", now - timedelta(minutes=5), now - timedelta(minutes=1)),
            ):
                session = Session(
                    id=name, transport=TransportType.HTTP, created_at=created, last_activity=active
                )
                await store.create_session(session)

    asyncio.run(make())

    def ids(*args: str) -> list[str]:
        result = invoke("ls", "-s", spec, "--json", *args)
        assert result.exit_code == 0, result.output
        return sorted(json.loads(line)["id"] for line in result.output.splitlines())

    assert ids("--older-than", "1d") == ["old-busy", "old-idle"]
    assert ids("--older-than", "1d", "--by", "activity") == ["old-idle"]
    assert ids("--newer-than", "1h30m") == ["new"]
    two_days_ago = (now - timedelta(days=2, hours=1)).isoformat()
    assert ids("--newer-than", two_days_ago, "--by", "activity") == ["new", "old-busy", "old-idle"]


def test_show_and_events(tmp_path: Path) -> None:
    spec = url(tmp_path / "show.db")
    asyncio.run(seed(spec, 1))
    result = invoke("show", "s000000", "-s", spec)
    assert result.exit_code == 0
    text = result.output
    assert "transport     stdio" in text
    assert "version       2" in text
    assert "expires       never" in text
    assert "last event id ev-0" in text
    assert "streams       main (2 events), other (1 event)" in text

    shown = json.loads(invoke("show", "s000000", "-s", spec, "--json").output)
    assert shown["id"] == "s000000"
    assert shown["version"] == 2
    assert shown["deadline_ms"] is None
    assert shown["last_event_id"] == "ev-0"
    assert shown["streams"] == [{"id": "main", "events": 2}, {"id": "other", "events": 1}]

    log = invoke("events", "s000000", "-s", spec)
    assert log.exit_code == 0
    assert log.output.splitlines() == [
        "last event id: ev-0",
        "stream main: 2 events, oldest first",
        '      1  24 bytes, text: {"jsonrpc":"2.0","id":0}',
        "      2  256 bytes, base64: " + _b64(bytes(range(256)))[:100] + "...",
        "stream other: 1 event, oldest first",
        "      1  priming event (no data)",
    ]
    assert _b64(bytes(range(256))) in invoke("events", "s000000", "-s", spec, "--full").output
    as_json = json.loads(invoke("events", "s000000", "-s", spec, "--json").output)
    assert as_json["streams"][1] == {"id": "other", "events": [None]}
    assert as_json["streams"][0]["events"][1] == _b64(bytes(range(256)))


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_rm_count_and_purge(tmp_path: Path) -> None:
    spec = url(tmp_path / "rm.db")
    asyncio.run(seed(spec, 4, events_every=100))

    async def expired() -> None:  # deadlines an hour in the past
        clock = lambda: time.time() - 7200  # noqa: E731
        async with open_store(spec, ttl=3600, clock=clock) as store:
            for name in ("gone-1", "gone-2"):
                await store.create_session(Session(id=name, transport=TransportType.SSE))

    asyncio.run(expired())
    assert invoke("count", "-s", spec).output == "4\n"
    removed = invoke("rm", "s000000", "s000001", "-s", spec)
    assert removed.exit_code == 0
    assert removed.output == "deleted s000000\ndeleted s000001\n"
    assert invoke("count", "-s", spec).output == "2\n"
    line = assert_one_error_line(invoke("rm", "s000002", "s000000", "nope", "-s", spec))
    assert line == "sessionstore: error: sessions not found: 's000000', 'nope'"
    assert invoke("count", "-s", spec).output == "1\n"  # s000002 was deleted all the same
    assert invoke("purge", "-s", spec).output == "purged 2 expired sessions\n"
    assert invoke("purge", "-s", spec).output == "purged 0 expired sessions\n"


# -- export and import ----------------------------------------------------------------------------


def test_export_then_import_moves_every_session_whole(tmp_path: Path) -> None:
    source, target = url(tmp_path / "source.db"), url(tmp_path / "target.db")
    asyncio.run(seed(source, 40, namespace="tenant-a"))
    exported = tmp_path / "tenant-a.jsonl"
    result = invoke("export", str(exported), "-s", source, "-n", "tenant-a")
    assert result.exit_code == 0, result.output
    assert result.stderr == f"exported 40 sessions to {exported}\n"

    lines = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    header, sessions, end = lines[0], lines[1:-1], lines[-1]
    assert header["type"] == "header"
    assert header["format"] == EXPORT_FORMAT
    assert header["version"] == 1
    assert header["namespace"] == "tenant-a"
    assert header["backend"] == "sqlite"
    assert header["source"] == source
    assert datetime.fromisoformat(header["exported_at"]).tzinfo is not None
    assert end == {"type": "end", "sessions": 40}
    first = sessions[0]
    assert set(first) == {
        "type",
        "id",
        "version",
        "deadline_ms",
        "incarnation",
        "payload",
        "last_event_id",
        "streams",
    }
    assert first["streams"][1] == {"id": "other", "events": [None]}
    assert isinstance(sessions[1]["deadline_ms"], int)

    imported = invoke("import", str(exported), "-s", target)  # the file's namespace
    assert imported.exit_code == 0, imported.output
    assert "copied 40, already there 0" in imported.output
    assert "(namespace tenant-a)" in imported.output
    assert_same_sessions(
        asyncio.run(dumps_of(source, "tenant-a")), asyncio.run(dumps_of(target, "tenant-a"))
    )

    again = invoke("import", str(exported), "-s", target)
    assert again.exit_code == 0
    assert "copied 0, already there 40" in again.output
    elsewhere = invoke("import", str(exported), "-s", target, "-n", "copy")
    assert "copied 40" in elsewhere.output
    assert invoke("count", "-s", target, "-n", "copy").output == "40\n"


def test_export_to_stdout_import_from_stdin_and_progress(tmp_path: Path) -> None:
    source, target = url(tmp_path / "source.db"), url(tmp_path / "target.db")
    asyncio.run(seed(source, 7))
    exported = invoke("export", "-s", source, "--progress")
    assert exported.exit_code == 0
    assert "exporting" in exported.stderr  # the progress bar's label (stderr is no terminal)
    assert exported.stdout.splitlines()[-1] == '{"type":"end","sessions":7}'
    imported = invoke("import", "-", "-s", target, input=exported.stdout)
    assert imported.exit_code == 0, imported.output
    assert "copied 7" in imported.output
    assert_same_sessions(asyncio.run(dumps_of(source)), asyncio.run(dumps_of(target)))


def test_import_refuses_a_damaged_file_and_writes_nothing(tmp_path: Path) -> None:
    source, target = url(tmp_path / "source.db"), url(tmp_path / "target.db")
    asyncio.run(seed(source, 5))
    good = tmp_path / "good.jsonl"
    assert invoke("export", str(good), "-s", source).exit_code == 0
    lines = good.read_text(encoding="utf-8").splitlines(keepends=True)

    def refused(name: str, text: str) -> str:
        damaged = tmp_path / name
        damaged.write_text(text, encoding="utf-8")
        line = assert_one_error_line(invoke("import", str(damaged), "-s", target))
        assert invoke("count", "-s", target).output == "0\n"
        return line

    assert "cut short: no end line after 3 sessions" in refused("cut.jsonl", "".join(lines[:4]))
    assert "cut short" in refused("half.jsonl", "".join(lines)[: len("".join(lines)) // 2])
    assert "line 3: not a JSON object" in refused(
        "garbled.jsonl", "".join(lines[:2]) + "{garbage\n" + "".join(lines[3:])
    )
    assert "end line counts 9 sessions but 5" in refused(
        "count.jsonl", "".join(lines[:-1]) + '{"type":"end","sessions":9}\n'
    )
    assert "a line after the end line" in refused("more.jsonl", "".join(lines) + lines[1])
    newer = lines[0].replace('"version":1', '"version":2')
    assert "format version 2 by a newer sessionstore" in refused(
        "newer.jsonl", newer + "".join(lines[1:])
    )
    assert "not a sessionstore-export file" in refused("other.jsonl", '{"hello": 1}\n')
    assert "is empty" in refused("empty.jsonl", "")
    bad_payload = json.loads(lines[2])
    bad_payload["payload"] = _b64(b"\x92\x01\x80")  # a valid envelope of no valid session
    assert "session 2:" in refused(
        "payload.jsonl", lines[0] + lines[1] + json.dumps(bad_payload) + "\n" + "".join(lines[3:])
    )
    bad_b64 = json.loads(lines[2])
    bad_b64["streams"] = [{"id": "x", "events": ["!!!"]}]
    assert "not valid base64" in refused(
        "b64.jsonl", lines[0] + lines[1] + json.dumps(bad_b64) + "\n" + "".join(lines[3:])
    )


def test_import_from_stdin_keeps_what_came_before_the_damage(tmp_path: Path) -> None:
    source, target = url(tmp_path / "source.db"), url(tmp_path / "target.db")
    asyncio.run(seed(source, 5))
    lines = invoke("export", "-s", source).stdout.splitlines(keepends=True)
    result = invoke("import", "-", "-s", target, input="".join(lines[:4]))
    assert "<stdin> was cut short: no end line after 3 sessions" in assert_one_error_line(result)
    assert invoke("count", "-s", target).output == "3\n"
    rerun = invoke("import", "-", "-s", target, input="".join(lines))
    assert rerun.exit_code == 0
    assert "copied 2, already there 3" in rerun.output


def test_import_reports_conflicts_and_overwrites_nothing(tmp_path: Path) -> None:
    source, target = url(tmp_path / "source.db"), url(tmp_path / "target.db")
    asyncio.run(seed(source, 3, events_every=100))
    asyncio.run(seed(target, 1, events_every=100, prefix="s"))  # s000000 again
    asyncio.run(_bump(target, "s000000"))
    before = asyncio.run(dumps_of(target))["s000000"]
    exported = tmp_path / "x.jsonl"
    invoke("export", str(exported), "-s", source)
    result = invoke("import", str(exported), "-s", target)
    line = assert_one_error_line(result)
    assert "1 session of the target had the same id with another version or content" in line
    assert "'s000000'" in line
    assert "copied 2, already there 0, expired before they could be written 0, conflicts 1" in (
        result.stdout
    )
    assert asyncio.run(dumps_of(target))["s000000"] == before


async def _bump(spec: str, session_id: str) -> None:
    async with open_store(spec) as store:
        await store.modify_session(session_id, lambda s: s.metadata.update(bumped=True))


def test_export_does_not_leave_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "kept.jsonl"
    target.write_text("an older export\n", encoding="utf-8")
    result = invoke("export", str(target), "-s", "nosuch://x")
    assert_one_error_line(result)
    assert target.read_text(encoding="utf-8") == "an older export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.jsonl"]


def test_import_skips_sessions_that_expired_meanwhile(tmp_path: Path) -> None:
    spec = url(tmp_path / "s.db")
    asyncio.run(seed(spec, 2, events_every=100))
    lines = invoke("export", "-s", spec).stdout.splitlines()
    old = json.loads(lines[1])
    old["deadline_ms"] = 1_000  # 1970
    text = "\n".join([lines[0], json.dumps(old), *lines[2:]])
    result = invoke("import", "-", "-s", url(tmp_path / "t.db"), input=text + "\n")
    assert result.exit_code == 0, result.output
    assert "copied 1, already there 0, expired before they could be written 1" in result.output


# -- migrate --------------------------------------------------------------------------------------


def test_migrate_copies_everything_and_checks(tmp_path: Path) -> None:
    source, target = url(tmp_path / "a.db"), url(tmp_path / "b.db")
    asyncio.run(seed(source, 1200, namespace="tenant"))  # more than two chunks
    result = invoke(
        "migrate", "--from", source, "--to", target, "-n", "tenant", "--progress", "--sample", "50"
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"migrated {source} (namespace tenant) to {target} (namespace tenant)" in out
    assert (
        "copied 1200, already there 0, expired before they could be written 0, conflicts 0" in out
    )
    assert "the source holds 1200 sessions, the target 1200; 50 sampled sessions" in out
    assert "ok: every session checked arrived whole" in out
    assert "migrating" in result.stderr
    assert_same_sessions(
        asyncio.run(dumps_of(source, "tenant")), asyncio.run(dumps_of(target, "tenant"))
    )
    again = invoke("migrate", "--from", source, "--to", target, "-n", "tenant")
    assert again.exit_code == 0
    assert "copied 0, already there 1200" in again.output


def test_migrate_between_namespaces_and_with_backend_options(tmp_path: Path) -> None:
    spec = url(tmp_path / "a.db")
    asyncio.run(seed(spec, 10, namespace="old"))
    result = invoke(
        "migrate",
        "--from",
        spec,
        "--to",
        spec,
        "--from-namespace",
        "old",
        "--to-namespace",
        "new",
        "--from-option",
        "busy_timeout=2",
        "--to-option",
        "synchronous=full",
    )
    assert result.exit_code == 0, result.output
    assert_same_sessions(asyncio.run(dumps_of(spec, "old")), asyncio.run(dumps_of(spec, "new")))


def test_migrate_fails_on_conflicts_and_differences(tmp_path: Path) -> None:
    source, target = url(tmp_path / "a.db"), url(tmp_path / "b.db")
    asyncio.run(seed(source, 3, events_every=100))
    asyncio.run(seed(target, 1, events_every=100))
    asyncio.run(_bump(target, "s000000"))
    conflict = invoke("migrate", "--from", source, "--to", target)
    assert "1 session of the target had the same id" in assert_one_error_line(conflict)
    assert "conflicts 1" in conflict.stdout

    extra = url(tmp_path / "c.db")
    asyncio.run(seed(extra, 1, events_every=100, prefix="extra"))
    differs = invoke("migrate", "--from", source, "--to", extra)
    line = assert_one_error_line(differs)
    assert line == "sessionstore: error: the migration check found 1 difference (listed above)"
    assert "difference: the source holds 3 sessions, the target 4" in differs.stdout


def test_migrate_refuses_a_checkpoint_of_another_migration(tmp_path: Path) -> None:
    a, b, c = (url(tmp_path / f"{name}.db") for name in "abc")
    asyncio.run(seed(a, 3, events_every=100))
    checkpoint = tmp_path / "ckpt.json"
    checkpoint.write_text(
        json.dumps(
            {
                "format": "sessionstore-migrate-checkpoint",
                "source": a,
                "source_namespace": "default",
                "target": c,
                "target_namespace": "default",
                "last_id": "s000001",
                "handled": 2,
            }
        ),
        encoding="utf-8",
    )
    args = ["migrate", "--from", a, "--to", b, "--checkpoint", str(checkpoint)]
    assert "belongs to another migration" in assert_one_error_line(invoke(*args))
    checkpoint.write_text("nonsense", encoding="utf-8")
    assert "is not a sessionstore migration checkpoint" in assert_one_error_line(invoke(*args))


def test_migrate_resumes_from_a_checkpoint_whose_session_left_the_source(tmp_path: Path) -> None:
    source, target = url(tmp_path / "a.db"), url(tmp_path / "b.db")
    asyncio.run(seed(source, 5, events_every=100))
    checkpoint = tmp_path / "ckpt.json"
    checkpoint.write_text(
        json.dumps(
            {
                "format": "sessionstore-migrate-checkpoint",
                "source": source,
                "source_namespace": "default",
                "target": target,
                "target_namespace": "default",
                "last_id": "s000002-deleted",
                "handled": 3,
            }
        ),
        encoding="utf-8",
    )
    result = invoke("migrate", "--from", source, "--to", target, "--checkpoint", str(checkpoint))
    assert result.exit_code == 0, result.output
    assert "copied 5" in result.output
    assert not checkpoint.exists()


def _sessionstore(*args: str) -> subprocess.Popen[str]:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: install core (make .venv/.installed)"
    return subprocess.Popen(
        [str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As on a user's terminal: a test run started in the background (`make test &`) has
        # SIGINT ignored, the child would inherit that, and Ctrl-C would never reach it.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_migration_resumes_where_it_stopped(tmp_path: Path) -> None:
    """The installed script, in a subprocess: Ctrl-C (SIGINT) in the middle, then the same
    command again finishes the job, skipping what the checkpoint says is done."""
    source, target = url(tmp_path / "a.db"), url(tmp_path / "b.db")
    asyncio.run(seed(source, 20_000, events_every=7))
    checkpoint = tmp_path / "migrate.ckpt"
    command = ["migrate", "--from", source, "--to", target, "--checkpoint", str(checkpoint)]

    process = _sessionstore(*command)
    deadline = time.monotonic() + 30
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (out, err)
    assert err == "sessionstore: interrupted; run the same command again to resume\n"
    assert "Traceback" not in out + err
    saved = json.loads(checkpoint.read_text(encoding="utf-8"))
    assert saved["handled"] % 500 == 0 < saved["handled"] < 20_000
    assert saved["source"] == source

    process = _sessionstore(*command)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, (out, err)
    assert f"skipped (checkpoint) {saved['handled']}" in out
    assert "the source holds 20000 sessions, the target 20000" in out
    assert "ok: every session checked arrived whole" in out
    assert not checkpoint.exists()
    assert_same_sessions(asyncio.run(dumps_of(source)), asyncio.run(dumps_of(target)))


# -- check ----------------------------------------------------------------------------------------


def _rows(path: Path, query: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query, args).fetchall()


def test_check_runs_the_contract_suite_and_leaves_other_data_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check_on_fast_profile: bool
) -> None:
    """The whole suite through the command, on the suite's sessionstore-fast profile (the
    default profile's run on SQLite: `make contract`; this test on it: `make long`)."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # check writes nothing where it runs (no .hypothesis, no cache)
    database = tmp_path / "live.db"
    spec = url(database)
    asyncio.run(seed(spec, 20))
    asyncio.run(seed(spec, 5, namespace="tenant-b"))
    before = asyncio.run(dumps_of(spec)), asyncio.run(dumps_of(spec, "tenant-b"))

    result = invoke("check", spec)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"against {spec}:" in out
    for heading in ("1. serialization", "2. atomicity", "3. expiry", "4. isolation", "5. events"):
        assert f"\n{heading}: holds" in out
    assert "  passed   test_state_machine" in out
    # SQLite polls for changes: only the notification tests are skipped, each with its reason.
    assert "\nevent notifications: not checked (skipped)\n" in out
    assert out.count("lacks event_notifications: SQLite cannot tell") == 5
    assert " 0 failed, 5 skipped in " in out
    assert out.endswith("every guarantee checked holds\n")
    assert result.stderr == ""

    assert (asyncio.run(dumps_of(spec)), asyncio.run(dumps_of(spec, "tenant-b"))) == before
    # The scratch namespaces leave no session, stream or event behind...
    for table in ("sessions", "streams"):
        leftover = f"SELECT count(*) FROM {table} WHERE namespace NOT IN ('default', 'tenant-b')"
        assert _rows(database, leftover) == [(0,)]
    assert _rows(database, "SELECT count(*) FROM events") == _rows(
        database, "SELECT count(*) FROM events JOIN streams USING (handle)"
    )
    # ...nor a row in the backend's per-namespace counter table.
    counters = _rows(database, "SELECT namespace FROM session_counts")
    assert {ns for (ns,) in counters} <= {"default", "tenant-b"}
    assert list(workdir.iterdir()) == []


def test_check_says_which_guarantees_break(tmp_path: Path) -> None:
    """A memory store bounded to one session cannot keep the tests that need two."""
    result = invoke(
        "check",
        "memory",
        "-o",
        "max_sessions=1",
        "-k",
        "namespaces_never or batch_update_writes_all or batch_update_is_all or invalid_ids",
    )
    line = assert_one_error_line(result)
    assert line.startswith("sessionstore: error: ")
    assert "contract tests failed: the store does not keep 2. atomicity; 4. isolation" in line
    assert "\n2. atomicity: FAILS\n" in result.stdout
    assert "  FAILED   test_batch_update_writes_all: " in result.stdout
    assert "StoreFullError" in result.stdout


def test_check_fails_in_one_line_without_the_suite_or_a_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "no sessionstore backend named 'nosuch'" in assert_one_error_line(
        invoke("check", "nosuch://x")
    )
    assert "no contract test matches -k 'no_such_test'" in assert_one_error_line(
        invoke("check", "memory", "-k", "no_such_test")
    )
    monkeypatch.setitem(sys.modules, "sessionstore_contract", None)  # as if not installed
    line = assert_one_error_line(invoke("check", "memory"))
    assert line == (
        "sessionstore: error: the contract suite is not installed: "
        "pip install sessionstore-contract"
    )


# -- bench ----------------------------------------------------------------------------------------


def test_bench_reports_each_operation(tmp_path: Path) -> None:
    database = tmp_path / "bench.db"
    result = invoke("bench", url(database), "--ops", "300", "--concurrency", "4", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["store"] == url(database)
    assert summary["operations"] == 300
    assert summary["namespace"].startswith("bench-")
    assert list(summary["results"]) == list(OPERATIONS)
    for name, measured in summary["results"].items():
        assert measured["calls"] == (6 if name == "get_batch" else 300)
        assert measured["ops_per_second"] > 0
        assert 0 < measured["p50_ms"] <= measured["p95_ms"] <= measured["p99_ms"]
    raw = summary["raw_driver"]["get"]  # SQLite offers its driver's bare read
    assert raw["calls"] == 300
    assert 0 < raw["p50_ms"] <= raw["p95_ms"] <= raw["p99_ms"]
    ratio = summary["raw_driver_ratio"]["get"]
    assert ratio == round(raw["ops_per_second"] / summary["results"]["get"]["ops_per_second"], 2)
    assert "raw_driver_note" not in summary
    assert _rows(database, "SELECT count(*) FROM sessions") == [(0,)]  # cleared

    sqlite_text = invoke("bench", url(database), "--ops", "50").stdout.splitlines()
    assert sqlite_text[7].startswith("raw driver get ")
    assert sqlite_text[8].startswith("raw driver: get_session takes ")

    text = invoke("bench", "memory", "--ops", "50", "--batch-size", "10", "--progress")
    assert text.exit_code == 0, text.output
    rows = text.stdout.splitlines()
    assert rows[0] == "memory: 50 sessions, concurrency 1"
    assert [row.split()[0] for row in rows[2:7]] == list(OPERATIONS)
    assert rows[5].startswith("get_batch (10)")
    assert rows[-1] == "raw driver: not offered by this backend"  # memory has no driver
    assert (
        json.loads(invoke("bench", "memory", "--ops", "5", "--json").stdout)["raw_driver"] is None
    )
    assert "create" in text.stderr  # the live progress display

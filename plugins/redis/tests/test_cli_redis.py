"""The ``sessionstore`` command against real, throwaway Redis servers (see conftest.py: without
``redis-server`` these tests are skipped, and fail under ``CI=true``).

The command is driven through click's runner, as a user would from a shell. The backend-free and
SQLite tests of the command are in core/tests/test_cli.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from urllib.parse import quote

import redis
from click.testing import CliRunner, Result
from redis_servers import RedisServer, ServerFactory, free_port

from sessionstore import Session, SessionStatus, TransportType, open_store
from sessionstore.benchmark import OPERATIONS
from sessionstore.cli import cli

# `make test` migrates 20,000 sessions (a minute's work on two busy cores); `make long` sets
# SESSIONSTORE_MIGRATE_SESSIONS=100000, the size the migration was first proven at.
SESSIONS = int(os.environ.get("SESSIONSTORE_MIGRATE_SESSIONS", "20000"))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="sessionstore")


def assert_one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


async def seed_sqlite(spec: str, count: int) -> None:
    """``count`` sessions in a SQLite file: half with a deadline two hours out, a tenth updated,
    one in fifty with two streams (data and a priming event) and a last event id."""
    async with (
        open_store(spec, synchronous="off") as forever,
        open_store(spec, ttl=7200, synchronous="off") as timed,
    ):
        for index in range(count):
            store = timed if index % 2 else forever
            session = Session(
                id=f"s{index:07d}",
                transport=list(TransportType)[index % 3],
                status=list(SessionStatus)[index % 4],
                metadata={"index": index},
            )
            await store.create_session(session)
            if index % 10 == 0:
                session.metadata = {"index": -index, "updated": True}
                await store.update_session(session)
            if index % 50 == 0:
                await store.append_event(session.id, "main", b"data-%d" % index)
                await store.append_event(session.id, "side", None)
                await store.append_event(session.id, "main", bytes([index % 256]) * 40)
                await store.store_last_event_id(session.id, f"{index}-3")


async def assert_identical(first: str, second: str) -> int:
    """Both stores hold the same sessions, each whole (record, last event id, every stream's
    events in order); compared in step, a page at a time. Returns how many."""
    async with open_store(first) as a, open_store(second) as b:
        theirs = aiter(b.iter_dumps())
        compared = 0
        async for mine in a.iter_dumps():
            other = await anext(theirs)
            assert other == mine
            compared += 1
        assert await anext(theirs, None) is None
        return compared


def test_migrate_many_sessions_sqlite_to_redis_and_back_keeps_everything(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    started = time.monotonic()
    original, final = f"sqlite:///{tmp_path / 'original.db'}", f"sqlite:///{tmp_path / 'final.db'}"
    asyncio.run(seed_sqlite(original, SESSIONS))
    seeded = time.monotonic()

    there = invoke("migrate", "--from", original, "--to", redis_server.url)
    assert there.exit_code == 0, there.output
    assert f"copied {SESSIONS}, already there 0, expired before they could be written 0" in (
        there.stdout
    )
    assert f"the source holds {SESSIONS} sessions, the target {SESSIONS}; 100 sampled" in (
        there.stdout
    )
    assert "ok: every session checked arrived whole" in there.stdout
    copied_there = time.monotonic()

    back = invoke("migrate", "--from", redis_server.url, "--to", final)
    assert back.exit_code == 0, back.output
    assert f"copied {SESSIONS}, already there 0" in back.stdout
    assert "ok: every session checked arrived whole" in back.stdout
    copied_back = time.monotonic()

    assert asyncio.run(assert_identical(original, final)) == SESSIONS
    print(
        f"seed {seeded - started:.1f} s, SQLite -> Redis {copied_there - seeded:.1f} s, "
        f"Redis -> SQLite {copied_back - copied_there:.1f} s, "
        f"comparison {time.monotonic() - copied_back:.1f} s"
    )


def _snapshot(client: redis.Redis) -> dict[bytes, bytes | None]:
    return {key: client.dump(key) for key in client.scan_iter(count=1000)}


def test_check_touches_nothing_but_its_scratch_namespaces(
    tmp_path: Path, redis_server: RedisServer, check_on_fast_profile: bool
) -> None:
    """The whole suite through the command, on the suite's sessionstore-fast profile (the
    default profile's runs on Redis: test_redis_contract.py; this test on it: `make long`)."""
    client = redis.Redis.from_url(redis_server.url)
    client.set("other-app:config", "kept")
    client.hset("other-app:users", mapping={"a": "1"})
    asyncio.run(_seed_redis(redis_server.url, "default"))
    asyncio.run(_seed_redis(redis_server.url, "contract"))  # a namespace with a tempting name
    before = _snapshot(client)

    result = invoke("check", redis_server.url)
    assert result.exit_code == 0, result.output
    assert "every guarantee checked holds" in result.stdout
    assert "\n4. isolation: holds" in result.stdout

    after = _snapshot(client)
    assert {key: after.get(key) for key in before} == before  # every key as it was
    assert set(after) == set(before)  # the scratch namespaces left no key behind
    client.close()


async def _seed_redis(spec: str, namespace: str) -> None:
    async with open_store(spec, namespace=namespace) as store:
        for index in range(5):
            await store.create_session(Session(id=f"keep-{index}", transport=TransportType.HTTP))
            await store.append_event(f"keep-{index}", "main", b"kept")


def test_passwords_are_never_printed(tmp_path: Path, make_redis_server: ServerFactory) -> None:
    password = "s3cr#t/p@ss:word"
    server = make_redis_server(password=password)
    wrong = server.url_for(password="not-" + password)
    forms = (password, quote(password, safe=""), "not-" + password)

    def clean(result: Result) -> Result:
        for form in forms:
            assert form not in result.output
        return result

    assert clean(invoke("count", "--store", server.url)).output == "0\n"
    redacted = f"redis://:***@127.0.0.1:{server.port}"
    assert f"capabilities of {redacted}" in clean(invoke("backends", "--store", server.url)).output
    line = assert_one_error_line(clean(invoke("count", "--store", wrong)))
    assert line.startswith("sessionstore: error: ")

    sqlite = f"sqlite:///{tmp_path / 's.db'}"
    asyncio.run(_seed_sqlite_few(sqlite))
    migrated = clean(invoke("migrate", "--from", sqlite, "--to", server.url))
    assert migrated.exit_code == 0, migrated.output
    assert f"to {redacted} (namespace default)" in migrated.output
    exported = clean(invoke("export", "--store", server.url))
    assert json.loads(exported.stdout.splitlines()[0])["source"] == redacted
    bench = clean(invoke("bench", server.url, "--ops", "20", "--json"))
    assert json.loads(bench.stdout)["store"] == redacted
    check = clean(invoke("check", server.url, "-k", "invalid_ids", "--verbose"))
    assert check.exit_code == 0, check.output
    assert f"against {redacted}: 1 tests" in check.output


async def _seed_sqlite_few(spec: str) -> None:
    async with open_store(spec) as store:
        for index in range(3):
            await store.create_session(Session(id=f"few-{index}", transport=TransportType.STDIO))


def test_an_unreachable_server_is_one_line() -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    for args in (
        ("count", "--store", down, "-o", "timeout=1"),
        ("ls", "--store", down, "-o", "timeout=1"),
        ("migrate", "--from", down, "--to", "memory", "--from-option", "timeout=1"),
        ("bench", down, "-o", "timeout=1"),
    ):
        line = assert_one_error_line(invoke(*args))
        assert line.startswith("sessionstore: error: "), line
        assert f"127.0.0.1:{down.rsplit(':', 1)[1].split('/')[0]}" in line


def test_bench_against_redis_clears_its_namespace(redis_url: str) -> None:
    result = invoke("bench", redis_url, "--ops", "400", "--concurrency", "16", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert list(summary["results"]) == list(OPERATIONS)
    assert summary["results"]["get_batch"]["calls"] == 8
    assert summary["raw_driver"]["get"]["calls"] == 400  # redis-py's GET of the record alone
    assert summary["raw_driver_ratio"]["get"] > 0
    client = redis.Redis.from_url(redis_url)
    namespace = summary["namespace"]
    left = [key.decode() for key in client.scan_iter(match=f"*{{{namespace}/*", count=1000)]
    assert left == []
    client.close()

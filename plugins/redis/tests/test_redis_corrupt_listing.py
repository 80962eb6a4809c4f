"""Listings on Redis that go on past records that cannot be decoded (issue 14, item 9).

Two kinds of damage, both written with the driver as a foreign writer would: a record whose
payload is garbage behind a valid header (the core finds it when it decodes), and a value that is
not a sessionstore record at all (the backend cannot even read its version: it puts the error in
the page, per the session_page hookspec, instead of failing the page). The memory and SQLite side
is in core/tests/test_corrupt_listing.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from sessionstore import CorruptRecordError, Session, TransportType, open_store
from sessionstore.cli import cli
from sessionstore.transfer import verify_export
from sessionstore_redis.layout import HEADER_SIZE, Layout

GOOD = ["a-good", "c-good", "e-good"]
BAD_PAYLOAD = "b-bad-payload"
FOREIGN = "d-foreign-value"


@pytest.fixture
def sync_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(params=[1, 4], ids=["one-shard", "four-shards"])
def damaged(
    request: pytest.FixtureRequest, redis_url: str, sync_client: redis.Redis
) -> tuple[str, str, int]:
    """``(url, namespace, shards)`` of a namespace holding ``GOOD``, a record with a garbage
    payload and a key holding a value that is no record."""
    namespace = f"t{uuid.uuid4().hex[:12]}"
    shards: int = request.param

    async def create() -> None:
        async with open_store(redis_url, namespace=namespace, shards=shards) as store:
            for session_id in [*GOOD, BAD_PAYLOAD, FOREIGN]:
                await store.create_session(Session(id=session_id, transport=TransportType.HTTP))

    asyncio.run(create())
    layout = Layout("sessionstore", namespace, shards)
    key = layout.record_key(BAD_PAYLOAD)
    value = sync_client.get(key)
    assert isinstance(value, bytes)
    sync_client.set(key, value[:HEADER_SIZE] + b"\x93garbage")
    sync_client.set(layout.record_key(FOREIGN), b"not a sessionstore record")
    return redis_url, namespace, shards


async def test_listings_stop_at_an_unreadable_record_by_default(
    damaged: tuple[str, str, int],
) -> None:
    url, namespace, shards = damaged
    async with open_store(url, namespace=namespace, shards=shards) as store:
        with pytest.raises(CorruptRecordError, match=f"{BAD_PAYLOAD}|{FOREIGN}"):
            await store.list_sessions()
        with pytest.raises(CorruptRecordError, match=f"{BAD_PAYLOAD}|{FOREIGN}"):
            [d async for d in store.iter_dumps()]


async def test_listings_go_on_past_unreadable_records_of_both_kinds(
    damaged: tuple[str, str, int],
) -> None:
    url, namespace, shards = damaged
    async with open_store(url, namespace=namespace, shards=shards, page_size=2) as store:
        corrupt: list[CorruptRecordError] = []
        listed = sorted(s.id for s in await store.list_sessions(on_corrupt=corrupt.append))
        assert listed == GOOD
        assert sorted(e.session_id for e in corrupt) == [BAD_PAYLOAD, FOREIGN]
        assert any("not a sessionstore record" in e.reason for e in corrupt)
        corrupt.clear()
        dumped = sorted([d.record.id async for d in store.iter_dumps(on_corrupt=corrupt.append)])
        assert dumped == GOOD
        assert sorted(e.session_id for e in corrupt) == [BAD_PAYLOAD, FOREIGN]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="sessionstore")


def test_ls_and_export_go_on_name_the_unreadable_records_and_fail(
    damaged: tuple[str, str, int], tmp_path: Path
) -> None:
    url, namespace, shards = damaged
    common = ["--store", url, "-n", namespace, "-o", f"shards={shards}"]
    listed = invoke("ls", *common, "--json")
    assert listed.exit_code == 1, listed.output
    objects = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(o["id"] for o in objects if "id" in o) == GOOD
    assert sorted(o["corrupt"]["id"] for o in objects if "corrupt" in o) == [BAD_PAYLOAD, FOREIGN]
    assert "2 stored records could not be read" in listed.stderr.splitlines()[-1]

    target = tmp_path / "backup.jsonl"
    exported = invoke("export", str(target), *common)
    assert exported.exit_code == 1, exported.output
    for session_id in (BAD_PAYLOAD, FOREIGN):
        assert f"skipped: stored record of session {session_id!r}" in exported.stderr
    _, count = verify_export(target.read_text().splitlines(keepends=True), name="backup")
    assert count == len(GOOD)

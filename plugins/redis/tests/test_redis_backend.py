"""The Redis backend against real redis-server processes: data layout, atomicity, expiry, auth,
TLS, failures. The contract suite runs separately (test_redis_contract.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot
from redis_servers import RedisServer, ServerFactory

from sessionstore import (
    Capability,
    ConfigurationError,
    ConflictError,
    CorruptRecordError,
    EventNotFoundError,
    Session,
    SessionNotFoundError,
    StoreUnavailableError,
    TransportType,
    open_store,
)
from sessionstore_redis.connection import parse_spec


def fresh_namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def session(session_id: str | None = None, **metadata: object) -> Session:
    if session_id is None:
        return Session(transport=TransportType.HTTP, metadata=dict(metadata))
    return Session(id=session_id, transport=TransportType.HTTP, metadata=dict(metadata))


@pytest.fixture
def sync_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


# -- specs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "cluster", "tls", "nodes", "db", "user", "password"),
    [
        ("redis", False, False, (("127.0.0.1", 6379),), 0, None, None),
        ("redis://h", False, False, (("h", 6379),), 0, None, None),
        ("redis://h:7000/3", False, False, (("h", 7000),), 3, None, None),
        ("rediss://:s%40cret@h:6380", False, True, (("h", 6380),), 0, None, "s@cret"),
        ("redis://alice:pw@[::1]:7001/0", False, False, (("::1", 7001),), 0, "alice", "pw"),
        ("redis+cluster://a:1,b:2", True, False, (("a", 1), ("b", 2)), 0, None, None),
        ("rediss+cluster://u:p4ss-w0rd@a:1/", True, True, (("a", 1),), 0, "u", "p4ss-w0rd"),
    ],
)
def test_spec_forms(
    spec: str,
    cluster: bool,
    tls: bool,
    nodes: tuple[tuple[str, int], ...],
    db: int,
    user: str | None,
    password: str | None,
) -> None:
    endpoint = parse_spec(spec)
    assert (endpoint.cluster, endpoint.tls, endpoint.nodes, endpoint.db) == (
        cluster,
        tls,
        nodes,
        db,
    )
    assert (endpoint.username, endpoint.password) == (user, password)
    if password:
        assert password not in repr(endpoint)
        assert password not in endpoint.display


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("redis://a:1,b:2", "several hosts"),
        ("redis+cluster://a:1/2", "only database 0"),
        ("redis://h/x", "must be a number"),
        ("redis://h:99999", "bad port"),
        ("redis://h?password=topsecret", "keywords"),
        ("redis://", "names no host"),
    ],
)
def test_bad_specs_are_refused_by_name(spec: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint) as info:
        open_store(spec)
    assert "topsecret" not in str(info.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("timeout", 0),
        ("timeout", "5"),
        ("shards", 0),
        ("key_prefix", "a{b}"),
        ("expiry_grace", -1),
        ("max_connections", 0),
        ("tls_ca_file", "/tmp/ca.pem"),
    ],
)
def test_bad_options_are_refused_by_name(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        open_store("redis://127.0.0.1:1", **{option: value})


# -- layout -----------------------------------------------------------------------------------


async def test_every_key_of_a_session_is_in_one_slot_under_the_namespace_prefix(
    redis_url: str, sync_client: redis.Redis
) -> None:
    namespace = fresh_namespace()
    strange = "a{b}c:*?[x]%\\"
    async with open_store(redis_url, namespace=namespace, ttl=60) as store:
        await store.create_session(session(strange))
        await store.store_last_event_id(strange, "ev-1")
        await store.append_event(strange, "stream-1", b"one")
        keys = sorted(
            k.decode() for k in sync_client.scan_iter(match=f"sessionstore:{{{namespace}/*")
        )
    assert keys == [
        f"sessionstore:{{{namespace}/0}}:e:{strange}",
        f"sessionstore:{{{namespace}/0}}:h",
        f"sessionstore:{{{namespace}/0}}:i",
        f"sessionstore:{{{namespace}/0}}:layout",
        f"sessionstore:{{{namespace}/0}}:n",
        f"sessionstore:{{{namespace}/0}}:s:{strange}",
    ]
    assert len({key_slot(k.encode()) for k in keys}) == 1


async def test_sixteen_shards_spread_sessions_and_keep_each_in_one_slot(
    redis_url: str, sync_client: redis.Redis
) -> None:
    namespace = fresh_namespace()
    async with open_store(redis_url, namespace=namespace, shards=16) as store:
        assert Capability.ATOMIC_BATCH_UPDATE in store.capabilities
        ids = [f"s{n}" for n in range(200)]
        for session_id in ids:
            await store.create_session(session(session_id))
            await store.append_event(session_id, "x", b"e")
        assert await store.count_sessions() == 200
        assert sorted(s.id for s in await store.list_sessions()) == sorted(ids)
        assert [s.id for s in await store.get_sessions_batch(ids[::-1])] == ids[::-1]
    hash_tags = set()
    for session_id in ids:
        tagged = [
            k for k in sync_client.scan_iter(match=f"sessionstore:{{{namespace}/*:{session_id}")
        ]
        assert len(tagged) == 2  # record and events
        assert len({key_slot(k) for k in tagged}) == 1
        hash_tags.add(tagged[0][tagged[0].index(b"{") : tagged[0].index(b"}") + 1])
    # 16 hash tags, so 16 slots at most: two tags may share a slot (CRC16 collisions, about one
    # namespace in a thousand), so counting distinct slots would fail now and then.
    assert len(hash_tags) == 16, hash_tags


async def test_a_namespace_refuses_a_client_with_another_shard_count(redis_url: str) -> None:
    namespace = fresh_namespace()
    async with open_store(redis_url, namespace=namespace) as store:
        await store.create_session(session("one"))
    async with open_store(redis_url, namespace=namespace, shards=4) as other:
        with pytest.raises(ConfigurationError, match="shards=1"):
            await other.get_session("one")


async def test_compare_and_set_is_one_evalsha_and_never_watch_or_multi(
    redis_url: str, sync_client: redis.Redis
) -> None:
    async with open_store(redis_url, namespace=fresh_namespace()) as store:
        created = await store.create_session(session(n=0))
        await store.update_session(created)  # the first call may load the script (NOSCRIPT)
        before = command_calls(sync_client)
        for n in range(1, 11):
            created.metadata = {"n": n}
            await store.update_session(created)
        after = command_calls(sync_client)
    assert after.get("evalsha", 0) - before.get("evalsha", 0) == 10
    for command in ("watch", "multi", "exec", "keys"):
        assert after.get(command, 0) == before.get(command, 0), command


async def test_a_flushed_script_cache_is_reloaded(redis_url: str, sync_client: redis.Redis) -> None:
    async with open_store(redis_url, namespace=fresh_namespace()) as store:
        created = await store.create_session(session())
        sync_client.script_flush()
        created.metadata = {"after": "flush"}
        assert (await store.update_session(created)).version == 2
        assert (await store.get_session(created.id)).metadata == {"after": "flush"}


async def test_concurrent_appends_share_round_trips_and_each_get_their_own_id(
    redis_url: str, sync_client: redis.Redis
) -> None:
    """While one append is on the wire, the others queue and go out in one pipeline: every
    append still gets its own id and outcome, even when the script cache was flushed."""
    async with open_store(redis_url, namespace=fresh_namespace()) as store:
        sessions = [(await store.create_session(session())).id for _ in range(4)]
        cursors = {
            (s, f"stream-{k}"): await store.append_event(s, f"stream-{k}", None)
            for s in sessions
            for k in range(3)
        }
        sync_client.script_flush()  # the pipelined calls meet NOSCRIPT and are run again
        calls = [(sessions[i % 4], f"stream-{i % 3}", f"event {i}".encode()) for i in range(120)]
        appends = [store.append_event(*call) for call in calls]
        appends.insert(60, store.append_event("no-such-session", "stream-0", b"lost"))
        before = sync_client.info("stats")["total_connections_received"]
        outcomes = await asyncio.gather(*appends, return_exceptions=True)
        assert isinstance(outcomes.pop(60), SessionNotFoundError)
        assert all(isinstance(o, str) for o in outcomes), outcomes
        assert len(set(outcomes)) == 120
        # Queued appends share one connection (a pipeline), not one connection each.
        opened = sync_client.info("stats")["total_connections_received"] - before
        assert opened <= 2, opened
        for (session_id, stream), cursor in cursors.items():
            _, replayed = await store.replay_events_after(cursor, session_id=session_id)
            expected = {data for s, st, data in calls if (s, st) == (session_id, stream)}
            assert {e.data for e in replayed} == expected


async def test_native_ttls_follow_the_deadline_plus_grace(
    redis_url: str, sync_client: redis.Redis
) -> None:
    namespace = fresh_namespace()
    async with open_store(redis_url, namespace=namespace, ttl=30, expiry_grace=5) as store:
        created = await store.create_session(session("t"))
        await store.append_event("t", "s", b"x")
        base = f"sessionstore:{{{namespace}/0}}:"
        for key in (f"{base}s:t", f"{base}e:t"):
            assert 34_000 < sync_client.pttl(key) <= 35_000, key
        await store.update_session(created)
        assert 34_000 < sync_client.pttl(f"{base}e:t") <= 35_000
    async with open_store(redis_url, namespace=namespace) as forever:
        await forever.create_session(session("f"))
        assert sync_client.pttl(f"{base}s:f") == -1  # no ttl: no expiry


async def test_expired_sessions_leave_counts_and_lists_and_purge_cleans_the_index(
    redis_url: str, sync_client: redis.Redis
) -> None:
    now = [1_700_000_000.0]
    namespace = fresh_namespace()
    async with open_store(redis_url, namespace=namespace, ttl=10, clock=lambda: now[0]) as store:
        for n in range(30):
            await store.create_session(session(f"old{n}"))
        now[0] += 5
        for n in range(5):
            await store.create_session(session(f"new{n}"))
        now[0] += 6  # the first 30 expired
        before = command_calls(sync_client)
        assert await store.count_sessions() == 5
        assert sorted(s.id for s in await store.list_sessions()) == [f"new{n}" for n in range(5)]
        assert await store.get_sessions_batch(["old1", "new1"]) == [await store.get_session("new1")]
        index = f"sessionstore:{{{namespace}/0}}:"
        # Redis dropped one expired record itself: its index entries alone remain, and purge
        # removes and counts them, so the dry run's count does too.
        assert sync_client.delete(f"{index}s:old0") == 1
        assert await store.count_expired() == 30
        assert await store.purge_expired() == 30
        assert await store.count_expired() == 0
        after = command_calls(sync_client)
        assert sync_client.zcard(f"{index}i") == sync_client.zcard(f"{index}n") == 5
        assert not sync_client.exists(f"{index}s:old3")
    for command in ("keys", "scan"):
        assert after.get(command, 0) == before.get(command, 0), command


async def test_a_value_that_is_not_a_record_is_reported_corrupt(
    redis_url: str, sync_client: redis.Redis
) -> None:
    namespace = fresh_namespace()
    async with open_store(redis_url, namespace=namespace) as store:
        await store.create_session(session("victim"))
        sync_client.set(f"sessionstore:{{{namespace}/0}}:s:victim", b"not a record")
        with pytest.raises(CorruptRecordError, match="victim"):
            await store.get_session("victim")


async def test_event_ids_name_their_session_and_foreign_ones_replay_nothing(
    redis_url: str,
) -> None:
    async with open_store(redis_url, namespace=fresh_namespace(), event_retention=3) as store:
        await store.create_session(session("a"))
        await store.create_session(session("b"))
        first = await store.append_event("a", "s", b"1")
        for n in range(2, 6):
            await store.append_event("a", "s", str(n).encode())
        with pytest.raises(EventNotFoundError) as evicted:
            await store.replay_events_after(first)
        assert evicted.value.evicted
        third = first.replace("-1-", "-3-", 1)
        stream, events = await store.replay_events_after(third, session_id="a")
        assert (stream, [e.data for e in events]) == ("s", [b"4", b"5"])
        with pytest.raises(EventNotFoundError):
            await store.replay_events_after(third, session_id="b")
        forged = third.removesuffix("-a") + "-b"
        with pytest.raises(EventNotFoundError):
            await store.replay_events_after(forged)


# -- several processes ----------------------------------------------------------------------


def test_four_processes_incrementing_one_session_end_at_exactly_1000(redis_url: str) -> None:
    import subprocess
    import sys
    from pathlib import Path

    namespace = fresh_namespace()
    worker = str(Path(__file__).with_name("redis_workers.py"))

    async def setup() -> None:
        async with open_store(redis_url, namespace=namespace) as store:
            await store.create_session(session("counter", count=0))

    asyncio.run(setup())
    workers = [
        subprocess.Popen(
            [sys.executable, worker, "increment", redis_url, namespace, "250"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for process in workers:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err

    async def check() -> Session:
        async with open_store(redis_url, namespace=namespace) as store:
            return await store.get_session("counter")

    final = asyncio.run(check())
    assert final.metadata == {"count": 1000}
    assert final.version == 1001


# -- authentication and TLS -----------------------------------------------------------------


async def test_password_from_the_url_and_never_in_a_message(
    make_redis_server: ServerFactory,
) -> None:
    secret = "pässwörd-1x9!"
    server = make_redis_server(password=secret)
    async with open_store(server.url_for(password=secret)) as store:
        assert (await store.create_session(session("in"))).version == 1
        assert secret not in repr(store)
    wrong = open_store(server.url_for(password="wrong-" + secret))
    with pytest.raises(StoreUnavailableError, match="refused the credentials") as info:
        await wrong.get_session("in")
    assert secret not in str(info.value)
    assert secret not in repr(wrong)
    await wrong.aclose()


async def test_an_acl_user_from_the_url(make_redis_server: ServerFactory) -> None:
    server = make_redis_server(acl_users={"proxy": "proxy-secret"})
    async with open_store(server.url_for(user="proxy", password="proxy-secret")) as store:
        await store.create_session(session("acl"))
        assert (await store.get_session("acl")).id == "acl"
    bad = open_store(server.url_for(user="proxy", password="nope"))
    with pytest.raises(StoreUnavailableError) as info:
        await bad.count_sessions()
    assert "nope" not in str(info.value)
    await bad.aclose()


async def test_an_acl_user_lacking_a_command_gets_store_unavailable_naming_it(
    make_redis_server: ServerFactory,
) -> None:
    server = make_redis_server(acl_users={"proxy": "proxy-secret", "admin": "admin-secret"})
    with redis.Redis.from_url(server.url_for(user="admin", password="admin-secret")) as admin:
        admin.execute_command("ACL", "SETUSER", "proxy", "-evalsha")
    store = open_store(server.url_for(user="proxy", password="proxy-secret"))
    with pytest.raises(StoreUnavailableError, match="lacks a permission") as info:
        await store.create_session(session("acl"))
    assert "proxy-secret" not in str(info.value)
    await store.aclose()


async def test_tls_with_the_test_ca(make_redis_server: ServerFactory) -> None:
    server = make_redis_server(tls=True)
    assert server.url.startswith("rediss://")
    async with open_store(server.url, tls_ca_file=server.ca_file) as store:
        await store.create_session(session("tls"))
        assert (await store.get_session("tls")).id == "tls"
    untrusted = open_store(server.url, timeout=3)
    with pytest.raises(StoreUnavailableError):
        await untrusted.get_session("tls")
    await untrusted.aclose()


# -- failures -------------------------------------------------------------------------------


async def test_an_unreachable_server_fails_fast_with_store_unavailable() -> None:
    from redis_servers import free_port

    store = open_store(f"redis://:hunter2@127.0.0.1:{free_port()}/0", timeout=1)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        await store.get_session("x")
    assert time.monotonic() - started < 2
    assert "hunter2" not in str(info.value)
    assert "redis://:***@127.0.0.1" in str(info.value)
    await store.aclose()


class StallingProxy:
    """A TCP proxy in front of a server that can turn into a network blackhole: while stalled,
    nothing is forwarded on any connection, open or new; the connections that saw the stall
    stay silent for good, as half-open TCP connections do, and new ones work once healed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stalled = False
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> StallingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if self.stalled:
                    await asyncio.Event().wait()  # this connection is silent from now on
                dst.write(data)
                await dst.drain()

        with contextlib.suppress(Exception):
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_appends_recover_once_a_stalled_network_heals(redis_server: RedisServer) -> None:
    """Appends queued behind one that went into a blackhole fail by the deadline, and once the
    network heals the next ones work: nothing stays wedged behind the silent connections."""
    async with (
        StallingProxy(redis_server.port) as proxy,
        open_store(proxy.url, timeout=0.5) as store,
    ):
        session_id = (await store.create_session(session("stall"))).id
        await store.append_event(session_id, "s", b"before")
        proxy.stalled = True
        # At once: one goes out alone, the others queue behind it for one pipeline.
        appends = [store.append_event(session_id, "s", b"lost") for _ in range(3)]
        outcomes = await asyncio.gather(*appends, return_exceptions=True)
        assert all(isinstance(o, StoreUnavailableError) for o in outcomes), outcomes
        await asyncio.sleep(1.5)  # the queued pipeline's own deadline passes too
        proxy.stalled = False
        for _ in range(3):
            assert isinstance(await store.append_event(session_id, "s", b"after"), str)


async def test_a_hung_server_times_out_within_the_bound(redis_server: RedisServer) -> None:
    async with open_store(redis_server.url, timeout=0.5) as store:
        await store.create_session(session("h"))
        pid = redis_server.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="timed out"):
                await store.get_session("h")
            assert time.monotonic() - started < 2
        finally:
            os.kill(pid, signal.SIGCONT)


async def test_a_server_killed_mid_run_is_unavailable_then_recovers(
    redis_server: RedisServer,
) -> None:
    async with open_store(redis_server.url, timeout=1) as store:
        created = await store.create_session(session("k", n=1))
        redis_server.kill()
        for call in (store.get_session("k"), store.update_session(created), store.count_sessions()):
            with pytest.raises(StoreUnavailableError):
                await call
        redis_server.restart()  # an empty server: nothing was persisted
        with pytest.raises(SessionNotFoundError):
            await store.get_session("k")
        again = await store.create_session(session("k", n=2))
        again.metadata = {"n": 3}
        assert (await store.update_session(again)).version == 2
        with pytest.raises(ConflictError):
            await store.update_session(again.model_copy(update={"version": 1}))


async def test_a_server_killed_during_operations_fails_them_promptly(
    redis_server: RedisServer,
) -> None:
    async with open_store(redis_server.url, timeout=2) as store:
        await store.create_session(session("warm"))

        async def write(n: int) -> str:
            created = await store.create_session(session(f"w{n}", pad="x" * 2000))
            for _ in range(20):
                created = await store.update_session(created)
            return created.id

        asyncio.get_running_loop().call_later(0.05, redis_server.kill)
        started = time.monotonic()
        results = await asyncio.gather(*(write(n) for n in range(200)), return_exceptions=True)
        elapsed = time.monotonic() - started
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures, "the kill came after every write: nothing was interrupted"
    assert all(isinstance(f, StoreUnavailableError) for f in failures), failures[:3]
    assert elapsed < 4  # bounded by the timeout, never a hang


async def test_raw_get_is_the_same_get_with_the_driver_alone(redis_url: str) -> None:
    async with open_store(redis_url, namespace=fresh_namespace()) as store:
        assert store.offers_raw_get
        created = await store.create_session(session("raw"))
        raw = await store.raw_get("raw")
        assert isinstance(raw, bytes)
        assert raw[0] == 1
        assert raw.endswith((await store.dump_session("raw")).record.payload)
        assert created.version == 1
        assert await store.raw_get("absent") is None


async def test_clear_leaves_no_key_and_handles_are_not_handed_out_again(
    redis_url: str, sync_client: redis.Redis
) -> None:
    namespace = fresh_namespace()
    async with open_store(redis_url, namespace=namespace) as store:
        await store.create_session(session("c"))
        before = await store.append_event("c", "s", b"old")
        await store.clear()
        assert list(sync_client.scan_iter(match=f"sessionstore:{{{namespace}/*")) == []
        await store.create_session(session("c"))  # the same id, the same stream name
        after = await store.append_event("c", "s", b"new")
        assert after != before
        with pytest.raises(EventNotFoundError):
            await store.replay_events_after(before)
        assert sync_client.get(f"sessionstore:{{{namespace}/0}}:layout") is not None  # reclaimed

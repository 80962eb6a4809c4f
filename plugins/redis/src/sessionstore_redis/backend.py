"""The Redis backend: sessions shared by every host that reaches one server or one cluster.

A read is one ``GET`` (or one ``MGET`` per shard for a batch) decoded here; every write is one
Lua script run by ``EVALSHA``, so compare-and-set is a single round trip with no WATCH/MULTI
loop. On one server the commands go through :mod:`.direct` (redis-py's connections without its
per-command bookkeeping); on a cluster through :mod:`.cluster`, which sends each to its slot's
master over the same kind of connections; concurrent commands to a server share round trips
(:mod:`.coalescing`). With ``wait_replicas``, a write's ``WAIT`` follows it on a connection of its
own, in the same round trip. Keys, the record layout and why every key of a session
shares a hash tag are described in :mod:`.layout`; the scripts in :mod:`.scripts`.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import re
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, NoScriptError

from sessionstore import (
    Capability,
    ConfigurationError,
    ConflictError,
    CorruptRecordError,
    Event,
    EventNotFoundError,
    SessionDump,
    SessionExistsError,
    SessionNotFoundError,
    SessionRecord,
    StoreClosedError,
    StoreUnavailableError,
    hookimpl,
)
from sessionstore.watching import EventWatch

from . import scripts
from .cluster import ClusterCommands
from .connection import UNAVAILABLE, Endpoint, open_client, parse_spec, unavailable
from .deadlines import Interruption, OperationDeadlines
from .direct import DirectCommands
from .layout import Layout, pack_record, pack_u64, unpack_record
from .notifications import RedisNotifications, connection_maker
from .scripts import Script
from .spinning import SPIN_LIMIT

__all__ = ["RedisBackend", "create_backend"]

DEFAULT_CLUSTER_SHARDS = 16
DEFAULT_MAX_CONNECTIONS = 100  # per node; redis-py's own default, made ours so it cannot move
_BATCH = 1000  # ids per purge or clear script call: bounded work per call, few round trips
_EVENT_ID = re.compile(r"([1-9][0-9]{0,17})-([1-9][0-9]{0,17})-([!-~]{1,255})\Z")
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")

T = TypeVar("T")
Hook = Callable[..., Coroutine[Any, Any, T]]


def _redis_hook(method: Hook[T]) -> Hook[T]:
    """Mark a hook; check the namespace's layout on first use; map driver failures to ours."""

    @functools.wraps(method)
    async def hook(self: RedisBackend, *args: Any) -> T:
        if self._closed:
            raise self._closed_error()
        deadlines = self._deadlines
        task = deadlines.begin()  # the bound on the whole operation
        try:
            if self._layout_pending:
                await self._check_layout()
            return await method(self, *args)
        except asyncio.CancelledError:
            # Ours only if the deadline's (or the close's) was the sole cancellation: one from
            # elsewhere (a shutdown) that came at the same moment must go on.
            reason = deadlines.end(task)
            if reason is not None and not task.cancelling():
                if reason is Interruption.CLOSED:
                    raise self._closed_error() from None
                overdue = TimeoutError(f"the operation took over {deadlines.timeout} s")
                raise unavailable(overdue, self._endpoint) from None
            raise
        except UNAVAILABLE as exc:
            if self._closed:  # the close dropped its connection, or it found none left
                raise self._closed_error() from exc
            raise unavailable(exc, self._endpoint) from exc
        except NoPermissionError as exc:  # an ACL user without a command this backend needs
            raise unavailable(exc, self._endpoint) from exc
        finally:
            deadlines.end(task)

    return hookimpl(hook)


class RedisBackend:
    """The hooks of one namespace on one Redis server or cluster."""

    def __init__(
        self,
        client: Redis | ClusterCommands,
        endpoint: Endpoint,
        layout: Layout,
        *,
        grace_ms: int,
        timeout: float,
        wait_replicas: int = 0,
        wait_timeout: float = 0.0,
        poll_limit: float = SPIN_LIMIT,
    ) -> None:
        self._client = client
        self._cluster = client if isinstance(client, ClusterCommands) else None
        self._commands: DirectCommands | ClusterCommands = (
            client
            if isinstance(client, ClusterCommands)
            else DirectCommands(client.connection_pool, timeout=timeout, poll_limit=poll_limit)
        )
        # One command, or several on one connection; raw replies: with decode_responses=False
        # (see open_client) bytes, ints, lists and None, hence Any.
        self._execute: Callable[..., Awaitable[Any]] = self._commands.execute
        self._execute_many: Callable[[Sequence[Sequence[Any]]], Awaitable[list[Any]]] = (
            self._commands.execute_many
        )
        # WAIT's arguments after every write: replicas, milliseconds (None: do not wait).
        self._wait = (
            (wait_replicas, max(1, round(wait_timeout * 1000))) if wait_replicas > 0 else None
        )
        self._endpoint = endpoint
        self._layout = layout
        self._grace_ms = grace_ms
        self._deadlines = OperationDeadlines(timeout)
        self._layout_pending = True
        self._first_use = asyncio.Lock()
        self._closed = False
        self._notifications: RedisNotifications | None = None  # made by the first watch

    def __repr__(self) -> str:
        return f"<RedisBackend {self._endpoint.display} shards={self._layout.shards}>"

    # -- helpers ------------------------------------------------------------------------------

    def _closed_error(self) -> StoreClosedError:
        return StoreClosedError(
            f"the store on {self._endpoint.display} was closed while this operation was under "
            "way; a write may or may not have taken effect"
        )

    async def _check_layout(self) -> None:
        """Connect, and refuse a namespace written with another shard count (its keys would not
        be found). One task does it while the others wait."""
        async with self._first_use:
            if not self._layout_pending:
                return
            if self._cluster is not None:
                await self._cluster.initialize()
            await self._claim_layout()

    async def _claim_layout(self) -> None:
        layout = self._layout
        found = await self._execute("SET", layout.layout_key, layout.description, "NX", "GET")
        if found is not None and found.decode(errors="replace") != layout.description:
            raise ConfigurationError(
                f"this namespace on {self._endpoint.display} was written as "
                f"{found.decode(errors='replace')!r}; open it with the same shards option "
                f"(this store has shards={layout.shards})"
            )
        self._layout_pending = False

    async def _run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` and return its reply (see :meth:`_pipeline` for ``wait_replicas``)."""
        if self._wait is None or not script.writes:
            try:
                return await self._execute("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:  # a restart, a failover or SCRIPT FLUSH: send it whole
                return await self._execute("EVAL", script.source, len(keys), *keys, *args)
        (outcome,) = await self._pipeline(script, [(keys, args)])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _pipeline(
        self, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Run ``script`` once per call, in one pipeline on one connection (on a cluster the
        calls must share a slot); each outcome is a reply or an exception.

        With ``wait_replicas``, a script that writes is followed on the same connection by
        ``WAIT`` (in the same round trip): when fewer replicas than asked confirm the writes
        within ``wait_timeout``, every outcome that was a reply becomes a
        :class:`~sessionstore.StoreUnavailableError` saying so. The write was made on the
        master, but it is not acknowledged: a failover now could lose it."""
        wait = [("WAIT", *self._wait)] if self._wait is not None and script.writes else []
        outcomes = await self._execute_many(
            [*(("EVALSHA", script.sha, len(k), *k, *a) for k, a in calls), *wait]
        )
        confirmations = [outcomes.pop()] if wait else []
        missing = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, NoScriptError)]
        if missing:  # a restart, a failover or SCRIPT FLUSH: send them whole (this loads it)
            whole = [
                ("EVAL", script.source, len(k), *k, *a) for k, a in (calls[i] for i in missing)
            ]
            again = await self._execute_many([*whole, *wait])
            if wait:  # another connection, maybe: its WAIT speaks for its own writes
                confirmations.append(again.pop())
            for i, outcome in zip(missing, again, strict=True):
                outcomes[i] = outcome
        if wait:
            for confirmed in confirmations:
                if isinstance(confirmed, BaseException):
                    raise confirmed
            replicas = min(int(c) for c in confirmations)
            if replicas < wait[0][1]:
                refused = self._unconfirmed(replicas)
                outcomes = [o if isinstance(o, BaseException) else refused for o in outcomes]
        return outcomes

    def _unconfirmed(self, replicas: int) -> StoreUnavailableError:
        assert self._wait is not None
        wanted, milliseconds = self._wait
        return StoreUnavailableError(
            f"redis at {self._endpoint.display}: {replicas} of {wanted} replicas confirmed the "
            f"write within wait_timeout ({milliseconds / 1000:g} s), so it is not acknowledged: "
            "it was made on the master, and a failover now could lose it"
        )

    async def _each_shard(self, call: Callable[[int], Awaitable[T]]) -> list[T]:
        shards = range(self._layout.shards)
        if len(shards) == 1:
            return [await call(0)]
        return list(await asyncio.gather(*(call(shard) for shard in shards)))

    def _value(self, record: SessionRecord) -> bytes:
        return pack_record(record.version, record.deadline_ms, record.incarnation, record.payload)

    def _live(self, session_id: str, value: bytes | None, now_ms: int) -> SessionRecord | None:
        if value is None:
            return None
        record = unpack_record(session_id, value)
        deadline = record.deadline_ms
        if deadline is not None and deadline <= now_ms:
            return None
        return record

    def _page_entry(
        self, session_id: str, value: bytes | None, now_ms: int
    ) -> SessionRecord | CorruptRecordError | None:
        """What a page holds for a value: a value that is no record goes in as its error (see
        the session_page hookspec), so that one foreign value does not stop every listing."""
        try:
            return self._live(session_id, value, now_ms)
        except CorruptRecordError as error:
            return error

    # -- hooks --------------------------------------------------------------------------------

    @hookimpl
    def store_capabilities(self) -> Mapping[str, str]:
        if self._layout.shards == 1:
            return {}
        return {
            Capability.ATOMIC_BATCH_UPDATE: (
                f"sessions are spread over {self._layout.shards} shards in different hash slots "
                "(a Redis Cluster cannot run one script across slots): a batch is atomic only "
                "among the sessions of one shard"
            )
        }

    @_redis_hook
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        shard, key, events = self._layout.session_keys(record.id)
        keys = (key, events, self._layout.deadline_index(shard), self._layout.name_index(shard))
        args = (self._value(record), record.deadline_ms or 0, now_ms, self._grace_ms, record.id)
        if await self._run(scripts.CREATE, keys, args) == 1:
            raise SessionExistsError(record.id)

    @_redis_hook
    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        value = await self._execute("GET", self._layout.record_key(session_id))
        return self._live(session_id, value, now_ms)

    @hookimpl
    async def raw_get(self, session_id: str) -> object:
        return await self._execute("GET", self._layout.record_key(session_id))

    @_redis_hook
    async def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Mapping[str, SessionRecord]:
        if not session_ids:
            return {}  # MGET takes at least one key
        keys = [self._layout.record_key(i) for i in session_ids]
        if self._layout.shards == 1 or self._cluster is None:
            values = await self._execute("MGET", *keys)
        else:  # one MGET per shard (a shard is one slot), sent to the nodes concurrently
            by_shard: dict[int, list[int]] = {}
            for at, session_id in enumerate(session_ids):
                by_shard.setdefault(self._layout.shard_of(session_id), []).append(at)
            replies = await asyncio.gather(
                *(self._execute("MGET", *(keys[at] for at in ats)) for ats in by_shard.values())
            )
            values = [None] * len(keys)
            for ats, reply in zip(by_shard.values(), replies, strict=True):
                for at, value in zip(ats, reply, strict=True):
                    values[at] = value
        found = {}
        for session_id, value in zip(session_ids, values, strict=True):
            record = self._live(session_id, value, now_ms)
            if record is not None:
                found[session_id] = record
        return found

    @_redis_hook
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        shard, key, events = self._layout.session_keys(record.id)
        keys = (key, events, self._layout.deadline_index(shard))
        deadline = record.deadline_ms
        key_ttl: int = 0 if deadline is None else max(deadline - now_ms, 0) + self._grace_ms
        score: int | str = "+inf" if deadline is None else deadline
        args = (self._value(record), pack_u64(record.version - 1), now_ms, key_ttl, score)
        outcome = await self._run(scripts.UPDATE, keys, args)
        if outcome == 1:
            raise SessionNotFoundError(record.id)
        if outcome == 2:
            raise ConflictError(record.id)

    @_redis_hook
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        by_shard: dict[int, list[SessionRecord]] = {}
        for record in records:
            by_shard.setdefault(self._layout.shard_of(record.id), []).append(record)
        if len(by_shard) == 1:
            ((shard, group),) = by_shard.items()
            self._raise_refused([await self._update_shard(shard, group, now_ms, check_only=False)])
            return
        # Several shards (several slots): check them all first, so a refusal names every id and
        # usually nothing is written; the writes that follow are atomic per shard only.
        checks = [
            await self._update_shard(shard, group, now_ms, check_only=True)
            for shard, group in by_shard.items()
        ]
        self._raise_refused(checks)
        writes = [
            await self._update_shard(shard, group, now_ms, check_only=False)
            for shard, group in by_shard.items()
        ]
        self._raise_refused(writes)

    async def _update_shard(
        self, shard: int, records: Sequence[SessionRecord], now_ms: int, *, check_only: bool
    ) -> tuple[int, list[str]]:
        keys: list[str] = []
        events: list[str] = []
        args: list[Any] = [now_ms, self._grace_ms, "1" if check_only else "0"]
        for record in records:
            _, key, event_key = self._layout.session_keys(record.id)
            keys.append(key)
            events.append(event_key)
            args += (
                record.id,
                self._value(record),
                pack_u64(record.version - 1),
                record.deadline_ms or 0,
            )
        code, ids = await self._run(
            scripts.UPDATE_MANY, [*keys, *events, self._layout.deadline_index(shard)], args
        )
        return int(code), [i.decode() for i in ids]

    @staticmethod
    def _raise_refused(outcomes: Sequence[tuple[int, list[str]]]) -> None:
        missing = [i for code, ids in outcomes if code == 1 for i in ids]
        if missing:
            raise SessionNotFoundError(*missing)
        stale = [i for code, ids in outcomes if code == 2 for i in ids]
        if stale:
            raise ConflictError(*stale)

    @_redis_hook
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        shard, key, events = self._layout.session_keys(session_id)
        keys = (key, events, self._layout.deadline_index(shard), self._layout.name_index(shard))
        return bool(await self._run(scripts.DELETE, keys, (now_ms, session_id)) == 1)

    @_redis_hook
    async def session_count(self, now_ms: int) -> int:
        execute = self._execute
        index = self._layout.deadline_index

        async def count(shard: int) -> int:
            return int(await execute("ZCOUNT", index(shard), f"({now_ms}", "+inf"))

        return sum(await self._each_shard(count))

    @_redis_hook
    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord | CorruptRecordError], str | None]:
        shard, after = 0, ""
        if cursor is not None:
            shard_text, _, after = cursor.partition(":")
            shard = int(shard_text)
        layout = self._layout
        while shard < layout.shards:
            low = f"({after}" if after else "-"
            raw_ids = await self._execute(
                "ZRANGEBYLEX", layout.name_index(shard), low, "+", "LIMIT", 0, limit
            )
            if raw_ids:
                ids = [i.decode() for i in raw_ids]
                values = await self._execute("MGET", *(layout.record_key(i) for i in ids))
                page = [
                    record
                    for session_id, value in zip(ids, values, strict=True)
                    if (record := self._page_entry(session_id, value, now_ms)) is not None
                ]
                if len(ids) == limit:
                    return page, f"{shard}:{ids[-1]}"
                more = shard + 1 < layout.shards
                return page, f"{shard + 1}:" if more else None
            shard, after = shard + 1, ""
        return [], None

    @_redis_hook
    async def session_purge_expired(self, now_ms: int) -> int:
        layout = self._layout

        async def purge(shard: int) -> int:
            keys = (layout.deadline_index(shard), layout.name_index(shard))
            total = 0
            while True:
                removed = int(
                    await self._run(scripts.PURGE, keys, (now_ms, _BATCH, layout.bases[shard]))
                )
                total += removed
                if removed < _BATCH:
                    return total

        return sum(await self._each_shard(purge))

    @_redis_hook
    async def session_count_expired(self, now_ms: int) -> int:
        # The PURGE script removes (and counts) every deadline-index entry scored <= now, even
        # one whose record is already gone: count those same entries.
        execute = self._execute
        index = self._layout.deadline_index

        async def count(shard: int) -> int:
            return int(await execute("ZCOUNT", index(shard), "-inf", now_ms))

        return sum(await self._each_shard(count))

    @_redis_hook
    async def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        shard, key, events = self._layout.session_keys(session_id)
        keys = (key, events, self._layout.deadline_index(shard))
        deadline = deadline_ms or 0
        args = (event_id, deadline, pack_u64(deadline), now_ms, self._grace_ms, session_id)
        if await self._run(scripts.LAST_EVENT_ID_SET, keys, args) == 1:
            raise SessionNotFoundError(session_id)

    @_redis_hook
    async def last_event_id_get(self, session_id: str, now_ms: int) -> str | None:
        _, key, events = self._layout.session_keys(session_id)
        outcome = await self._run(scripts.LAST_EVENT_ID_GET, (key, events), (now_ms,))
        if outcome[0] == 1:
            raise SessionNotFoundError(session_id)
        return None if len(outcome) < 2 or outcome[1] is None else str(outcome[1].decode())

    @_redis_hook
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        shard, key, events = self._layout.session_keys(session_id)
        keys = (key, events, self._layout.handles(shard))
        args = (
            stream_id,
            _event_value(data),
            retention,
            now_ms,
            self._grace_ms,
            shard,
            self._layout.shards,
            _handle_seed(),
        )
        # Concurrent appends share round trips as every command does (see .coalescing).
        outcome = await self._run(scripts.EVENT_APPEND, keys, args)
        if outcome[0] == 1:
            raise SessionNotFoundError(session_id)
        return f"{outcome[1].decode()}-{outcome[2].decode()}-{session_id}"

    @_redis_hook
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        # Ids are "{handle}-{sequence}-{session id}": the session locates the keys.
        match = _EVENT_ID.match(event_id)
        if match is None or (session_id is not None and match[3] != session_id):
            raise EventNotFoundError(event_id)
        handle, seq, owner = match[1], int(match[2]), match[3]
        _, key, events = self._layout.session_keys(owner)
        outcome = await self._run(scripts.EVENT_REPLAY, (key, events), (handle, seq, now_ms))
        if outcome[0] == 1:
            raise EventNotFoundError(event_id)
        if outcome[0] == 3:
            raise EventNotFoundError(event_id, evicted=True)
        stream_id = outcome[1].decode()
        replayed = []
        for offset, value in enumerate(outcome[2:], start=seq + 1):
            if value is not None:  # always present while the session lives; defensive
                replayed.append(Event(f"{handle}-{offset}-{owner}", stream_id, _event_data(value)))
        return stream_id, replayed

    @_redis_hook
    async def session_dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        _, key, events = self._layout.session_keys(session_id)
        outcome = await self._run(scripts.DUMP, (key, events), (now_ms,))
        if outcome[0] == 1:
            return None
        record = unpack_record(session_id, outcome[1])
        last_event_id = None if outcome[2] is None else str(outcome[2].decode())
        streams = []
        at = 3
        while at < len(outcome):
            stream_id, count = outcome[at].decode(), int(outcome[at + 1])
            values = outcome[at + 2 : at + 2 + count]
            streams.append((stream_id, tuple(_event_data(v) for v in values)))
            at += 2 + count
        return SessionDump(record, last_event_id, tuple(streams))

    @_redis_hook
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        record = dump.record
        shard, key, events = self._layout.session_keys(record.id)
        keys = (
            key,
            events,
            self._layout.deadline_index(shard),
            self._layout.name_index(shard),
            self._layout.handles(shard),
        )
        args: list[Any] = [
            self._value(record),
            record.deadline_ms or 0,
            now_ms,
            self._grace_ms,
            record.id,
            "0" if dump.last_event_id is None else "1",
            dump.last_event_id or "",
            retention,
            shard,
            self._layout.shards,
            _handle_seed(),
            len(dump.streams),
        ]
        for stream_id, stream_events in dump.streams:
            args += (stream_id, len(stream_events))
            args += (_event_value(data) for data in stream_events)
        return bool(await self._run(scripts.LOAD, keys, args) == 1)

    @_redis_hook
    async def store_clear(self) -> None:
        layout = self._layout

        async def clear(shard: int) -> None:
            keys = (layout.deadline_index(shard), layout.name_index(shard), layout.handles(shard))
            while (
                int(await self._run(scripts.CLEAR, keys, (_BATCH, layout.bases[shard]))) == _BATCH
            ):
                pass

        await self._each_shard(clear)
        # Nothing of the namespace is left, its layout included; the next use claims it again.
        await self._execute("DEL", layout.layout_key)
        self._layout_pending = True

    @hookimpl
    async def event_watch(self, session_id: str) -> EventWatch:
        """See :mod:`.notifications`."""
        if self._closed:
            raise self._closed_error()
        if self._notifications is None:
            self._notifications = RedisNotifications(
                connection_maker(self._client, self._cluster),
                self._layout,
                self._endpoint,
                cluster=self._cluster,
                timeout=self._deadlines.timeout,
            )
        return await self._notifications.watch(session_id)

    @hookimpl
    def event_watch_count(self) -> int:
        return 0 if self._notifications is None else self._notifications.hub.subscriptions

    @hookimpl
    async def store_close(self) -> None:
        """Close within ``timeout``: operations under way end at once with
        :class:`~sessionstore.StoreClosedError` (their connections are dropped: a hung server
        must not hold them until it resumes), then every connection is closed."""
        self._closed = True
        timeout = self._deadlines.timeout
        deadline = asyncio.get_running_loop().time() + timeout
        await self._deadlines.close(grace=timeout)
        if self._notifications is not None:
            await self._notifications.close()
        try:
            # Closing a connection may wait for the server (TLS): all of it within the timeout.
            async with asyncio.timeout_at(deadline):
                try:
                    await self._commands.close()  # a cluster's closes its nodes' clients too
                finally:
                    if isinstance(self._client, Redis):
                        await self._client.aclose()
        except TimeoutError:
            pass  # whatever did not close in time is dropped with its socket
        except UNAVAILABLE as exc:
            raise unavailable(exc, self._endpoint) from exc


def _handle_seed() -> int:
    """Where a shard's stream-handle counter starts when it does not exist yet (see scripts).

    Drawn for every append (the counter may have been cleared since the last one); from a
    generator seeded once from the OS, as unpredictability is not the point, only that a cleared
    namespace does not hand out its old handles again, and a system call per event costs."""
    return _SEEDS.randrange(1, 2**36 + 1)


_SEEDS = random.Random(secrets.randbits(64))


def _event_value(data: bytes | None) -> bytes:
    """How an event is stored: ``p`` for a priming event, else ``d`` and its data."""
    return b"p" if data is None else b"d" + data


def _event_data(value: bytes) -> bytes | None:
    return None if value == b"p" else bytes(value[1:])


def create_backend(
    spec: str,
    *,
    namespace: str,
    key_prefix: str = "sessionstore",
    timeout: float = 5.0,
    connect_timeout: float | None = None,
    max_connections: int | None = None,
    shards: int | None = None,
    expiry_grace: float = 60.0,
    tls_ca_file: str | None = None,
    tls_cert_file: str | None = None,
    tls_key_file: str | None = None,
    tls_check_hostname: bool = True,
    wait_replicas: int = 0,
    wait_timeout: float | None = None,
    poll_limit: float = SPIN_LIMIT,
) -> RedisBackend:
    """The entry point: ``open_store("redis://...", **options)`` calls this.

    Options: ``key_prefix`` (start of every key, default ``sessionstore``); ``timeout`` (seconds
    a command may take before :class:`~sessionstore.StoreUnavailableError`, default 5);
    ``connect_timeout`` (default: ``timeout``); ``max_connections`` (most connections open
    at once, per node on a cluster; default 100; on one server a command that finds them all busy
    waits for one, within ``timeout``); ``shards`` (hash slots a namespace
    spreads over: default 1 on one server, 16 on a cluster; every client of a namespace must use
    the same); ``expiry_grace`` (seconds the native key TTL runs past a session's deadline,
    default 60: covers clock differences between hosts); ``tls_ca_file``, ``tls_cert_file``,
    ``tls_key_file``, ``tls_check_hostname`` for ``rediss://``; ``wait_replicas`` (default 0:
    a write returns once its master has it, as Redis replicates asynchronously; above 0, only
    once that many replicas confirmed it, by ``WAIT``, else
    :class:`~sessionstore.StoreUnavailableError`), ``wait_timeout`` (seconds ``WAIT`` waits for
    them, below ``timeout``; default half of it); ``poll_limit`` (seconds a command sent alone
    polls the event loop for its reply before it sleeps, default 0.0002; 0: never, for a host
    where CPU time costs more than latency; see :mod:`.spinning`).
    """
    endpoint = parse_spec(spec)
    if not isinstance(key_prefix, str) or not _KEY_PREFIX.match(key_prefix):
        raise ConfigurationError(
            f"key_prefix {key_prefix!r} must be 1-64 characters of A-Z a-z 0-9 _ . : -"
        )
    timeout = _seconds("timeout", timeout)
    connect_timeout = (
        timeout if connect_timeout is None else _seconds("connect_timeout", connect_timeout)
    )
    grace = _seconds("expiry_grace", expiry_grace, allow_zero=True)
    poll_limit = _seconds("poll_limit", poll_limit, allow_zero=True)
    if type(wait_replicas) is not int or wait_replicas < 0:
        raise ConfigurationError(
            f"wait_replicas must be an int >= 0 (0: do not wait), not {wait_replicas!r}"
        )
    wait_timeout = timeout / 2 if wait_timeout is None else _seconds("wait_timeout", wait_timeout)
    if wait_timeout >= timeout:
        raise ConfigurationError(
            f"wait_timeout ({wait_timeout:g} s) must be below timeout ({timeout:g} s): the "
            "wait is part of the write"
        )
    if max_connections is None:
        max_connections = DEFAULT_MAX_CONNECTIONS
    if type(max_connections) is not int or max_connections < 1:
        raise ConfigurationError(f"max_connections must be a positive int, not {max_connections!r}")
    if shards is None:
        shards = DEFAULT_CLUSTER_SHARDS if endpoint.cluster else 1
    if type(shards) is not int or not 1 <= shards <= 1024:
        raise ConfigurationError(f"shards must be an int from 1 to 1024, not {shards!r}")
    for name, value in (
        ("tls_ca_file", tls_ca_file),
        ("tls_cert_file", tls_cert_file),
        ("tls_key_file", tls_key_file),
    ):
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{name} must be a path (str), not {type(value).__name__}")
    given = [
        n
        for n, v in (
            ("tls_ca_file", tls_ca_file),
            ("tls_cert_file", tls_cert_file),
            ("tls_key_file", tls_key_file),
        )
        if v is not None
    ]
    if given and not endpoint.tls:
        raise ConfigurationError(
            f"{', '.join(given)} given for {endpoint.display!r}, which is not a rediss:// URL"
        )
    client = open_client(
        endpoint,
        timeout=timeout,
        connect_timeout=connect_timeout,
        max_connections=max_connections,
        poll_limit=poll_limit,
        tls_ca_file=tls_ca_file,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
        tls_check_hostname=bool(tls_check_hostname),
    )
    return RedisBackend(
        client,
        endpoint,
        Layout(key_prefix, namespace, shards),
        grace_ms=math.ceil(grace * 1000),
        timeout=timeout,
        wait_replicas=wait_replicas,
        wait_timeout=wait_timeout,
        poll_limit=poll_limit,
    )


def _seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")
    return float(value)

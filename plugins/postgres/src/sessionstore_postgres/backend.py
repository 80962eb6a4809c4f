"""The PostgreSQL backend: sessions shared by every host that reaches one database.

Every hook but ``session_load`` of a session with events is ONE statement, sent in one round
trip on a connection of an asyncpg pool and autocommitted: compare-and-set locks the row and
writes it in one statement, ``session_update_many`` checks and writes a whole batch in one
statement (arrays unnested server-side), ``session_get_many`` reads up to 10,000 ids with
``= ANY($ids)``; appends made while one is in flight go out together as one statement
(see :meth:`PostgresBackend.event_append`). ``session_load`` with streams is one transaction of
two statements. No reset query follows a statement (see :func:`_keep_session_state`). Statements
are prepared once per connection (asyncpg's statement cache). The tables, and why they look
so, are in :mod:`.schema`.

Change notifications: with ``notify=True`` (the default), ``event_append``, ``session_load`` and
``session_delete`` call ``pg_notify(channel, session_id)`` in the statement that writes, so
PostgreSQL delivers it exactly when the write commits (:mod:`.notify` names the channel).

Every hook runs under one deadline, ``timeout`` seconds, covering waiting for a free connection,
connecting and the statement: past it, or on any connection failure, it raises
:class:`~sessionstore.StoreUnavailableError`. A statement cut short is rolled back by the server
(a connection closed mid-transaction aborts it), so a failed write leaves nothing half-written,
and the pool replaces a broken connection on next use: the store recovers by itself once the
server is back. A deadlock or serialization failure (the server rolled everything back) is
retried a few times before it is reported.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from sessionstore import (
    ConfigurationError,
    ConflictError,
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
from sessionstore.records import new_record, parse_event_id
from sessionstore.watching import EventWatch

from .connection import RETRYABLE, UNAVAILABLE, Endpoint, parse_spec, unavailable
from .listen import PostgresNotifications
from .notify import pg_notify_channel
from .schema import check_schema_name, migrate

__all__ = ["PostgresBackend", "create_backend"]

DEFAULT_MIN_SIZE = 1
DEFAULT_MAX_SIZE = 10
DEFAULT_TIMEOUT = 5.0
_RETRIES = 5  # deadlocks / serialization failures in a row before giving up
_CLOSE_FAILURES: tuple[type[BaseException], ...] = (TimeoutError, *UNAVAILABLE)

T = TypeVar("T")
Hook = Callable[..., Coroutine[Any, Any, T]]


class Statements:
    """The SQL of every hook, for one schema; ``$1`` is always the namespace."""

    def __init__(self, schema: str, notify: bool) -> None:
        s = schema
        live = "(deadline IS NULL OR deadline > {})"
        self.create = (
            # The expired session the id may hold is deleted in the same statement (its
            # streams and events cascade away); a live one makes the insert do nothing.
            f"WITH gone AS (DELETE FROM {s}.sessions WHERE namespace = $1 AND id = $2 "
            "AND deadline <= $7 RETURNING 1) "
            f"INSERT INTO {s}.sessions (namespace, id, version, deadline, payload, incarnation) "
            "SELECT $1, $2, $3, $4, $5, $6 WHERE (SELECT count(*) FROM gone) >= 0 "
            "ON CONFLICT DO NOTHING"
        )
        self.get = (
            f"SELECT version, deadline, payload, incarnation FROM {s}.sessions "
            f"WHERE namespace = $1 AND id = $2 AND {live.format('$3')}"
        )
        self.get_many = (
            f"SELECT id, version, deadline, payload, incarnation FROM {s}.sessions "
            f"WHERE namespace = $1 AND id = ANY($2::text[]) AND {live.format('$3')}"
        )
        # Compare-and-set: the row is locked first (FOR NO KEY UPDATE returns its newest
        # version), so the verdict and the write are about the same row state.
        self.update = (
            f"WITH cur AS (SELECT version, incarnation FROM {s}.sessions "
            f"WHERE namespace = $1 AND id = $2 AND {live.format('$7')} FOR NO KEY UPDATE), "
            f"upd AS (UPDATE {s}.sessions SET version = $3, deadline = $4, payload = $5 "
            "WHERE namespace = $1 AND id = $2 AND "
            "(SELECT version = $3::bigint - 1 AND ($6::bigint = 0 OR incarnation = $6::bigint) "
            "FROM cur) RETURNING 1) "
            "SELECT (SELECT count(*) FROM cur) AS found, (SELECT count(*) FROM upd) AS updated"
        )
        # A whole batch in one statement: rows locked in id order (two batches never deadlock),
        # every verdict taken on the locked rows, and the update made only if none failed.
        self.update_many = (
            "WITH input AS (SELECT * FROM unnest($2::text[], $3::bigint[], $4::bigint[], "
            "$5::bytea[], $6::bigint[]) WITH ORDINALITY "
            "AS i(id, version, deadline, payload, incarnation, pos)), "
            f"cur AS (SELECT id, version, incarnation FROM {s}.sessions "
            f"WHERE namespace = $1 AND id = ANY($2::text[]) AND {live.format('$7')} "
            "ORDER BY id FOR NO KEY UPDATE), "
            "verdict AS (SELECT i.id, i.pos, c.id IS NULL AS missing, c.id IS NOT NULL AND "
            "(c.version <> i.version - 1 OR (i.incarnation <> 0 AND c.incarnation <> "
            "i.incarnation)) AS stale FROM input i LEFT JOIN cur c ON c.id = i.id), "
            f"upd AS (UPDATE {s}.sessions t SET version = i.version, deadline = i.deadline, "
            "payload = i.payload FROM input i WHERE t.namespace = $1 AND t.id = i.id "
            "AND NOT (SELECT bool_or(missing OR stale) FROM verdict)) "
            "SELECT id, missing FROM verdict WHERE missing OR stale ORDER BY pos"
        )
        notify_deleted = ", pg_notify($3, $2)" if notify else ""
        self.delete = (
            f"WITH d AS (DELETE FROM {s}.sessions WHERE namespace = $1 AND id = $2 "
            f"RETURNING deadline) SELECT deadline{notify_deleted} FROM d"
        )
        # Counted rows (kept by triggers, see .schema) less the expired ones, in one snapshot.
        self.count = (
            f"SELECT (coalesce((SELECT sum(n) FROM {s}.session_counts WHERE namespace = $1), 0) "
            f"- (SELECT count(*) FROM {s}.sessions WHERE namespace = $1 AND deadline <= $2))"
            "::bigint"
        )
        self.page = (
            f"SELECT id, version, deadline, payload, incarnation FROM {s}.sessions "
            f"WHERE namespace = $1 AND id > $2 AND {live.format('$3')} ORDER BY id LIMIT $4"
        )
        self.purge = f"DELETE FROM {s}.sessions WHERE namespace = $1 AND deadline <= $2"
        self.count_expired = (
            f"SELECT count(*) FROM {s}.sessions WHERE namespace = $1 AND deadline <= $2"
        )
        self.last_event_id_set = (
            f"UPDATE {s}.sessions SET last_event_id = $3, deadline = $4 "
            f"WHERE namespace = $1 AND id = $2 AND {live.format('$5')}"
        )
        self.last_event_id_get = (
            f"SELECT last_event_id FROM {s}.sessions "
            f"WHERE namespace = $1 AND id = $2 AND {live.format('$3')}"
        )
        # One statement: the session is share-locked (a delete waits for the append), the
        # stream's counter moves (its row lock orders concurrent appends), the event goes in
        # and the events past retention go out.
        notify_appended = ", pg_notify($7, $2)" if notify else ""
        self.append = (
            f"WITH live AS (SELECT 1 FROM {s}.sessions WHERE namespace = $1 AND id = $2 "
            f"AND {live.format('$6')} FOR KEY SHARE), "
            f"st AS (INSERT INTO {s}.streams AS t (namespace, session_id, stream_id, next_seq) "
            "SELECT $1, $2, $3, 2 FROM live ON CONFLICT (namespace, session_id, stream_id) "
            "DO UPDATE SET next_seq = t.next_seq + 1 RETURNING handle, next_seq - 1 AS seq), "
            f"ev AS (INSERT INTO {s}.events (handle, seq, data) SELECT handle, seq, $4 FROM st), "
            # (st.seq > $5 spares the index probe while the stream is within retention.)
            f"trim AS (DELETE FROM {s}.events e USING st WHERE st.seq > $5::bigint "
            "AND e.handle = st.handle AND e.seq <= st.seq - $5::bigint) "
            f"SELECT handle, seq{notify_appended} FROM st"
        )
        # Appends grouped into one statement (see PostgresBackend.event_append), as arrays: $2
        # session ids, $3 stream ids, $4 data, $5 retentions, $6 nows (per append), $7 the
        # smallest now. The sessions are share-locked in id order and the streams' counters
        # moved in (session, stream) order, so two batches never deadlock. A stream appended
        # to k times moves its counter by k once (a row is updated at most once per statement)
        # and its appends take the k numbers in the order they were made. Trimming keeps what
        # the appends one after the other would have kept: the events above the highest
        # (seq - retention) of the stream's appends. One pg_notify per session in the batch.
        # An append whose session is missing or expired returns no row.
        notify_batch = (
            ", sent AS (SELECT pg_notify($8, session_id) FROM "
            "(SELECT DISTINCT session_id FROM grp) d) "
            if notify
            else " "
        )
        self.append_many = (
            "WITH input AS (SELECT * FROM unnest($2::text[], $3::text[], $4::bytea[], "
            "$5::bigint[], $6::bigint[]) WITH ORDINALITY "
            "AS i(session_id, stream_id, data, retention, now, pos)), "
            f"live AS (SELECT id, deadline FROM {s}.sessions WHERE namespace = $1 "
            f"AND id = ANY($2::text[]) AND {live.format('$7')} ORDER BY id FOR KEY SHARE), "
            "ok AS (SELECT i.* FROM input i JOIN live l ON l.id = i.session_id "
            "WHERE l.deadline IS NULL OR l.deadline > i.now), "
            "grp AS (SELECT session_id, stream_id, count(*) AS n FROM ok "
            "GROUP BY session_id, stream_id), "
            f"st AS (INSERT INTO {s}.streams AS t (namespace, session_id, stream_id, next_seq) "
            "SELECT $1, session_id, stream_id, n + 1 FROM grp ORDER BY session_id, stream_id "
            "ON CONFLICT (namespace, session_id, stream_id) "
            "DO UPDATE SET next_seq = t.next_seq + excluded.next_seq - 1 "
            "RETURNING handle, session_id, stream_id, next_seq), "
            "num AS (SELECT ok.pos, ok.data, ok.retention, st.handle, st.next_seq - g.n - 1 "
            "+ row_number() OVER (PARTITION BY st.handle ORDER BY ok.pos) AS seq "
            "FROM ok JOIN grp g USING (session_id, stream_id) "
            "JOIN st USING (session_id, stream_id)), "
            "cut AS (SELECT handle, max(seq - retention) AS upto FROM num GROUP BY handle), "
            f"ev AS (INSERT INTO {s}.events (handle, seq, data) SELECT num.handle, num.seq, "
            "num.data FROM num JOIN cut USING (handle) WHERE num.seq > cut.upto), "
            f"trim AS (DELETE FROM {s}.events e USING cut WHERE cut.upto > 0 "
            f"AND e.handle = cut.handle AND e.seq <= cut.upto){notify_batch}"
            "SELECT pos, handle, seq"
            + (", (SELECT count(*) FROM sent)" if notify else "")
            + " FROM num"
        )
        self.replay = (
            "SELECT st.session_id, st.stream_id, st.next_seq, "
            f"EXISTS (SELECT 1 FROM {s}.sessions WHERE namespace = $2 AND id = st.session_id "
            f"AND {live.format('$3')}) AS live, "
            f"(SELECT min(seq) FROM {s}.events WHERE handle = $1) AS oldest, "
            f"ARRAY(SELECT seq FROM {s}.events WHERE handle = $1 AND seq > $4 ORDER BY seq) "
            "AS seqs, "
            f"ARRAY(SELECT data FROM {s}.events WHERE handle = $1 AND seq > $4 ORDER BY seq) "
            f"AS datas FROM {s}.streams st WHERE st.handle = $1 AND st.namespace = $2"
        )
        # The record, then one row per stream with its events' data: one snapshot.
        self.dump = (
            "WITH cur AS (SELECT version, deadline, payload, incarnation, last_event_id "
            f"FROM {s}.sessions WHERE namespace = $1 AND id = $2 AND {live.format('$3')}) "
            "SELECT 0::bigint AS k, version, deadline, payload, incarnation, last_event_id, "
            "NULL::text AS stream_id, NULL::bytea[] AS events FROM cur UNION ALL "
            "SELECT st.handle, NULL, NULL, NULL, NULL, NULL, st.stream_id, "
            f"ARRAY(SELECT e.data FROM {s}.events e WHERE e.handle = st.handle ORDER BY e.seq) "
            f"FROM {s}.streams st WHERE st.namespace = $1 AND st.session_id = $2 "
            "AND EXISTS (SELECT 1 FROM cur) ORDER BY k"
        )
        notify_loaded = ", pg_notify($9, $2)" if notify else ""
        self.load = (
            f"WITH gone AS (DELETE FROM {s}.sessions WHERE namespace = $1 AND id = $2 "
            "AND deadline <= $8 RETURNING 1), "
            f"ins AS (INSERT INTO {s}.sessions "
            "(namespace, id, version, deadline, payload, incarnation, last_event_id) "
            "SELECT $1, $2, $3, $4, $5, $6, $7 WHERE (SELECT count(*) FROM gone) >= 0 "
            "ON CONFLICT DO NOTHING RETURNING 1) "
            f"SELECT count(*){notify_loaded} FROM ins"
        )
        # The streams of a loaded session, in the dump's order (so their handles are too), and
        # their events, in a second statement: a cascade from the first one's delete of an
        # expired session would otherwise remove them at the end of the statement.
        self.load_streams = (
            f"WITH st AS (INSERT INTO {s}.streams (namespace, session_id, stream_id, next_seq) "
            "SELECT $1, $2, u.stream_id, u.next_seq FROM unnest($3::text[], $4::bigint[]) "
            "WITH ORDINALITY AS u(stream_id, next_seq, pos) ORDER BY u.pos "
            "RETURNING handle, stream_id) "
            f"INSERT INTO {s}.events (handle, seq, data) SELECT st.handle, x.seq, x.data "
            "FROM st JOIN unnest($5::text[], $6::bigint[], $7::bytea[]) AS x(stream_id, seq, data) "
            "ON x.stream_id = st.stream_id"
        )
        # Two statements (in one transaction): the count trigger of the first runs at its end.
        self.clear = f"DELETE FROM {s}.sessions WHERE namespace = $1"
        self.clear_counts = f"DELETE FROM {s}.session_counts WHERE namespace = $1"


def _pg_hook(method: Hook[T]) -> Hook[T]:
    """Mark a hook, run as :func:`_guarded` says."""
    return hookimpl(_guarded(method))


def _guarded(method: Hook[T]) -> Hook[T]:
    """Run ``method`` under the deadline, on the pool (opened on first use); retry what the
    server rolled back whole; map driver failures to ours."""

    @functools.wraps(method)
    async def hook(self: PostgresBackend, *args: Any) -> T:
        if self._closed:
            raise self._closed_error()
        try:
            async with asyncio.timeout(self._timeout):
                if self._pool is None:
                    await self._open_pool()
                for attempt in range(_RETRIES):
                    try:
                        return await method(self, *args)
                    except RETRYABLE:
                        if attempt == _RETRIES - 1:
                            raise
                        await asyncio.sleep(0.001 * 2**attempt)
                raise AssertionError("unreachable")
        except RETRYABLE as exc:
            raise unavailable(exc, self._endpoint, "kept failing on lock conflicts") from None
        except UNAVAILABLE as exc:
            if self._closed:  # the close ended its connection
                raise self._closed_error() from None
            raise self._unavailable(exc) from None

    return hook


async def _keep_session_state(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing to reset, so no round trip.

    asyncpg's default sends ``RESET ALL; CLOSE ALL; UNLISTEN *; pg_advisory_unlock_all()`` on
    every release, a second round trip per operation. None of it can matter here: this backend
    never changes session state on a pool connection (no ``SET``, no ``LISTEN`` (the listener
    has a connection of its own, see :mod:`.listen`), no cursors, no session-level advisory
    locks: migrations take a transaction-level one); the server settings it does choose are
    connection options, the same on every connection. An open transaction is still rolled back
    on release: asyncpg does that before calling this, whatever the reset.
    """


def _rows(status: str) -> int:
    """The row count of a command status such as ``INSERT 0 1`` or ``DELETE 3``."""
    return int(status.rpartition(" ")[2])


class PostgresBackend:
    """The hooks of one namespace in one PostgreSQL database."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        namespace: str,
        schema: str,
        min_size: int,
        max_size: int,
        timeout: float,
        connect_timeout: float,
        statement_cache_size: int,
        notify: bool,
    ) -> None:
        self._endpoint = endpoint
        self._ns = namespace
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._statement_cache_size = statement_cache_size
        self._notify = notify
        self._channel = pg_notify_channel(namespace)
        self._sql = Statements(schema, notify)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._closed = False
        self._notifications: PostgresNotifications | None = None  # made by the first watch
        # Appends waiting for the next batch, and the task sending batches (see event_append).
        self._appends: list[tuple[tuple[Any, ...], asyncio.Future[str]]] = []
        self._appending: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (
            f"<PostgresBackend {self._endpoint.display} schema={self._schema} "
            f"namespace={self._ns!r}>"
        )

    @property
    def channel(self) -> str:
        """The channel this namespace's change notifications go to."""
        return self._channel

    @property
    def endpoint(self) -> Endpoint:
        """Where the store points (asyncpg's arguments; the display form is redacted)."""
        return self._endpoint

    @property
    def notify(self) -> bool:
        """Whether writes emit change notifications (the ``notify`` option)."""
        return self._notify

    # -- plumbing -----------------------------------------------------------------------------

    def _closed_error(self) -> StoreClosedError:
        return StoreClosedError(
            f"the store on {self._endpoint.display} was closed while this operation was under "
            "way; a write may or may not have taken effect"
        )

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        what = ""
        if isinstance(exc, TimeoutError):
            what = f"timed out after {self._timeout:g} s"
            pool = self._pool
            if pool is not None and pool.get_idle_size() == 0 and pool.get_size() >= self._max_size:
                what += f" (all max_size={self._max_size} pool connections were busy)"
        return unavailable(exc, self._endpoint, what)

    def _ready_pool(self) -> asyncpg.Pool:
        """The open pool (a hook runs only once :meth:`_open_pool` made it)."""
        pool = self._pool
        if pool is None:  # closed while the hook waited
            raise self._closed_error()
        return pool

    async def connect(self, **kwargs: Any) -> asyncpg.Connection:
        """A new connection of its own (not from the pool) to the store's database, with the
        store's credentials: for a listener, which holds its connection for good. Raises the
        driver's errors; the caller maps them."""
        return await asyncpg.connect(
            self._endpoint.dsn,
            password=self._endpoint.password,
            timeout=self._connect_timeout,
            **kwargs,
        )

    async def _open_pool(self) -> asyncpg.Pool:
        """Open the pool and bring the schema up to date, once; a failure leaves no pool, so
        the next operation tries again."""
        async with self._opening:
            if self._pool is not None:
                return self._pool
            pool = asyncpg.create_pool(
                self._endpoint.dsn,
                password=self._endpoint.password,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
                statement_cache_size=self._statement_cache_size,
                # Short statements gain nothing from JIT compilation and can lose milliseconds.
                server_settings={"jit": "off"},
                reset=_keep_session_state,
            )
            try:
                await pool
                async with pool.acquire() as conn:
                    await migrate(conn, self._schema, self._endpoint.display)
            except BaseException:
                pool.terminate()
                raise
            self._pool = pool
            return pool

    # -- sessions -----------------------------------------------------------------------------

    @_pg_hook
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        # $1..$7 as the statement has them: namespace, the record's five fields, now.
        status = await self._ready_pool().execute(self._sql.create, self._ns, *record, now_ms)
        if _rows(status) != 1:
            raise SessionExistsError(record.id)

    @_pg_hook
    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        row = await self._ready_pool().fetchrow(self._sql.get, self._ns, session_id, now_ms)
        return None if row is None else new_record((session_id, *row))

    @hookimpl
    async def raw_get(self, session_id: str) -> object:
        pool = self._pool or await self._open_pool()
        return await pool.fetchrow(self._sql.get, self._ns, session_id, int(time.time() * 1000))

    @_pg_hook
    async def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Mapping[str, SessionRecord]:
        rows = await self._ready_pool().fetch(
            self._sql.get_many, self._ns, list(session_ids), now_ms
        )
        return {row[0]: new_record(tuple(row)) for row in rows}

    @_pg_hook
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        found, updated = await self._ready_pool().fetchrow(
            self._sql.update, self._ns, *record, now_ms
        )
        if not updated:
            if found:
                raise ConflictError(record.id)
            raise SessionNotFoundError(record.id)

    @_pg_hook
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        if not records:
            return
        failed = await self._ready_pool().fetch(
            self._sql.update_many,
            self._ns,
            [r.id for r in records],
            [r.version for r in records],
            [r.deadline_ms for r in records],
            [r.payload for r in records],
            [r.incarnation for r in records],
            now_ms,
        )
        missing = [row[0] for row in failed if row[1]]
        if missing:
            raise SessionNotFoundError(*missing)
        if failed:
            raise ConflictError(*(row[0] for row in failed))

    @_pg_hook
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        args = (self._ns, session_id, self._channel) if self._notify else (self._ns, session_id)
        row = await self._ready_pool().fetchrow(self._sql.delete, *args)
        return row is not None and (row[0] is None or row[0] > now_ms)

    @_pg_hook
    async def session_count(self, now_ms: int) -> int:
        count: int = await self._ready_pool().fetchval(self._sql.count, self._ns, now_ms)
        return count

    @_pg_hook
    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        rows = await self._ready_pool().fetch(
            self._sql.page, self._ns, cursor or "", now_ms, limit + 1
        )
        page = [new_record(tuple(row)) for row in rows[:limit]]
        return page, (page[-1].id if len(rows) > limit else None)

    @_pg_hook
    async def session_purge_expired(self, now_ms: int) -> int:
        return _rows(await self._ready_pool().execute(self._sql.purge, self._ns, now_ms))

    @_pg_hook
    async def session_count_expired(self, now_ms: int) -> int:
        # The rows session_purge_expired deletes, through the same deadline index.
        expired: int = await self._ready_pool().fetchval(self._sql.count_expired, self._ns, now_ms)
        return expired

    # -- last event id ------------------------------------------------------------------------

    @_pg_hook
    async def last_event_id_set(
        self,
        session_id: str,
        event_id: str,
        deadline_ms: int | None,
        now_ms: int,
    ) -> None:
        status = await self._ready_pool().execute(
            self._sql.last_event_id_set, self._ns, session_id, event_id, deadline_ms, now_ms
        )
        if _rows(status) != 1:
            raise SessionNotFoundError(session_id)

    @_pg_hook
    async def last_event_id_get(self, session_id: str, now_ms: int) -> str | None:
        row = await self._ready_pool().fetchrow(
            self._sql.last_event_id_get, self._ns, session_id, now_ms
        )
        if row is None:
            raise SessionNotFoundError(session_id)
        last: str | None = row[0]
        return last

    # -- moving sessions ----------------------------------------------------------------------

    @_pg_hook
    async def session_dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        rows = await self._ready_pool().fetch(self._sql.dump, self._ns, session_id, now_ms)
        if not rows:
            return None
        head = rows[0]
        record = new_record((session_id, head[1], head[2], head[3], head[4]))
        streams = tuple((row[6], tuple(row[7])) for row in rows[1:])
        return SessionDump(record, head[5], streams)

    @_pg_hook
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        record = dump.record
        args: list[Any] = [
            self._ns,
            record.id,
            record.version,
            record.deadline_ms,
            record.payload,
            record.incarnation,
            dump.last_event_id,
            now_ms,
        ]
        if self._notify:
            args.append(self._channel)
        if not dump.streams:
            return bool((await self._ready_pool().fetchrow(self._sql.load, *args))[0])
        stream_ids, next_seqs, event_streams, seqs, datas = [], [], [], [], []
        for stream_id, events in dump.streams:
            kept = events[-retention:]
            stream_ids.append(stream_id)
            next_seqs.append(len(kept) + 1)
            for seq, data in enumerate(kept, start=1):
                event_streams.append(stream_id)
                seqs.append(seq)
                datas.append(data)
        async with self._ready_pool().acquire() as conn, conn.transaction():
            if not (await conn.fetchrow(self._sql.load, *args))[0]:
                return False
            await conn.execute(
                self._sql.load_streams,
                self._ns,
                record.id,
                stream_ids,
                next_seqs,
                event_streams,
                seqs,
                datas,
            )
        return True

    # -- events -------------------------------------------------------------------------------

    @hookimpl
    async def event_append(
        self,
        session_id: str,
        stream_id: str,
        data: bytes | None,
        retention: int,
        now_ms: int,
    ) -> str:
        """Appends made while a batch of appends is in flight go out together as the next
        batch, one statement (a group commit: 50 sessions appending at once cost a few commits,
        not 50, and one pg_notify per session each). A lone append goes out at once. Each
        caller gets its own event id, or its own error (a missing session fails only its
        append). A caller cancelled (or past its deadline) before its batch went out is dropped
        from it; after, its event is stored all the same."""
        if self._closed:
            raise self._closed_error()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._appends.append(((session_id, stream_id, data, retention, now_ms), future))
        if self._appending is None:
            self._appending = asyncio.create_task(self._send_appends())
        try:
            async with asyncio.timeout(self._timeout):
                return await future
        except TimeoutError as exc:  # batches fail with our errors, so this is the deadline
            raise self._unavailable(exc) from None

    async def _send_appends(self) -> None:
        """Send the waiting appends, batch after batch, until none is left."""
        try:
            while self._appends:
                batch = [a for a in self._appends if not a[1].done()]
                self._appends = []
                if not batch:
                    continue
                try:
                    rows = await self._append_batch([args for args, _ in batch])
                except asyncio.CancelledError:  # the loop is shutting down
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as exc:  # the whole batch failed: each caller sees why
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (args, future), row in zip(batch, rows, strict=True):
                    if future.done():  # its caller gave up; the event is stored all the same
                        continue
                    if row is None:
                        future.set_exception(SessionNotFoundError(args[0]))
                    else:
                        future.set_result(row)
        finally:
            self._appending = None

    @_guarded
    async def _append_batch(self, batch: list[tuple[Any, ...]]) -> list[str | None]:
        """Append ``batch`` (event_append's arguments, one tuple each) in one statement; the
        event id of each, ``None`` where its session is missing or expired."""
        if len(batch) == 1:  # the plainer statement
            args: tuple[Any, ...] = (self._ns, *batch[0])
            if self._notify:
                args += (self._channel,)
            row = await self._ready_pool().fetchrow(self._sql.append, *args)
            return [None if row is None else f"{row[0]}-{row[1]}"]
        columns = (list(c) for c in zip(*batch, strict=True))
        session_ids, stream_ids, datas, retentions, nows = columns
        extra = (self._channel,) if self._notify else ()
        rows = await self._ready_pool().fetch(
            self._sql.append_many,
            self._ns,
            session_ids,
            stream_ids,
            datas,
            retentions,
            nows,
            min(nows),
            *extra,
        )
        ids: list[str | None] = [None] * len(batch)
        for row in rows:
            ids[row[0] - 1] = f"{row[1]}-{row[2]}"
        return ids

    @_pg_hook
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        parsed = parse_event_id(event_id)
        if parsed is None:
            raise EventNotFoundError(event_id)
        handle, seq = parsed
        row = await self._ready_pool().fetchrow(self._sql.replay, handle, self._ns, now_ms, seq)
        if (
            row is None
            or (session_id is not None and row[0] != session_id)
            or not 1 <= seq < row[2]
            or not row[3]
        ):
            raise EventNotFoundError(event_id)
        oldest = row[4]
        if oldest is None or seq < oldest:
            raise EventNotFoundError(event_id, evicted=True)
        stream_id: str = row[1]
        return stream_id, [
            Event(f"{handle}-{s}", stream_id, data) for s, data in zip(row[5], row[6], strict=True)
        ]

    # -- the store ----------------------------------------------------------------------------

    @_pg_hook
    async def store_clear(self) -> None:
        async with self._ready_pool().acquire() as conn, conn.transaction():
            await conn.execute(self._sql.clear, self._ns)
            # Its counter rows (summing to 0 now) too: a cleared namespace leaves nothing.
            await conn.execute(self._sql.clear_counts, self._ns)

    # -- notifications (see .listen) -----------------------------------------------------------

    @hookimpl
    def store_capabilities(self) -> Mapping[str, str]:
        if self._notify:
            return {}
        return {"event_notifications": "opened with notify=False: writes send no pg_notify"}

    @hookimpl
    async def event_watch(self, session_id: str) -> EventWatch:
        if self._closed:
            raise self._closed_error()
        if self._notifications is None:
            self._notifications = PostgresNotifications(
                self.connect, self._ns, self._endpoint, timeout=self._timeout
            )
        return await self._notifications.watch(session_id)

    @hookimpl
    def event_watch_count(self) -> int:
        return 0 if self._notifications is None else self._notifications.hub.subscriptions

    @hookimpl
    async def store_close(self) -> None:
        self._closed = True
        if self._notifications is not None:
            await self._notifications.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._timeout)
            except _CLOSE_FAILURES:  # a graceful close that fails: cut the connections
                pool.terminate()
        appending = self._appending
        if appending is not None:  # it fails what is left with StoreClosedError, at once
            await asyncio.wait({appending}, timeout=self._timeout)


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    if not 0 < value < float("inf"):
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _count(name: str, value: object, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise ConfigurationError(f"{name} must be an int >= {minimum}, not {value!r}")
    return value


def create_backend(
    spec: str,
    *,
    namespace: str,
    schema: str = "sessionstore",
    min_size: int = DEFAULT_MIN_SIZE,
    max_size: int = DEFAULT_MAX_SIZE,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float | None = None,
    statement_cache_size: int = 100,
    notify: bool = True,
) -> PostgresBackend:
    """The entry point: ``open_store("postgresql://...", **options)`` calls this.

    Nothing connects until the first operation, which opens the pool and creates or upgrades the
    schema. Options: ``schema`` (the PostgreSQL schema holding the tables, default
    ``sessionstore``); ``min_size`` / ``max_size`` (connections the pool keeps open / opens at
    most, default 1 / 10; an operation that finds them all busy waits within ``timeout``);
    ``timeout`` (seconds an operation may take, waiting for a connection included, before
    :class:`~sessionstore.StoreUnavailableError`; default 5); ``connect_timeout`` (seconds to
    open one connection, default ``timeout``); ``statement_cache_size`` (prepared statements
    kept per connection, default 100; 0 behind a transaction-mode PgBouncer); ``notify`` (emit
    ``pg_notify`` on event_append, session_load and session_delete, default ``True``).
    """
    endpoint = parse_spec(spec)
    schema = check_schema_name(schema)
    min_size = _count("min_size", min_size, 0)
    max_size = _count("max_size", max_size, 1)
    if min_size > max_size:
        raise ConfigurationError(f"min_size ({min_size}) must not exceed max_size ({max_size})")
    timeout = _seconds("timeout", timeout)
    connect_timeout = (
        timeout if connect_timeout is None else _seconds("connect_timeout", connect_timeout)
    )
    statement_cache_size = _count("statement_cache_size", statement_cache_size, 0)
    if not isinstance(notify, bool):
        raise ConfigurationError(f"notify must be True or False, not {notify!r}")
    return PostgresBackend(
        endpoint,
        namespace=namespace,
        schema=schema,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        connect_timeout=connect_timeout,
        statement_cache_size=statement_cache_size,
        notify=notify,
    )

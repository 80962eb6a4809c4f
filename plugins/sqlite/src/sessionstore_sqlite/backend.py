"""The SQLite backend: one database file, shared safely by the processes of one host.

Each hook runs its SQL directly on the event loop's thread with the standard ``sqlite3`` module. A
point query costs a few microseconds, far less than handing it to a thread (about 100 us here), so
this is what makes the backend fast; it also means each hook's statements run without an ``await``
in between, so a transaction is never interleaved with another task's.

Concurrency between processes is SQLite's: WAL mode (readers never wait for the writer), and a
write lock per transaction. The connection's own busy handler is off, because it would sleep
inside the C call and freeze the event loop; a hook that finds the database locked instead rolls
back, sleeps with ``asyncio.sleep`` and retries, for at most ``busy_timeout`` seconds, after which
it raises :class:`~sessionstore.StoreUnavailableError` saying so.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

from sessionstore import (
    Capability,
    ConfigurationError,
    ConflictError,
    Event,
    EventNotFoundError,
    SessionDump,
    SessionExistsError,
    SessionNotFoundError,
    SessionRecord,
    StoreUnavailableError,
    hookimpl,
    redact_url,
)
from sessionstore.records import new_record, parse_event_id
from sessionstore.urls import StoreURL, parse_url

from .schema import migrate

__all__ = ["DEFAULT_PATH", "SQLiteBackend", "create_backend", "database_path"]

DEFAULT_PATH = "sessionstore.db"
"""The file ``open_store("sqlite")`` uses, relative to the working directory."""

_SYNCHRONOUS = ("off", "normal", "full", "extra")
_LIVE = "(deadline IS NULL OR deadline > ?)"
_INSERT = (
    "INSERT INTO sessions (namespace, id, version, deadline, payload, incarnation) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
# Payloads and event data are read through CAST(... AS BLOB): a BLOB column keeps whatever type
# it is given, so a value written by hand or by another program as TEXT (or a number) would come
# back as a str (or an int); its bytes are what a reader expects. Event data is written the same
# way, so a hook called with a str stores a BLOB too.
_INSERT_EVENT = "INSERT INTO events VALUES (?, ?, CAST(? AS BLOB))"

T = TypeVar("T")


def database_path(spec: str) -> Path:
    """The file a spec names: ``sqlite`` -> ``sessionstore.db``; ``sqlite:///rel.db`` -> ``rel.db``;
    ``sqlite:////abs/s.db`` -> ``/abs/s.db``. Raises ConfigurationError for anything else."""
    if spec.strip().lower() == "sqlite":
        return Path(DEFAULT_PATH)
    try:
        url: StoreURL | None = parse_url(spec, what="SQLite store spec")
    except ConfigurationError:
        url = None
    path = unquote(url.path) if url is not None else ""
    if (
        url is None
        or url.scheme != "sqlite"
        or url.username is not None
        or url.host
        or not path.startswith("/")
        or path == "/"
    ):
        raise ConfigurationError(
            f"SQLite store spec {redact_url(spec)!r} must be 'sqlite', "
            "'sqlite:///relative/path.db' or 'sqlite:////absolute/path.db'"
        )
    if url.query is not None or url.fragment is not None:
        raise ConfigurationError(
            f"SQLite store spec {redact_url(spec)!r}: pass options as open_store keywords "
            "(on the sessionstore command line: -o key=value), not in the URL"
        )
    if path[1:] == ":memory:":
        raise ConfigurationError(
            "sqlite:///:memory: would give each handle its own private database; "
            "use the 'memory' backend for an in-process store"
        )
    return Path(path[1:])  # sqlite:///x -> "x"; sqlite:////x -> "/x"


def create_backend(
    spec: str,
    *,
    namespace: str,
    busy_timeout: float = 5.0,
    synchronous: str = "normal",
) -> SQLiteBackend:
    """The entry point. Opens (creating it owner-only if needed) and migrates the database.

    ``busy_timeout``: seconds a hook keeps retrying while other processes hold the write lock.
    ``synchronous``: SQLite's durability level; ``normal`` (the default, with WAL) survives a
    crashed process but may lose the last commits on power loss; ``full`` syncs every commit.
    """
    if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float):
        raise ConfigurationError(f"busy_timeout must be a number of seconds, not {busy_timeout!r}")
    if not 0 <= busy_timeout < float("inf"):
        raise ConfigurationError(f"busy_timeout must be >= 0 seconds, not {busy_timeout!r}")
    if synchronous not in _SYNCHRONOUS:
        raise ConfigurationError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
    path = database_path(spec)
    return SQLiteBackend(
        _connect(path, synchronous), path, namespace=namespace, busy_timeout=busy_timeout
    )


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    where = str(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise StoreUnavailableError(
            f"cannot open SQLite database {where}: folder {folder} does not exist (an absolute "
            "path takes four slashes: sqlite:////abs/path.db; three start a relative one)"
        )
    _create_owner_only(path, where)
    conn = None
    try:
        conn = sqlite3.connect(where, timeout=0, isolation_level=None, check_same_thread=False)
        # Switching a new file to WAL takes an exclusive lock: processes opening it together wait.
        mode = _with_busy_retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone(), where)
        if mode is None or str(mode[0]).lower() != "wal":
            raise StoreUnavailableError(
                f"SQLite database {where} cannot use WAL mode (journal mode {mode!r}); its "
                "filesystem may not support it (network filesystems do not)"
            )
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        _with_busy_retry(lambda: migrate(conn, where), where)
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise _unavailable(exc, where) from None
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return conn


def _create_owner_only(path: Path, where: str) -> None:
    """Create the database file, owner-only (0600), unless a file is already there.

    Created here, before SQLite sees it, because SQLite gives its -wal and -shm files the same
    permissions as the database. A dangling symlink is followed to create its target: ``O_EXCL``
    refuses the link itself, and SQLite would then create the target with the umask's mode.
    Raises :class:`StoreUnavailableError` for a directory at ``path`` or a file that cannot be
    created.
    """
    if path.is_dir():
        raise StoreUnavailableError(
            f"cannot open SQLite database {where}: {where} is a directory; name a file, "
            f"e.g. sqlite:///{path / 'sessions.db'}"
        )
    target, shown = path, where
    if path.is_symlink() and not path.exists():
        target = Path(os.path.realpath(path))
        shown = f"{where} (a symbolic link to {target})"
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreUnavailableError(
            f"cannot create SQLite database {shown}: {exc.strerror}"
        ) from None


def _with_busy_retry(operation: Callable[[], T], where: str, seconds: float = 30.0) -> T:
    """For opening only (no event loop yet): retry a locked database for a while."""
    started = time.monotonic()
    while True:
        try:
            return operation()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() - started > seconds:
                raise
            time.sleep(0.01)


def _is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    ) or ("locked" in str(exc))


def _unavailable(exc: sqlite3.Error, where: str) -> StoreUnavailableError:
    text = str(exc)
    if "not a database" in text:
        return StoreUnavailableError(
            f"{where} is not a SQLite database (or it is encrypted or damaged)"
        )
    if "unable to open" in text or "readonly" in text or "permission" in text.lower():
        return StoreUnavailableError(
            f"cannot open SQLite database {where} for writing: {text} (check its permissions)"
        )
    return StoreUnavailableError(f"SQLite database {where}: {type(exc).__name__}: {text}")


def _sql_hook(
    method: Callable[..., T],
) -> Callable[..., Coroutine[Any, Any, T]]:
    """Make a synchronous method into an async hook that retries while the database is locked."""

    @functools.wraps(method)
    async def hook(self: SQLiteBackend, *args: Any) -> T:
        try:
            return method(self, *args)
        except sqlite3.Error as exc:
            return await self._retry(exc, method, args)

    return hookimpl(hook)


def _settle(future: asyncio.Future[str], task: asyncio.Task[str]) -> None:
    """Pass ``task``'s outcome on to ``future`` (unless its caller gave up)."""
    if future.done():  # the caller gave up: still collect the outcome, so none is unseen
        if not task.cancelled():
            task.exception()
        return
    if task.cancelled():
        future.cancel()
    elif task.exception() is not None:
        future.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        future.set_result(task.result())


class SQLiteBackend:
    """The hooks of one namespace of one SQLite database."""

    def __init__(
        self, conn: sqlite3.Connection, path: Path, *, namespace: str, busy_timeout: float
    ) -> None:
        self._conn = conn
        self._path = str(path)
        self._ns = namespace
        self._busy_timeout = busy_timeout
        self._appends: list[tuple[tuple[Any, ...], asyncio.Future[str]]] = []

    def __repr__(self) -> str:
        return f"<SQLiteBackend {self._path} namespace={self._ns!r}>"

    # -- plumbing -------------------------------------------------------------------------------

    async def _retry(
        self, error: sqlite3.Error, method: Callable[..., T], args: tuple[Any, ...]
    ) -> T:
        started = time.monotonic()
        attempt = 0
        while True:
            if self._conn.in_transaction:
                self._conn.rollback()
            if not _is_busy(error):
                raise _unavailable(error, self._path) from None
            waited = time.monotonic() - started
            if waited >= self._busy_timeout:
                raise StoreUnavailableError(
                    f"SQLite database {self._path} stayed locked by another connection for "
                    f"{waited:.1f} s (busy_timeout={self._busy_timeout}); giving up"
                ) from None
            # Full jitter, growing to 20 ms: other processes' transactions last microseconds.
            await asyncio.sleep(random.uniform(0, min(0.02, 0.0002 * 2**attempt)))
            attempt += 1
            try:
                return method(self, *args)
            except sqlite3.Error as exc:
                error = exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock at once (no upgrade deadlocks)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT leaves the transaction open
                conn.rollback()
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot across several SELECTs."""
        conn = self._conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.rollback()

    @hookimpl
    def store_capabilities(self) -> Mapping[str, str]:
        return {
            Capability.EVENT_NOTIFICATIONS: "SQLite cannot tell another connection or process "
            "that the file changed: watch_events polls the database"
        }

    def _is_live(self, conn: sqlite3.Connection, session_id: str, now_ms: int) -> bool:
        row = conn.execute(
            f"SELECT 1 FROM sessions WHERE namespace = ? AND id = ? AND {_LIVE}",
            (self._ns, session_id, now_ms),
        ).fetchone()
        return row is not None

    # -- sessions -------------------------------------------------------------------------------

    @_sql_hook
    def session_create(self, record: SessionRecord, now_ms: int) -> None:
        row = (
            self._ns,
            record.id,
            record.version,
            record.deadline_ms,
            record.payload,
            record.incarnation,
        )
        try:
            self._conn.execute(_INSERT, row)
            return
        except sqlite3.IntegrityError:
            pass
        with self._write() as conn:  # the id is taken: by a live session, or an expired one
            if self._is_live(conn, record.id, now_ms):
                raise SessionExistsError(record.id)
            conn.execute("DELETE FROM sessions WHERE namespace = ? AND id = ?", row[:2])
            conn.execute(_INSERT, row)

    @_sql_hook
    def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        row = self._conn.execute(
            "SELECT version, deadline, CAST(payload AS BLOB), incarnation FROM sessions "
            f"WHERE namespace = ? AND id = ? AND {_LIVE}",
            (self._ns, session_id, now_ms),
        ).fetchone()
        return None if row is None else new_record((session_id, *row))

    @hookimpl
    async def raw_get(self, session_id: str) -> object:
        return self._conn.execute(
            "SELECT version, deadline, CAST(payload AS BLOB), incarnation FROM sessions "
            f"WHERE namespace = ? AND id = ? AND {_LIVE}",
            (self._ns, session_id, int(time.time() * 1000)),
        ).fetchone()

    @_sql_hook
    def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Mapping[str, SessionRecord]:
        rows = self._conn.execute(
            "SELECT id, version, deadline, CAST(payload AS BLOB), incarnation FROM sessions "
            "WHERE namespace = ? "
            f"AND id IN (SELECT value FROM json_each(?)) AND {_LIVE}",
            (self._ns, json.dumps(list(session_ids)), now_ms),
        ).fetchall()
        return {row[0]: SessionRecord(*row) for row in rows}

    @_sql_hook
    def session_update(self, record: SessionRecord, now_ms: int) -> None:
        updated = self._conn.execute(
            "UPDATE sessions SET version = ?, deadline = ?, payload = ? "
            "WHERE namespace = ? AND id = ? AND version = ? AND (?7 = 0 OR incarnation = ?7) "
            f"AND {_LIVE}",
            (
                record.version,
                record.deadline_ms,
                record.payload,
                self._ns,
                record.id,
                record.version - 1,
                record.incarnation,
                now_ms,
            ),
        ).rowcount
        if updated != 1:
            # Only to name the error: the update above already refused atomically.
            if self._is_live(self._conn, record.id, now_ms):
                raise ConflictError(record.id)
            raise SessionNotFoundError(record.id)

    @_sql_hook
    def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        with self._write() as conn:
            stored = {
                row[0]: row[1:]
                for row in conn.execute(
                    "SELECT id, version, incarnation FROM sessions WHERE namespace = ? "
                    f"AND id IN (SELECT value FROM json_each(?)) AND {_LIVE}",
                    (self._ns, json.dumps([r.id for r in records]), now_ms),
                )
            }
            missing = [r.id for r in records if r.id not in stored]
            if missing:
                raise SessionNotFoundError(*missing)
            stale = [
                r.id
                for r in records
                if stored[r.id][0] != r.version - 1
                or (r.incarnation != 0 and stored[r.id][1] != r.incarnation)
            ]
            if stale:
                raise ConflictError(*stale)
            conn.executemany(
                "UPDATE sessions SET version = ?, deadline = ?, payload = ? "
                "WHERE namespace = ? AND id = ?",
                [(r.version, r.deadline_ms, r.payload, self._ns, r.id) for r in records],
            )

    @_sql_hook
    def session_delete(self, session_id: str, now_ms: int) -> bool:
        row = self._conn.execute(
            "DELETE FROM sessions WHERE namespace = ? AND id = ? RETURNING deadline",
            (self._ns, session_id),
        ).fetchone()
        return row is not None and (row[0] is None or row[0] > now_ms)

    @_sql_hook
    def session_count(self, now_ms: int) -> int:
        # Rows counted by triggers, less the expired ones found through the deadline index.
        count: int = self._conn.execute(
            "SELECT coalesce((SELECT n FROM session_counts WHERE namespace = ?1), 0) - "
            "(SELECT count(*) FROM sessions WHERE namespace = ?1 AND deadline <= ?2)",
            (self._ns, now_ms),
        ).fetchone()[0]
        return count

    @_sql_hook
    def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        rows = self._conn.execute(
            "SELECT id, version, deadline, CAST(payload AS BLOB), incarnation FROM sessions "
            "WHERE namespace = ? AND id > ? "
            f"AND {_LIVE} ORDER BY id LIMIT ?",
            (self._ns, cursor or "", now_ms, limit + 1),
        ).fetchall()
        page = [SessionRecord(*row) for row in rows[:limit]]
        return page, (page[-1].id if len(rows) > limit else None)

    @_sql_hook
    def session_purge_expired(self, now_ms: int) -> int:
        with self._write() as conn:
            purged: int = conn.execute(
                "DELETE FROM sessions WHERE namespace = ? AND deadline <= ?", (self._ns, now_ms)
            ).rowcount
        return purged

    @_sql_hook
    def session_count_expired(self, now_ms: int) -> int:
        # The rows session_purge_expired deletes, through the same deadline index.
        expired: int = self._conn.execute(
            "SELECT count(*) FROM sessions WHERE namespace = ? AND deadline <= ?",
            (self._ns, now_ms),
        ).fetchone()[0]
        return expired

    # -- last event id --------------------------------------------------------------------------

    @_sql_hook
    def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        updated = self._conn.execute(
            "UPDATE sessions SET last_event_id = ?, deadline = ? "
            f"WHERE namespace = ? AND id = ? AND {_LIVE}",
            (event_id, deadline_ms, self._ns, session_id, now_ms),
        ).rowcount
        if updated != 1:
            raise SessionNotFoundError(session_id)

    @_sql_hook
    def last_event_id_get(self, session_id: str, now_ms: int) -> str | None:
        row = self._conn.execute(
            f"SELECT last_event_id FROM sessions WHERE namespace = ? AND id = ? AND {_LIVE}",
            (self._ns, session_id, now_ms),
        ).fetchone()
        if row is None:
            raise SessionNotFoundError(session_id)
        last: str | None = row[0]
        return last

    # -- moving sessions ------------------------------------------------------------------------

    @_sql_hook
    def session_dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT version, deadline, CAST(payload AS BLOB), incarnation, last_event_id "
                "FROM sessions "
                f"WHERE namespace = ? AND id = ? AND {_LIVE}",
                (self._ns, session_id, now_ms),
            ).fetchone()
            if row is None:
                return None
            streams = []
            for handle, stream_id in conn.execute(
                "SELECT handle, stream_id FROM streams WHERE namespace = ? AND session_id = ? "
                "ORDER BY handle",
                (self._ns, session_id),
            ).fetchall():
                events = conn.execute(
                    "SELECT CAST(data AS BLOB) FROM events WHERE handle = ? ORDER BY seq",
                    (handle,),
                ).fetchall()
                streams.append((stream_id, tuple(data for (data,) in events)))
        record = new_record((session_id, row[0], row[1], row[2], row[3]))
        return SessionDump(record, row[4], tuple(streams))

    @_sql_hook
    def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        record = dump.record
        with self._write() as conn:
            if self._is_live(conn, record.id, now_ms):
                return False
            conn.execute(
                "DELETE FROM sessions WHERE namespace = ? AND id = ?", (self._ns, record.id)
            )
            conn.execute(
                "INSERT INTO sessions "
                "(namespace, id, version, deadline, payload, incarnation, last_event_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self._ns, *record[:4], record.incarnation, dump.last_event_id),
            )
            for stream_id, events in dump.streams:
                kept = events[-retention:]
                (handle,) = conn.execute(
                    "INSERT INTO streams (namespace, session_id, stream_id, next_seq) "
                    "VALUES (?, ?, ?, ?) RETURNING handle",
                    (self._ns, record.id, stream_id, len(kept) + 1),
                ).fetchone()
                conn.executemany(
                    _INSERT_EVENT,
                    [(handle, seq, data) for seq, data in enumerate(kept, start=1)],
                )
        return True

    # -- events ---------------------------------------------------------------------------------

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        """Appends made in the same turn of the event loop share one transaction (a group
        commit): an MCP server's concurrent streams cost one commit per turn, not per event."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        self._appends.append(((session_id, stream_id, data, retention, now_ms), future))
        if len(self._appends) == 1:
            loop.call_soon(self._flush_appends)
        return await future

    def _flush_appends(self) -> None:
        batch, self._appends = self._appends, []
        outcomes: list[str | SessionNotFoundError] = []
        try:
            with self._write() as conn:
                for args, _ in batch:
                    try:
                        outcomes.append(self._append_in(conn, *args))
                    except SessionNotFoundError as exc:  # raised before it wrote anything
                        outcomes.append(exc)
        except Exception:
            # Locked by another process (or worse): each append alone, with the usual retries
            # (which raise what is really wrong, as the caller's own error).
            for args, future in batch:
                if not future.done():
                    task = asyncio.ensure_future(self._append_alone(args))
                    task.add_done_callback(functools.partial(_settle, future))
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its caller was cancelled; the event is stored all the same
                continue
            if isinstance(outcome, SessionNotFoundError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _append_alone(self, args: tuple[Any, ...]) -> str:
        try:
            return self._append_one(*args)
        except sqlite3.Error as exc:
            return await self._retry(exc, SQLiteBackend._append_one, args)

    def _append_one(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        with self._write() as conn:
            return self._append_in(conn, session_id, stream_id, data, retention, now_ms)

    def _append_in(
        self,
        conn: sqlite3.Connection,
        session_id: str,
        stream_id: str,
        data: bytes | None,
        retention: int,
        now_ms: int,
    ) -> str:
        """One append inside the caller's write transaction."""
        if not self._is_live(conn, session_id, now_ms):
            raise SessionNotFoundError(session_id)
        row = conn.execute(
            "INSERT INTO streams (namespace, session_id, stream_id, next_seq) "
            "VALUES (?, ?, ?, 2) ON CONFLICT (namespace, session_id, stream_id) "
            "DO UPDATE SET next_seq = next_seq + 1 RETURNING handle, next_seq - 1",
            (self._ns, session_id, stream_id),
        ).fetchone()
        handle, seq = row
        conn.execute(_INSERT_EVENT, (handle, seq, data))
        if seq > retention:
            conn.execute(
                "DELETE FROM events WHERE handle = ? AND seq <= ?", (handle, seq - retention)
            )
        return f"{handle}-{seq}"

    @_sql_hook
    def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        parsed = parse_event_id(event_id)
        if parsed is None:
            raise EventNotFoundError(event_id)
        handle, seq = parsed
        with self._read() as conn:
            stream = conn.execute(
                "SELECT session_id, stream_id, next_seq FROM streams "
                "WHERE handle = ? AND namespace = ?",
                (handle, self._ns),
            ).fetchone()
            if (
                stream is None
                or (session_id is not None and stream[0] != session_id)
                or not 1 <= seq < stream[2]
                or not self._is_live(conn, stream[0], now_ms)
            ):
                raise EventNotFoundError(event_id)
            first = conn.execute("SELECT min(seq) FROM events WHERE handle = ?", (handle,))
            oldest = first.fetchone()[0]
            if oldest is None or seq < oldest:
                raise EventNotFoundError(event_id, evicted=True)
            rows = conn.execute(
                "SELECT seq, CAST(data AS BLOB) FROM events "
                "WHERE handle = ? AND seq > ? ORDER BY seq",
                (handle, seq),
            ).fetchall()
        stream_id: str = stream[1]
        return stream_id, [Event(f"{handle}-{s}", stream_id, data) for s, data in rows]

    # -- the store ------------------------------------------------------------------------------

    @_sql_hook
    def store_clear(self) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM sessions WHERE namespace = ?", (self._ns,))
            conn.execute("DELETE FROM streams WHERE namespace = ?", (self._ns,))
            # Its row count (0 now) too: a cleared namespace leaves nothing behind.
            conn.execute("DELETE FROM session_counts WHERE namespace = ?", (self._ns,))

    @hookimpl
    async def store_close(self) -> None:
        self._conn.close()

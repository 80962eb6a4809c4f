"""One file per session in a directory, shared by the processes of one host.

Layout under the store's directory (``files:///var/lib/sessions``), per namespace::

    <hex(namespace)>.lock            the namespace's write lock (flock)
    <hex(namespace)>/<name>.session  one file per session: its record, last event id and events
    <hex(namespace)>/batch.journal   only while a batch update is being applied

How the guarantees are kept:

* **Whole-file replacement.** Every write builds the session's complete new file under a temporary
  name in the same directory and ``os.replace``-s it over the old one, so a reader sees the old
  file or the new one, never a mix. With ``fsync=True`` (the default) the data and the directory
  entry are on disk before the hook returns.
* **Compare-and-set.** Every write runs under ``fcntl.flock(LOCK_EX)`` on the namespace's lock
  file, opened afresh for each operation, so writers exclude each other across tasks, threads
  (each holds its own open file description) and processes; the kernel drops the lock of a
  process that dies. The version check and the replacement happen under that lock.
* **Batches.** Every record is checked under the lock before anything is written, so a refused
  batch writes nothing. Then all the new files are staged, a journal naming them is written
  atomically, and they are moved into place; a writer that finds a journal when it takes the lock
  finishes the moves of a writer that died, so on disk a batch lands whole or not at all.
* **Reads** hold the same lock shared (``LOCK_SH``): readers run together, but never while a
  writer holds it, so no reader, in any process, sees a batch half moved into place, and every
  hook takes effect at one instant (linearizable) across processes.
* **Expiry** compares each record's deadline with the ``now_ms`` of the call; nothing expired is
  ever returned, whether or not a purge ran.
* **Strange ids.** A file name is the hex spelling of the id's bytes (``*``, ``/``, ``..`` and
  ``%`` become harmless hex digits), or, for an id longer than 100 bytes, the hex of its first 32
  bytes and the SHA-256 of the whole id, so every name stays far below the 255-byte limit. The
  file also holds the id, which every read checks.
* **Events** live in their session's file, so they go with it. An event id is
  ``<name>.<epoch>.<stream>.<seq>``: ``epoch`` is drawn at random (64 bits) whenever the file is
  created, so the ids of a deleted session never name the events of its successor.

Each operation runs in a worker thread (``asyncio.to_thread``): file I/O and waiting for another
process's lock never block the event loop. Counting and listing read every file of the namespace:
this backend is made for a few thousand sessions on one host, and appending an event rewrites its
session's file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

from sessionstore import (
    ConfigurationError,
    ConflictError,
    CorruptRecordError,
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

__all__ = ["FORMAT_VERSION", "FilesBackend", "create_backend", "directory_of", "file_name"]

FORMAT_VERSION = 1
"""The version written in every session file's header; a file of another version is refused."""

SCHEME = "files"
_SUFFIX = ".session"
_JOURNAL = "batch.journal"
_TEMP_PREFIX = ".tmp-"
_MAX_HEX_ID_BYTES = 100  # 200 hex digits; longer ids are named by a hash
_EVENT_ID = re.compile(
    r"(?P<name>[0-9a-f]{2,200}|[0-9a-f]{64}-[0-9a-f]{64})"
    r"\.(?P<epoch>[0-9a-f]{16})\.(?P<stream>[1-9][0-9]{0,8})\.(?P<seq>[1-9][0-9]{0,17})\Z"
)

P = ParamSpec("P")
T = TypeVar("T")


def create_backend(spec: str, *, namespace: str, fsync: bool = True) -> FilesBackend:
    """The entry point: ``files:///absolute/dir``, ``files://localhost/absolute/dir`` or
    ``files:relative/dir`` (relative to the working directory at open time).

    ``fsync=False`` skips flushing each write to disk: faster, still atomic for every reader,
    but the newest writes may be lost if the machine (not just the process) crashes.
    """
    if not isinstance(fsync, bool):
        raise ConfigurationError(f"fsync must be True or False, not {fsync!r}")
    return FilesBackend(directory_of(spec), namespace, fsync=fsync)


def directory_of(spec: str) -> Path:
    """The absolute directory a ``files:`` spec names; :class:`ConfigurationError` if none."""
    parts = urlsplit(spec)
    if (
        parts.scheme.lower() != SCHEME
        or parts.netloc not in ("", "localhost")
        or parts.query
        or parts.fragment
        or not unquote(parts.path).strip()
    ):
        raise ConfigurationError(
            f"files store spec {redact_url(spec)!r} must name a directory: "
            "'files:///absolute/dir' or 'files:relative/dir'"
        )
    return Path(unquote(parts.path)).absolute()


def file_name(session_id: str) -> str:
    """The name of the file of ``session_id`` (without its ``.session`` suffix)."""
    raw = session_id.encode()
    if len(raw) <= _MAX_HEX_ID_BYTES:
        return raw.hex()
    return f"{raw[:32].hex()}-{hashlib.sha256(raw).hexdigest()}"


@dataclass
class _Stream:
    stream_id: str
    next_seq: int = 1
    events: list[tuple[int, bytes | None]] = field(default_factory=list)

    def push(self, data: bytes | None, retention: int) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.events.append((seq, data))
        del self.events[: max(0, len(self.events) - retention)]
        return seq


@dataclass
class _Entry:
    """Everything stored of one session: the content of its file."""

    record: SessionRecord
    epoch: str = field(default_factory=lambda: secrets.token_hex(8))
    last_event_id: str | None = None
    streams: list[_Stream] = field(default_factory=list)

    def live(self, now_ms: int) -> bool:
        deadline = self.record.deadline_ms
        return deadline is None or deadline > now_ms

    def stale(self, write: SessionRecord) -> bool:
        """Whether compare-and-set refuses ``write`` (see the session_update hookspec)."""
        stored = self.record
        return stored.version != write.version - 1 or (
            write.incarnation != 0 and stored.incarnation != write.incarnation
        )


class FilesBackend:
    """The hooks of one namespace of a directory of session files."""

    def __init__(self, root: Path, namespace: str, *, fsync: bool) -> None:
        self._root = root
        space = namespace.encode().hex()
        self._dir = root / space
        self._lock_path = root / f"{space}.lock"
        self._fsync = fsync

    def __repr__(self) -> str:
        return f"FilesBackend({str(self._root)!r})"

    # -- running the blocking parts -----------------------------------------------------------

    async def _run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``function`` in a worker thread; an ``OSError`` becomes StoreUnavailableError."""
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except OSError as exc:
            raise StoreUnavailableError(
                f"files store at {self._root}: {exc.strerror or exc} "
                f"({type(exc).__name__}{f': {exc.filename}' if exc.filename else ''})"
            ) from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the namespace's write lock, after finishing any batch a crashed writer left."""
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        while True:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # store_clear removes the lock file while holding it: whoever was waiting on the
                # removed file holds a lock nobody else will ask for, and must take the new one.
                if os.path.samestat(os.fstat(fd), os.stat(self._lock_path)):
                    break
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            self._recover()
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextlib.contextmanager
    def _shared(self) -> Iterator[None]:
        """Hold the namespace's lock shared, for reading: readers run together, but never while
        a writer holds it, so no batch is seen half moved into place. A batch a crashed writer
        left is finished first (under the write lock). Never call it holding the write lock."""
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        while True:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                current = os.path.samestat(os.fstat(fd), os.stat(self._lock_path))
            except FileNotFoundError:
                current = False  # removed by store_clear while we waited: take the new one
            except BaseException:
                os.close(fd)
                raise
            if current and not (self._dir / _JOURNAL).exists():
                break
            os.close(fd)
            if current:
                with self._locked():  # finishes the crashed writer's batch
                    pass
        try:
            yield
        finally:
            os.close(fd)

    async def _read_shared(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """:meth:`_run` ``function``, a read, holding the namespace's lock shared."""

        def read() -> T:
            with self._shared():
                return function(*args, **kwargs)

        return await self._run(read)

    # -- files ----------------------------------------------------------------------------------

    def _path(self, session_id: str) -> Path:
        return self._dir / (file_name(session_id) + _SUFFIX)

    def _session_files(self) -> list[str]:
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(_SUFFIX))

    def _read(self, path: Path, session_id: str | None) -> _Entry | None:
        """The entry in ``path`` (``None`` if there is no such file). Checks the id it holds."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        shown = session_id if session_id is not None else _id_of(path.name)
        try:
            entry = _decode(data)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise CorruptRecordError(shown, f"{path.name}: {exc}") from None
        if session_id is not None and entry.record.id != session_id:
            raise CorruptRecordError(shown, f"{path.name} holds session {entry.record.id!r}")
        return entry

    def _read_live(self, session_id: str, now_ms: int) -> _Entry | None:
        entry = self._read(self._path(session_id), session_id)
        return entry if entry is not None and entry.live(now_ms) else None

    def _stage(self, data: bytes) -> str:
        """Write ``data`` to a new temporary file of the namespace directory; return its path."""
        self._dir.mkdir(mode=0o700, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self._dir, prefix=_TEMP_PREFIX)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                if self._fsync:
                    file.flush()
                    os.fsync(file.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return temp

    def _write(self, entry: _Entry) -> None:
        """Replace the session's file with ``entry``, whole (call with the lock held)."""
        os.replace(self._stage(_encode(entry)), self._path(entry.record.id))
        self._sync_dir()

    def _sync_dir(self) -> None:
        if self._fsync:
            fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _recover(self) -> None:
        """Finish the moves of a batch whose writer died after writing its journal."""
        journal = self._dir / _JOURNAL
        try:
            moves = json.loads(journal.read_bytes())
        except FileNotFoundError:
            return
        for temp, final in moves:
            with contextlib.suppress(FileNotFoundError):  # already moved before the crash
                os.replace(self._dir / temp, self._dir / final)
        journal.unlink()
        self._sync_dir()

    # -- the operations, run in a worker thread --------------------------------------------------

    def _create(self, record: SessionRecord, now_ms: int) -> None:
        with self._locked():
            if self._read_live(record.id, now_ms) is not None:
                raise SessionExistsError(record.id)
            self._write(_Entry(record))  # an expired one is replaced whole, events and all

    def _get_many(self, session_ids: Sequence[str], now_ms: int) -> dict[str, SessionRecord]:
        found = {}
        for session_id in session_ids:
            entry = self._read_live(session_id, now_ms)
            if entry is not None:
                found[session_id] = entry.record
        return found

    def _update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        with self._locked():
            found = [self._read_live(r.id, now_ms) for r in records]
            missing = [r.id for r, e in zip(records, found, strict=True) if e is None]
            if missing:
                raise SessionNotFoundError(*missing)
            entries = [e for e in found if e is not None]
            stale = [r.id for r, e in zip(records, entries, strict=True) if e.stale(r)]
            if stale:
                raise ConflictError(*stale)
            for record, entry in zip(records, entries, strict=True):
                # Keep the stored incarnation (a write with incarnation 0 never read it).
                entry.record = record._replace(incarnation=entry.record.incarnation)
            if len(entries) == 1:
                self._write(entries[0])
            else:
                self._commit(entries)

    def _commit(self, entries: list[_Entry]) -> None:
        """Move several new files into place, all or nothing even if this process dies."""
        moves: list[tuple[str, str]] = []
        try:
            for entry in entries:
                temp = self._stage(_encode(entry))
                moves.append((os.path.basename(temp), file_name(entry.record.id) + _SUFFIX))
            journal = self._stage(json.dumps(moves).encode())
        except BaseException:
            for temp, _ in moves:
                with contextlib.suppress(OSError):
                    os.unlink(self._dir / temp)
            raise
        os.replace(journal, self._dir / _JOURNAL)  # from here on, the batch will land whole
        self._sync_dir()
        self._recover()

    def _delete(self, session_id: str, now_ms: int) -> bool:
        with self._locked():
            path = self._path(session_id)
            try:
                entry = self._read(path, session_id)
            except CorruptRecordError:
                live = True  # deleting is how an unreadable session is got rid of
            else:
                if entry is None:
                    return False
                live = entry.live(now_ms)
            path.unlink()
            self._sync_dir()
            return live

    def _count(self, now_ms: int) -> int:
        count = 0
        for name in self._session_files():
            entry = self._read(self._dir / name, None)
            count += entry is not None and entry.live(now_ms)
        return count

    def _page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[list[SessionRecord], str | None]:
        # Keyset paging by file name: a session that stays live keeps its name, so it is seen
        # once however the directory changes between pages.
        page: list[tuple[str, SessionRecord]] = []
        for name in self._session_files():
            if cursor is not None and name <= cursor:
                continue
            entry = self._read(self._dir / name, None)
            if entry is None or not entry.live(now_ms):
                continue
            if len(page) == limit:  # one more live session exists: there is a next page
                return [r for _, r in page], page[-1][0]
            page.append((name, entry.record))
        return [r for _, r in page], None

    def _purge(self, now_ms: int) -> int:
        with self._locked():
            removed = 0
            for name in self._session_files():
                entry = self._read(self._dir / name, None)
                if entry is not None and not entry.live(now_ms):
                    (self._dir / name).unlink()
                    removed += 1
            # Under the lock no writer is between staging and moving: these are leftovers.
            for name in os.listdir(self._dir) if self._dir.exists() else ():
                if name.startswith(_TEMP_PREFIX):
                    (self._dir / name).unlink()
            if removed:
                self._sync_dir()
            return removed

    def _count_expired(self, now_ms: int) -> int:
        # What _purge would remove: the same test, file by file, removing nothing.
        count = 0
        for name in self._session_files():
            entry = self._read(self._dir / name, None)
            if entry is not None and not entry.live(now_ms):
                count += 1
        return count

    def _last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        with self._locked():
            entry = self._read_live(session_id, now_ms)
            if entry is None:
                raise SessionNotFoundError(session_id)
            entry.last_event_id = event_id
            entry.record = entry.record._replace(deadline_ms=deadline_ms)
            self._write(entry)

    def _last_event_id_get(self, session_id: str, now_ms: int) -> str | None:
        entry = self._read_live(session_id, now_ms)
        if entry is None:
            raise SessionNotFoundError(session_id)
        return entry.last_event_id

    def _append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        with self._locked():
            entry = self._read_live(session_id, now_ms)
            if entry is None:
                raise SessionNotFoundError(session_id)
            numbers = {s.stream_id: n for n, s in enumerate(entry.streams, start=1)}
            number = numbers.get(stream_id)
            if number is None:  # a new stream: numbered in creation order
                entry.streams.append(_Stream(stream_id))
                number = len(entry.streams)
            seq = entry.streams[number - 1].push(data, retention)
            self._write(entry)
            return f"{file_name(session_id)}.{entry.epoch}.{number}.{seq}"

    def _replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, list[Event]]:
        match = _EVENT_ID.match(event_id)
        if match is None:
            raise EventNotFoundError(event_id)
        name, epoch = match["name"], match["epoch"]
        number, seq = int(match["stream"]), int(match["seq"])
        if session_id is not None and file_name(session_id) != name:
            raise EventNotFoundError(event_id)  # an event of another session
        entry = self._read(self._dir / (name + _SUFFIX), session_id)
        if (
            entry is None
            or not entry.live(now_ms)
            or entry.epoch != epoch
            or number > len(entry.streams)
        ):
            raise EventNotFoundError(event_id)
        stream = entry.streams[number - 1]
        if seq >= stream.next_seq:
            raise EventNotFoundError(event_id)
        if not stream.events or seq < stream.events[0][0]:
            raise EventNotFoundError(event_id, evicted=True)
        prefix = f"{name}.{epoch}.{number}."
        events = [Event(f"{prefix}{s}", stream.stream_id, d) for s, d in stream.events if s > seq]
        return stream.stream_id, events

    def _dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        entry = self._read_live(session_id, now_ms)  # one file: one consistent view
        if entry is None:
            return None
        streams = tuple((s.stream_id, tuple(d for _, d in s.events)) for s in entry.streams)
        return SessionDump(entry.record, entry.last_event_id, streams)

    def _load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        with self._locked():
            if self._read_live(dump.record.id, now_ms) is not None:
                return False
            entry = _Entry(dump.record, last_event_id=dump.last_event_id)
            for stream_id, events in dump.streams:
                stream = _Stream(stream_id)
                for data in events:
                    stream.push(data, retention)
                entry.streams.append(stream)
            self._write(entry)  # new epoch: the events get new ids
            return True

    def _raw_get(self, session_id: str) -> bytes | None:
        try:
            return self._path(session_id).read_bytes()
        except FileNotFoundError:
            return None

    def _clear(self) -> None:
        with self._locked():
            for name in os.listdir(self._dir) if self._dir.exists() else ():
                (self._dir / name).unlink()
            with contextlib.suppress(FileNotFoundError):
                self._dir.rmdir()
            self._lock_path.unlink()  # last, still holding it: see _locked

    # -- hooks ----------------------------------------------------------------------------------

    @hookimpl
    def store_capabilities(self) -> Mapping[str, str]:
        return {}  # every capability: shared handles, atomic batches, the store's clock

    @hookimpl
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        await self._run(self._create, record, now_ms)

    @hookimpl
    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        entry = await self._read_shared(self._read_live, session_id, now_ms)
        return None if entry is None else entry.record

    @hookimpl
    async def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Mapping[str, SessionRecord]:
        return await self._read_shared(self._get_many, session_ids, now_ms)

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        await self._run(self._update_many, [record], now_ms)

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        await self._run(self._update_many, records, now_ms)

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        return await self._run(self._delete, session_id, now_ms)

    @hookimpl
    async def session_count(self, now_ms: int) -> int:
        return await self._read_shared(self._count, now_ms)

    @hookimpl
    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        return await self._read_shared(self._page, cursor, limit, now_ms)

    @hookimpl
    async def session_purge_expired(self, now_ms: int) -> int:
        return await self._run(self._purge, now_ms)

    @hookimpl
    async def session_count_expired(self, now_ms: int) -> int:
        return await self._read_shared(self._count_expired, now_ms)

    @hookimpl
    async def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        await self._run(self._last_event_id_set, session_id, event_id, deadline_ms, now_ms)

    @hookimpl
    async def last_event_id_get(self, session_id: str, now_ms: int) -> str | None:
        return await self._read_shared(self._last_event_id_get, session_id, now_ms)

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        return await self._run(self._append, session_id, stream_id, data, retention, now_ms)

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        return await self._read_shared(self._replay, event_id, session_id, now_ms)

    @hookimpl
    async def session_dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        return await self._read_shared(self._dump, session_id, now_ms)

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        return await self._run(self._load, dump, retention, now_ms)

    @hookimpl
    async def raw_get(self, session_id: str) -> object:
        """For ``sessionstore bench``: the file read ``session_get`` does, nothing else."""
        return await self._run(self._raw_get, session_id)

    @hookimpl
    async def store_clear(self) -> None:
        await self._run(self._clear)

    @hookimpl
    async def store_close(self) -> None:
        return None  # every operation opens and closes its own files


# -- the file format ------------------------------------------------------------------------------
#
# Two lines of JSON. The header: {"format", "id", "version", "deadline_ms", "incarnation",
# "epoch"}; the body: {"payload" (base64), "last_event_id", "streams": [[stream id, next
# sequence number, [[seq, base64 data or null], ...]], ...]}.


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _encode(entry: _Entry) -> bytes:
    record = entry.record
    header = {
        "format": FORMAT_VERSION,
        "id": record.id,
        "version": record.version,
        "deadline_ms": record.deadline_ms,
        "incarnation": record.incarnation,
        "epoch": entry.epoch,
    }
    body = {
        "payload": _b64(record.payload),
        "last_event_id": entry.last_event_id,
        "streams": [
            [s.stream_id, s.next_seq, [[seq, _b64(data)] for seq, data in s.events]]
            for s in entry.streams
        ],
    }
    # Compact and ASCII-only: neither line contains a newline.
    lines = (json.dumps(part, separators=(",", ":")) for part in (header, body))
    return "".join(f"{line}\n" for line in lines).encode("ascii")


def _decode(data: bytes) -> _Entry:
    header_line, _, body_line = data.partition(b"\n")
    header, body = json.loads(header_line), json.loads(body_line)
    if header["format"] != FORMAT_VERSION:
        raise ValueError(f"format {header['format']!r}, this release reads {FORMAT_VERSION}")
    record = SessionRecord(
        _typed(header["id"], str),
        _typed(header["version"], int),
        _optional(header["deadline_ms"], int),
        _bytes(body["payload"]),
        _typed(header["incarnation"], int),
    )
    streams = [
        _Stream(
            _typed(stream_id, str),
            _typed(next_seq, int),
            [(_typed(seq, int), None if d is None else _bytes(d)) for seq, d in events],
        )
        for stream_id, next_seq, events in body["streams"]
    ]
    return _Entry(
        record, _typed(header["epoch"], str), _optional(body["last_event_id"], str), streams
    )


def _typed(value: Any, kind: type[T]) -> T:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind.__name__}, found {type(value).__name__}")
    return value


def _optional(value: Any, kind: type[T]) -> T | None:
    return None if value is None else _typed(value, kind)


def _bytes(value: Any) -> bytes:
    return base64.b64decode(_typed(value, str), validate=True)


def _id_of(name: str) -> str:
    """The session id a file name spells, for error messages (hashed names stay as they are)."""
    stem = name.removesuffix(_SUFFIX)
    try:
        return bytes.fromhex(stem).decode()
    except ValueError:
        return stem

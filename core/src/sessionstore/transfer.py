"""Moving sessions whole between stores: the export file format and the migration engine.

Nothing here knows about the command line (see :mod:`sessionstore.cli`): functions take open
:class:`~sessionstore.SessionStore` objects and text streams, and report progress through a
callback. Every session moves as a :class:`~sessionstore.SessionDump` (record, last event id,
every stream's events), so version, deadline, incarnation and payload bytes arrive unchanged and a
writer holding a session can go on with compare-and-set against the new store.

The export format, ``sessionstore-export`` version 1, is JSON Lines: UTF-8, one JSON object per
line, every line's ``"type"`` saying what it is::

    {"type": "header", "format": "sessionstore-export", "version": 1, "namespace": "default",
     "backend": "sqlite", "source": "sqlite:///sessions.db", "exported_at": "2025-01-31T12:00:00Z"}
    {"type": "session", "id": "abc", "version": 3, "deadline_ms": 1738328400000,
     "incarnation": 8349, "payload": "<base64>", "last_event_id": "12-7",
     "streams": [{"id": "s1", "events": ["<base64>", null]}]}
    {"type": "end", "sessions": 1}

(each object is on one line in a file). ``source`` has any password replaced by ``***``.
``deadline_ms`` is absolute (Unix milliseconds; ``null``: never expires), ``payload`` the codec's
envelope, ``events`` each stream's retained events oldest first (``null``: a priming event). The
``end`` line counts the sessions: a file without it, or with another count, was cut short and is
refused. Readers ignore keys they do not know; a change that an older reader could not safely
ignore gets a new format version, which older readers refuse. ``docs/cli.md`` documents the
format for people.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import json
import os
import random
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ._tasks import cancel_and_wait
from .codec import decode_session
from .errors import (
    CorruptRecordError,
    ExportFormatError,
    SessionNotFoundError,
    SessionStoreError,
    TransferError,
)
from .models import validate_session_id
from .records import SessionDump, new_record
from .store import CorruptHandler, SessionStore
from .urls import redact_url

__all__ = [
    "CHECKPOINT_FORMAT",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ExportHeader",
    "ExportReader",
    "LoadOutcome",
    "MigrationCheckpoint",
    "MigrationReport",
    "TransferCounts",
    "compare_dumps",
    "dump_from_json",
    "dump_to_json",
    "export_store",
    "import_dumps",
    "load_dump",
    "load_dumps",
    "migrate",
    "verify_export",
]

EXPORT_FORMAT = "sessionstore-export"
"""The ``format`` of an export file's header line."""
EXPORT_VERSION = 1
"""The format version this release writes, and the newest it reads."""
CHECKPOINT_FORMAT = "sessionstore-migrate-checkpoint"
"""The ``format`` of a migration checkpoint file."""

CHUNK_SIZE = 500
"""Sessions read before they are written: what bounds the memory of an import or migration."""
LISTED_CONFLICTS = 20
"""Conflicting ids a :class:`TransferCounts` keeps by name (it counts all of them)."""

ProgressCallback = Callable[[int], None]
"""Called with how many more sessions were handled."""


# -- the file format --------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportHeader:
    """The first line of an export file."""

    version: int
    namespace: str
    backend: str
    source: str
    """The exported store's spec, password redacted."""
    exported_at: str
    """ISO 8601, UTC."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dump_to_json(dump: SessionDump) -> dict[str, Any]:
    """The ``session`` line of ``dump`` as a JSON-ready dict (see the module docstring)."""
    record = dump.record
    return {
        "type": "session",
        "id": record.id,
        "version": record.version,
        "deadline_ms": record.deadline_ms,
        "incarnation": record.incarnation,
        "payload": _b64(record.payload),
        "last_event_id": dump.last_event_id,
        "streams": [
            {"id": stream_id, "events": [None if data is None else _b64(data) for data in events]}
            for stream_id, events in dump.streams
        ],
    }


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def _required_int(obj: dict[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if type(value) is not int:
        raise ValueError(f"{what}: {key!r} must be an integer")
    return value


def _optional_int(obj: dict[str, Any], key: str, what: str) -> int | None:
    return None if obj.get(key) is None else _required_int(obj, key, what)


def _decode_b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"{what} is not valid base64") from None


def dump_from_json(obj: dict[str, Any]) -> SessionDump:
    """The :class:`SessionDump` of a ``session`` line; ``ValueError`` saying what is wrong.

    Checks the shape and types; the store checks the rest (id syntax, ranges, sizes) when the dump
    is loaded, and :func:`verify_export` checks that the payload decodes.
    """
    session_id = obj.get("id")
    if not isinstance(session_id, str):
        raise ValueError("a session line needs an 'id' string")
    what = f"session {session_id!r}"
    version = _required_int(obj, "version", what)
    deadline = _optional_int(obj, "deadline_ms", what)
    incarnation = _required_int(obj, "incarnation", what)
    payload = _decode_b64(obj.get("payload"), f"session {session_id!r}: 'payload'")
    last_event_id = obj.get("last_event_id")
    if last_event_id is not None and not isinstance(last_event_id, str):
        raise ValueError(f"session {session_id!r}: 'last_event_id' must be a string or null")
    raw_streams = obj.get("streams", [])
    if not isinstance(raw_streams, list):
        raise ValueError(f"session {session_id!r}: 'streams' must be a list")
    streams: list[tuple[str, tuple[bytes | None, ...]]] = []
    for stream in raw_streams:
        stream_id = stream.get("id") if isinstance(stream, dict) else None
        events = stream.get("events") if isinstance(stream, dict) else None
        if not isinstance(stream_id, str) or not isinstance(events, list):
            raise ValueError(
                f"session {session_id!r}: each stream must be {{'id': string, 'events': list}}"
            )
        where = f"session {session_id!r}: an event of stream {stream_id[:40]!r}"
        streams.append(
            (stream_id, tuple(None if e is None else _decode_b64(e, where) for e in events))
        )
    record = new_record((session_id, version, deadline, payload, incarnation))
    return SessionDump(record, last_event_id, tuple(streams))


async def export_store(
    store: SessionStore,
    out: TextIO,
    *,
    source: str,
    progress: ProgressCallback | None = None,
    on_corrupt: CorruptHandler | None = None,
) -> int:
    """Write every live session of ``store`` to ``out`` in the export format; return how many.

    ``source`` is the store's spec, written to the header with any password redacted. Sessions
    are read a page at a time (bounded memory); ones created or deleted during the export may or
    may not be in it, and each one that is was read whole at one moment.

    A stored record that cannot be decoded raises :class:`~sessionstore.CorruptRecordError` (the
    file is then incomplete: it has no end line); with ``on_corrupt``, it is left out of the file,
    handed to ``on_corrupt`` and counted by ``progress``, and the export goes on (see
    :meth:`SessionStore.iter_dumps`).
    """
    skip = on_corrupt
    if on_corrupt is not None and progress is not None:
        report, tick = on_corrupt, progress

        def counted(error: CorruptRecordError) -> None:
            tick(1)  # a bar sized by count_sessions still ends full
            report(error)

        skip = counted

    header = {
        "type": "header",
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "namespace": store.namespace,
        "backend": store.backend_name,
        "source": redact_url(source),
        "exported_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    out.write(_line(header))
    count = 0
    async for dump in store.iter_dumps(on_corrupt=skip):
        out.write(_line(dump_to_json(dump)))
        count += 1
        if progress is not None:
            progress(1)
    out.write(_line({"type": "end", "sessions": count}))
    return count


class ExportReader:
    """Reads an export file: the header when built, then the sessions by iterating.

    Iteration raises :class:`ExportFormatError`, naming the line, for anything malformed, and at
    the end when the ``end`` line is missing (the file was cut short), counts another number of
    sessions, or is followed by more lines. Blank lines are ignored. ``sessions`` counts the
    sessions read so far.
    """

    def __init__(self, lines: Iterable[str], *, name: str = "<stdin>") -> None:
        self.name = name
        self.sessions = 0
        self._lines = enumerate(lines, start=1)
        self.header = self._read_header()

    def _error(self, number: int, message: str) -> ExportFormatError:
        return ExportFormatError(f"{self.name}, line {number}: {message}")

    def _next(self) -> tuple[int, dict[str, Any]] | None:
        for number, line in self._lines:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except RecursionError:  # the parser recurses once per level: a hostile file
                raise self._error(
                    number, "nests lists or objects too deeply to be read (a damaged file?)"
                ) from None
            except ValueError:
                if not line.endswith("\n"):  # the last line, and it stops in the middle
                    raise ExportFormatError(
                        f"{self.name} was cut short in the middle of line {number} (the export "
                        "was interrupted or the file truncated)"
                    ) from None
                raise self._error(number, "not a JSON object (a damaged file?)") from None
            if not isinstance(obj, dict):
                raise self._error(number, "not a JSON object (a damaged file?)")
            return number, obj
        return None

    def _read_header(self) -> ExportHeader:
        first = self._next()
        if first is None:
            raise ExportFormatError(f"{self.name} is empty: not a sessionstore export")
        number, obj = first
        if obj.get("type") != "header" or obj.get("format") != EXPORT_FORMAT:
            raise self._error(number, f"not a {EXPORT_FORMAT} file (no header line)")
        version = obj.get("version")
        if type(version) is not int or version < 1:
            raise self._error(number, f"bad format version {version!r}")
        if version > EXPORT_VERSION:
            raise self._error(
                number,
                f"written in format version {version} by a newer sessionstore; this release "
                f"reads version {EXPORT_VERSION}: upgrade sessionstore",
            )
        return ExportHeader(
            version=version,
            namespace=str(obj.get("namespace", "")),
            backend=str(obj.get("backend", "")),
            source=str(obj.get("source", "")),
            exported_at=str(obj.get("exported_at", "")),
        )

    def __iter__(self) -> Iterator[SessionDump]:
        while (item := self._next()) is not None:
            number, obj = item
            kind = obj.get("type")
            if kind == "session":
                try:
                    dump = dump_from_json(obj)
                except ValueError as exc:
                    raise self._error(number, str(exc)) from None
                self.sessions += 1
                yield dump
            elif kind == "end":
                if obj.get("sessions") != self.sessions:
                    raise self._error(
                        number,
                        f"the end line counts {obj.get('sessions')!r} sessions but "
                        f"{self.sessions} came before it (a damaged file?)",
                    )
                extra = self._next()
                if extra is not None:
                    raise self._error(extra[0], "a line after the end line (a damaged file?)")
                return
            else:
                raise self._error(number, f"unknown line type {kind!r}")
        raise ExportFormatError(
            f"{self.name} was cut short: no end line after {self.sessions} sessions (the export "
            "was interrupted or the file truncated)"
        )


def verify_export(lines: Iterable[str], *, name: str) -> tuple[ExportHeader, int]:
    """Read a whole export file and check every line, each session's payload included; return
    its header and session count. Raises :class:`ExportFormatError` naming the first bad line."""
    reader = ExportReader(lines, name=name)
    for dump in reader:
        try:
            validate_session_id(dump.record.id)
            decode_session(dump.record)
        except SessionStoreError as exc:
            raise ExportFormatError(f"{name}, session {reader.sessions}: {exc}") from None
    return reader.header, reader.sessions


# -- loading ----------------------------------------------------------------------------------


class LoadOutcome(enum.Enum):
    """What :func:`load_dump` did with one session."""

    COPIED = "copied"
    """Written: no live session had the id."""
    PRESENT = "present"
    """Already there, the same (version, incarnation and payload): an earlier run copied it."""
    CONFLICT = "conflict"
    """A different live session has the id; it was left alone."""
    EXPIRED = "expired"
    """Its deadline passed before it could be written; nothing was written."""


async def load_dump(target: SessionStore, dump: SessionDump) -> LoadOutcome:
    """Write ``dump`` to ``target`` unless a live session has its id; never overwrites.

    A session already in ``target`` is compared with the dump (version, incarnation, payload):
    the same one is :attr:`LoadOutcome.PRESENT`, another one a :attr:`LoadOutcome.CONFLICT`.
    """
    if await target.load_session(dump):
        return LoadOutcome.COPIED
    try:
        existing = (await target.dump_session(dump.record.id)).record
    except SessionNotFoundError:  # not live there: the dump's deadline has passed
        return LoadOutcome.EXPIRED
    mine = dump.record
    if (existing.version, existing.incarnation, existing.payload) == (
        mine.version,
        mine.incarnation,
        mine.payload,
    ):
        return LoadOutcome.PRESENT
    return LoadOutcome.CONFLICT


@dataclass
class TransferCounts:
    """What an import or migration did, session by session."""

    copied: int = 0
    present: int = 0
    expired: int = 0
    conflicts: int = 0
    conflict_ids: list[str] = field(default_factory=list)
    """The first :data:`LISTED_CONFLICTS` conflicting ids."""

    def add(self, session_id: str, outcome: LoadOutcome) -> None:
        if outcome is LoadOutcome.COPIED:
            self.copied += 1
        elif outcome is LoadOutcome.PRESENT:
            self.present += 1
        elif outcome is LoadOutcome.EXPIRED:
            self.expired += 1
        else:
            self.conflicts += 1
            if len(self.conflict_ids) < LISTED_CONFLICTS:
                self.conflict_ids.append(session_id)

    @property
    def handled(self) -> int:
        return self.copied + self.present + self.expired + self.conflicts


async def _load_chunk(
    target: SessionStore,
    chunk: list[SessionDump],
    counts: TransferCounts,
    concurrency: int,
    progress: ProgressCallback | None,
) -> None:
    """Load the dumps of ``chunk`` with at most ``concurrency`` in flight; if one fails, the
    others are cancelled and the failure raised."""
    pending = iter(chunk)

    async def worker() -> None:
        for dump in pending:  # shared: each dump goes to exactly one worker
            counts.add(dump.record.id, await load_dump(target, dump))
            if progress is not None:
                progress(1)
            # A backend that never waits (SQLite) would otherwise hold the loop for the whole
            # chunk, and the reading of the next one could not overlap it.
            await asyncio.sleep(0)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(chunk)))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        await cancel_and_wait(tasks)
        raise


async def _read_chunk(
    dumps: AsyncIterator[SessionDump],
) -> tuple[list[SessionDump], Exception | None]:
    """The next :data:`CHUNK_SIZE` dumps (fewer at the end), and the exception that stopped the
    reading early, if one did: the dumps read before it are whole and still worth writing."""
    chunk: list[SessionDump] = []
    try:
        async for dump in dumps:  # leaving the loop early does not close the iterator
            chunk.append(dump)
            if len(chunk) == CHUNK_SIZE:
                break
    except Exception as exc:
        return chunk, exc
    return chunk, None


async def load_dumps(
    dumps: AsyncIterable[SessionDump],
    target: SessionStore,
    *,
    concurrency: int = 16,
    progress: ProgressCallback | None = None,
    after_chunk: Callable[[SessionDump, TransferCounts], None] | None = None,
    counts: TransferCounts | None = None,
) -> TransferCounts:
    """Load every dump into ``target`` (see :func:`load_dump`); return the counts.

    Dumps are read :data:`CHUNK_SIZE` at a time, the next chunk while the current one is written
    with up to ``concurrency`` loads in flight, so at most two chunks are held in memory.
    ``after_chunk(last, counts)`` runs once every dump of a chunk is settled, ``last`` being its
    last dump. When reading fails (a damaged file, an unreachable source), the dumps read before
    the failure are written, then the failure is raised.
    """
    counts = counts if counts is not None else TransferCounts()
    source = aiter(dumps)
    reading: asyncio.Future[tuple[list[SessionDump], Exception | None]] | None
    reading = asyncio.ensure_future(_read_chunk(source))
    try:
        while reading is not None:
            chunk, failure = await reading
            reading = None
            if failure is None and len(chunk) == CHUNK_SIZE:
                reading = asyncio.ensure_future(_read_chunk(source))
            if chunk:
                await _load_chunk(target, chunk, counts, concurrency, progress)
                if after_chunk is not None:
                    after_chunk(chunk[-1], counts)
            if failure is not None:
                raise failure
    finally:
        if reading is not None and not reading.done():
            await cancel_and_wait([reading])
    return counts


async def import_dumps(
    dumps: Iterable[SessionDump],
    target: SessionStore,
    *,
    concurrency: int = 16,
    progress: ProgressCallback | None = None,
) -> TransferCounts:
    """Load the sessions of an export file (an :class:`ExportReader`) into ``target``.

    Never overwrites a live session (see :func:`load_dump`), so importing a file twice, or after
    an interrupted import, copies each session once.
    """

    async def each() -> AsyncIterator[SessionDump]:
        for dump in dumps:
            yield dump

    return await load_dumps(each(), target, concurrency=concurrency, progress=progress)


# -- migration --------------------------------------------------------------------------------


def compare_dumps(source: SessionDump, target: SessionDump) -> list[str]:
    """Every way ``target`` differs from ``source``, as sentences; ``[]`` when it is a whole copy.

    Compares the record (version, deadline, incarnation, payload bytes), the last event id, the
    streams in order, and each stream's event data in order. Event ids are not compared: a store
    gives loaded events ids of its own.
    """
    name = f"session {source.record.id!r}"
    differences = []
    for what in ("version", "deadline_ms", "incarnation"):
        mine, theirs = getattr(source.record, what), getattr(target.record, what)
        if mine != theirs:
            differences.append(f"{name}: {what} {theirs!r} instead of {mine!r}")
    if source.record.payload != target.record.payload:
        differences.append(
            f"{name}: payload differs ({len(target.record.payload)} bytes instead of "
            f"{len(source.record.payload)})"
        )
    if source.last_event_id != target.last_event_id:
        differences.append(
            f"{name}: last event id {target.last_event_id!r} instead of {source.last_event_id!r}"
        )
    source_streams = [stream_id for stream_id, _ in source.streams]
    target_streams = [stream_id for stream_id, _ in target.streams]
    if source_streams != target_streams:
        differences.append(f"{name}: streams {target_streams!r} instead of {source_streams!r}")
    else:
        for (stream_id, mine_events), (_, their_events) in zip(
            source.streams, target.streams, strict=True
        ):
            if mine_events != their_events:
                differences.append(
                    f"{name}: stream {stream_id!r} holds other events ({len(their_events)} "
                    f"instead of {len(mine_events)}, or different data)"
                )
    return differences


class MigrationCheckpoint:
    """A file recording how far a migration got, so that running it again skips ahead.

    It names the migration (source and target specs, passwords redacted, and namespaces) and holds
    the id of the last session of the last finished chunk, in the source's paging order: every
    session before it in that order is settled. :meth:`load` refuses the file of another
    migration. It is written atomically (a temporary file renamed over it).
    """

    def __init__(
        self,
        path: Path,
        *,
        source: str,
        source_namespace: str,
        target: str,
        target_namespace: str,
    ) -> None:
        self.path = path
        self._route = {
            "source": redact_url(source),
            "source_namespace": source_namespace,
            "target": redact_url(target),
            "target_namespace": target_namespace,
        }

    def load(self) -> str | None:
        """The last settled id, or ``None`` when there is no checkpoint yet.

        Raises :class:`TransferError` for an unreadable file or one of another migration.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransferError(f"cannot read checkpoint {self.path}: {exc.strerror}") from None
        try:
            saved = json.loads(text)
            ok = saved.get("format") == CHECKPOINT_FORMAT and isinstance(saved["last_id"], str)
        except (ValueError, AttributeError, KeyError, TypeError, RecursionError):
            ok = False
        if not ok:
            raise TransferError(f"{self.path} is not a sessionstore migration checkpoint")
        route = {key: saved.get(key) for key in self._route}
        if route != self._route:
            raise TransferError(
                f"checkpoint {self.path} belongs to another migration (from {route['source']} "
                f"namespace {route['source_namespace']} to {route['target']} namespace "
                f"{route['target_namespace']}): give another --checkpoint file, or delete it"
            )
        last_id: str = saved["last_id"]
        return last_id

    def save(self, last_id: str, handled: int) -> None:
        state = {"format": CHECKPOINT_FORMAT, **self._route, "last_id": last_id, "handled": handled}
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.unlink(missing_ok=True)
        # Owner-only (0600), as the databases and export files are: it names the stores and
        # which sessions they hold.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "w", encoding="utf-8") as out:
            out.write(json.dumps(state) + "\n")
        os.replace(temporary, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class _Reservoir:
    """A uniform random sample of at most ``size`` of the items offered (bounded memory)."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.items: list[str] = []
        self._seen = 0
        self._rng = rng

    def offer(self, item: str) -> None:
        self._seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            slot = self._rng.randrange(self._seen)
            if slot < self.size:
                self.items[slot] = item


@dataclass
class MigrationReport:
    """What :func:`migrate` did and what its final check found."""

    counts: TransferCounts
    skipped: int
    """Sessions skipped because the checkpoint says an earlier run settled them."""
    source_count: int
    target_count: int
    sampled: int
    """Sessions compared whole between source and target."""
    differences: list[str]
    """Every difference the final check found (counts, sampled sessions)."""

    @property
    def ok(self) -> bool:
        """Whether every session arrived whole: no conflict and no difference."""
        return self.counts.conflicts == 0 and not self.differences


async def migrate(
    source: SessionStore,
    target: SessionStore,
    *,
    checkpoint: MigrationCheckpoint | None = None,
    concurrency: int = 16,
    sample_size: int = 100,
    rng: random.Random | None = None,
    progress: ProgressCallback | None = None,
) -> MigrationReport:
    """Copy every live session of ``source`` into ``target``, then check the result.

    Streams the sessions in the source's paging order, :data:`CHUNK_SIZE` at a time (bounded
    memory), each with its version, deadline, incarnation, last event id and event log; never
    overwrites a live session of the target (see :func:`load_dump`). Running it again after an
    interruption therefore continues without duplicating or losing a session; with
    ``checkpoint``, it first skips the sessions an earlier run settled (if the checkpointed session
    has since left the source, it goes over them all again, which is always safe). The checkpoint
    is removed once every session is settled.

    Then it compares the two stores: their counts, and ``sample_size`` sessions drawn at random
    (every session when there are fewer), whole (see :func:`compare_dumps`). Sessions written
    to either store meanwhile show up as differences: migrate a store nobody writes to.
    """
    rng = rng or random.Random()
    resume_after = checkpoint.load() if checkpoint is not None else None
    counts = TransferCounts()
    skipped = 0

    def settled(last: SessionDump, so_far: TransferCounts) -> None:
        if checkpoint is not None:
            checkpoint.save(last.record.id, skipped + so_far.handled)

    async def source_dumps(
        sample: _Reservoir, skip_until: str | None
    ) -> AsyncIterator[SessionDump]:
        nonlocal skipped
        async for dump in source.iter_dumps():
            sample.offer(dump.record.id)
            if skip_until is not None:
                skipped += 1
                if progress is not None:
                    progress(1)
                if dump.record.id == skip_until:
                    skip_until = None
                continue
            yield dump
        if skip_until is not None:
            raise _CheckpointMissed

    async def copy(skip_until: str | None) -> _Reservoir:
        sample = _Reservoir(sample_size, rng)
        await load_dumps(
            source_dumps(sample, skip_until),
            target,
            concurrency=concurrency,
            progress=progress,
            after_chunk=settled,
            counts=counts,
        )
        return sample

    try:
        sample = await copy(resume_after)
    except _CheckpointMissed:  # the checkpointed session is gone: go over every session again
        skipped = 0
        sample = await copy(None)
    if checkpoint is not None:
        checkpoint.remove()

    source_count = await source.count_sessions()
    target_count = await target.count_sessions()
    differences = []
    if source_count != target_count:
        differences.append(f"the source holds {source_count} sessions, the target {target_count}")
    for session_id in sample.items:
        differences.extend(await _compare_session(source, target, session_id))
    return MigrationReport(
        counts=counts,
        skipped=skipped,
        source_count=source_count,
        target_count=target_count,
        sampled=len(sample.items),
        differences=differences,
    )


class _CheckpointMissed(Exception):
    """The source no longer holds the checkpointed session."""


async def _compare_session(
    source: SessionStore, target: SessionStore, session_id: str
) -> list[str]:
    try:
        mine: SessionDump | None = await source.dump_session(session_id)
    except SessionNotFoundError:
        mine = None
    try:
        theirs: SessionDump | None = await target.dump_session(session_id)
    except SessionNotFoundError:
        theirs = None
    if mine is None and theirs is None:  # expired in both meanwhile (the deadline is kept)
        return []
    if mine is None:
        return [f"session {session_id!r} is in the target but no longer in the source"]
    if theirs is None:
        return [f"session {session_id!r} is missing from the target"]
    return compare_dumps(mine, theirs)

"""Rewriting a store's session records under the newest encryption key (``sessionstore rekey``).

:func:`rekey` pages through a namespace (bounded memory: one page of records and one session's
dump at a time) and rewrites each session record that is not under the newest key of an
:class:`~sessionstore.encryption.EncryptionMiddleware`: it decrypts the stored payload with the
key it names and writes it back encrypted with the newest key, by compare-and-set on the version
it read, keeping the deadline and incarnation. A writer that got there first is never
overwritten: the conflict makes it read the session again (now the writer's version, usually
already under the newest key) and try again. Running it again skips every record already under
the newest key, so an interrupted run can simply be repeated; with a :class:`RekeyCheckpoint` it
also starts after the last page it finished (see :func:`rekey_checkpoint`).

Events are not rewritten. The hooks keep events immutable and give loaded events new ids, so
rewriting them (dump, delete, load) would change the ids that clients resume from with
``Last-Event-ID``, briefly hide the session, and race with appends that no compare-and-set
covers. So each event keeps the key it was written with until retention or the session's end
drops it; the report counts the events still under older keys, by key id, so an operator knows
which old keys must stay in the list (reading needs them) and when one can go.

It works beneath the payload middleware: ``store`` is opened without them, so it hands over the
stored bytes, and this module decrypts and encrypts with ``encryption`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .encryption import EncryptionMiddleware
from .errors import ConfigurationError, ConflictError, CorruptRecordError, SessionNotFoundError
from .records import SessionDump, new_record
from .store import SessionStore
from .transfer import MigrationCheckpoint

__all__ = ["LISTED", "PLAINTEXT", "RekeyReport", "rekey", "rekey_checkpoint"]

LISTED = 20
"""Session ids a :class:`RekeyReport` keeps by name per list (it counts all of them)."""
PLAINTEXT = "plaintext"
"""The name :attr:`RekeyReport.old_event_keys` gives events that are not encrypted at all."""


@dataclass
class RekeyReport:
    """What :func:`rekey` did."""

    newest_key_id: str
    visited: int = 0
    """Live sessions looked at by this run."""
    rewritten: int = 0
    """Records this run rewrote under the newest key."""
    current: int = 0
    """Records already under the newest key (written since the rotation, or by an earlier run)."""
    gone: int = 0
    """Sessions deleted or expired between their page and their rewrite."""
    conflicts: int = 0
    """Compare-and-set conflicts: a writer got there first; the session was read again."""
    unreadable: int = 0
    """Records that could not be decrypted (no key for their key id, or damaged); left alone."""
    unreadable_ids: list[str] = field(default_factory=list)
    """The first :data:`LISTED` of them, with why: ``"id: reason"``."""
    old_event_keys: dict[str, int] = field(default_factory=dict)
    """Events still under a key other than the newest, counted by key id (:data:`PLAINTEXT` for
    events not encrypted at all). Those keys must stay in the list until the events age out."""
    resumed: bool = False
    """Whether this run started after a checkpoint's cursor (earlier pages were not visited)."""

    @property
    def ok(self) -> bool:
        """Whether every record visited is now under the newest key."""
        return self.unreadable == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "newest_key_id": self.newest_key_id,
            "visited": self.visited,
            "rewritten": self.rewritten,
            "current": self.current,
            "gone": self.gone,
            "conflicts": self.conflicts,
            "unreadable": self.unreadable,
            "unreadable_ids": list(self.unreadable_ids),
            "old_event_keys": dict(self.old_event_keys),
            "resumed": self.resumed,
            "ok": self.ok,
        }


def rekey_checkpoint(
    path: Path, *, store: str, namespace: str, newest_key_id: str
) -> MigrationCheckpoint:
    """A checkpoint file for :func:`rekey`, so that the next run of the same rekey (same store,
    namespace and newest key) starts after the last page a killed run finished.

    It is a migration checkpoint (:class:`~sessionstore.transfer.MigrationCheckpoint`: the same
    file, written atomically and owner-only, refusing the file of another run) from the store to
    its newest key, holding the backend's page cursor as its position. This repository's
    backends page by id, so the cursor stays valid across runs.
    """
    return MigrationCheckpoint(
        path,
        source=store,
        source_namespace=namespace,
        target=f"encryption key id {newest_key_id}",
        target_namespace=namespace,
    )


async def rekey(
    store: SessionStore,
    encryption: EncryptionMiddleware,
    *,
    checkpoint: MigrationCheckpoint | None = None,
    attempts: int = 50,
    progress: Callable[[int], None] | None = None,
) -> RekeyReport:
    """Rewrite every session record of ``store`` not under ``encryption``'s newest key (see the
    module docstring); return what was done.

    ``store`` must be opened without payload middleware (its hooks would decrypt what this reads
    and encrypt again what it writes): one opened with any raises
    :class:`~sessionstore.ConfigurationError`. A session that keeps conflicting for
    ``attempts`` reads in a row raises :class:`~sessionstore.ConflictError`; a record that cannot
    be decrypted is counted in the report and left alone. ``progress`` is called with 1 per
    session visited. The checkpoint, when given, is saved after each page and removed at the end.
    """
    if store._transforms:
        names = ", ".join(type(transform).__name__ for transform in store._transforms)
        raise ConfigurationError(
            f"rekey needs a store opened without payload middleware; this one has {names}: "
            "open it again without middleware and pass the EncryptionMiddleware to rekey"
        )
    bound = encryption.bind_store(backend_name=store.backend_name, namespace=store.namespace)
    report = RekeyReport(newest_key_id=encryption.newest_key_id)
    cursor = checkpoint.load() if checkpoint is not None else None
    report.resumed = cursor is not None
    while True:
        # The store's own hook call (loop binding, errors wrapped), beneath any middleware.
        records, cursor = await store._call(
            "session_page", cursor, store._page_size, store._now_ms()
        )
        for record in records:
            report.visited += 1
            if isinstance(record, CorruptRecordError):  # the backend cannot read it either
                _unreadable(report, record)
            else:
                await _rekey_session(store, bound, record.id, report, attempts)
            if progress is not None:
                progress(1)
        if cursor is None:
            break
        if checkpoint is not None:
            checkpoint.save(cursor, report.visited)
    if checkpoint is not None:
        checkpoint.remove()
    return report


async def _rekey_session(
    store: SessionStore,
    encryption: EncryptionMiddleware,
    session_id: str,
    report: RekeyReport,
    attempts: int,
) -> None:
    newest = encryption.newest_key_id
    for attempt in range(attempts):
        dump: SessionDump | None = await store._call("session_dump", session_id, store._now_ms())
        if dump is None:
            report.gone += 1
            return
        if attempt == 0:
            _count_old_events(dump, newest, report)
        record = dump.record
        if encryption.key_id_of(record.payload) == newest:
            report.current += 1
            return
        try:
            plain = encryption.open_payload(session_id, record.payload)
        except CorruptRecordError as error:
            _unreadable(report, error)
            return
        rewritten = new_record(
            (
                session_id,
                record.version + 1,
                record.deadline_ms,  # a rewrite is no activity: the session expires as it would
                encryption.seal_payload(session_id, plain),
                record.incarnation,
            )
        )
        try:
            await store._call("session_update", rewritten, store._now_ms())
        except ConflictError:
            report.conflicts += 1  # another writer's version: read it and try again
            continue
        except SessionNotFoundError:
            report.gone += 1
            return
        report.rewritten += 1
        return
    raise ConflictError(session_id, detail=f"rekey gave up after {attempts} conflicting writes")


def _count_old_events(dump: SessionDump, newest: str, report: RekeyReport) -> None:
    for _, events in dump.streams:
        for data in events:
            if data is None:
                continue
            key_id = EncryptionMiddleware.key_id_of(data) or PLAINTEXT
            if key_id != newest:
                report.old_event_keys[key_id] = report.old_event_keys.get(key_id, 0) + 1


def _unreadable(report: RekeyReport, error: CorruptRecordError) -> None:
    report.unreadable += 1
    if len(report.unreadable_ids) < LISTED:
        report.unreadable_ids.append(f"{error.session_id}: {error.reason}")

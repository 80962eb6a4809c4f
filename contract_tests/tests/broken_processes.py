"""Deliberately broken backends for the process and durability tests (``processes.py``).

Each keeps every guarantee inside one process and breaks one across processes, or across
closing and reopening, the way a third-party author plausibly would:

* ``lost_updates_across_processes``: the files example (``examples/third_party_backend``) with
  its ``flock`` replaced by a lock of the process. Within one process every hook is atomic, so
  it passes every in-process test; two processes interleave their read-check-write and lose
  updates, both win a create, and issue the same event id twice. It claims every capability.
* ``batches_lost_across_processes``: the files example whose batch updates take only the lock of
  the process and write their files one by one (single updates keep the ``flock``).
* ``creates_across_processes``: the files example whose creates check and write under a lock of
  the process only, a slow disk's wait between the two.
* ``per_process_event_counter``: the files example, but each stream's next sequence number is
  kept in the process after its first append, so processes appending to one stream issue the
  same ids.
* ``forgets_on_close``: a shared memory store that claims ``durable`` but drops a namespace when
  its last handle closes, as a cache tied to its connections would.
* ``restarts_event_ids_on_reopen``: a shared memory store that claims ``durable`` but restarts its
  stream counter when the first handle of a namespace opens, so event ids of before are issued
  again after reopening.

The files-based ones keep their directories under ``tempfile.gettempdir()``; ``store_clear``
removes a namespace's files.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from delegating import Delegating

from sessionstore import (
    Capability,
    SessionExistsError,
    SessionNotFoundError,
    SessionRecord,
    hookimpl,
)
from sessionstore_memory import MemoryBackend, create_backend

# test_teeth runs the suite with cwd contract_tests/tests; the example is not installed.
_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "third_party_backend" / "src"
if str(_EXAMPLE) not in sys.path:
    sys.path.insert(0, str(_EXAMPLE))

from sessionstore_files import FilesBackend, file_name  # noqa: E402
from sessionstore_files.backend import _Entry, _Stream  # noqa: E402

_ROOT = Path(tempfile.gettempdir()) / "sessionstore-teeth"

_registry = threading.Lock()
_process_locks: dict[Path, threading.RLock] = {}


def _process_lock(path: Path) -> threading.RLock:
    with _registry:
        return _process_locks.setdefault(path, threading.RLock())


class InProcessLockFiles(FilesBackend):
    """Every write, and every read, under a lock of this process instead of ``flock``: atomic
    among the tasks and threads of one process, and no further."""

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with _process_lock(self._lock_path):
            self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_path.touch()  # store_clear removes it
            self._recover()
            yield

    _shared = _locked


_batching = threading.local()


class CreatesUnderProcessLock(FilesBackend):
    """Creates check and write under a lock of this process only, with the disk's wait between
    them (every other hook keeps ``flock``): two processes creating one id both win."""

    def _create(self, record: SessionRecord, now_ms: int) -> None:
        with _process_lock(self._lock_path):
            with self._shared():
                exists = self._read_live(record.id, now_ms) is not None
            if exists:
                raise SessionExistsError(record.id)
            time.sleep(0.002)  # a slow disk: the window another process's create falls into
            with self._locked():
                self._write(_Entry(record))


class InProcessLockBatches(FilesBackend):
    """Single updates under ``flock``; batches of several sessions under a lock of this process
    only (every writer and reader of this process also takes that lock, so in-process it is all
    atomic)."""

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with _process_lock(self._lock_path):
            if getattr(_batching, "on", False):
                self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._lock_path.touch()
                self._recover()
                yield
            else:
                with super()._locked():
                    yield

    @contextlib.contextmanager
    def _shared(self) -> Iterator[None]:
        with _process_lock(self._lock_path), super()._shared():
            yield

    def _update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        _batching.on = len(records) > 1
        try:
            super()._update_many(records, now_ms)
        finally:
            _batching.on = False

    def _commit(self, entries: list[_Entry]) -> None:
        for entry in entries:  # no journal: only this process's lock guards the batch
            self._write(entry)


_next_seq: dict[tuple[Path, str, str, int], int] = {}


class PerProcessEventCounter(FilesBackend):
    """Reads a stream's next sequence number from its file on the first append only, then counts
    in the process: right in one process, colliding ids across processes."""

    def _append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        with self._locked():
            entry = self._read_live(session_id, now_ms)
            if entry is None:
                raise SessionNotFoundError(session_id)
            numbers = {s.stream_id: n for n, s in enumerate(entry.streams, start=1)}
            number = numbers.get(stream_id)
            if number is None:
                entry.streams.append(_Stream(stream_id))
                number = len(entry.streams)
            stream = entry.streams[number - 1]
            name = file_name(session_id)
            key = (self._dir, name, entry.epoch, number)
            seq = _next_seq.get(key, stream.next_seq)
            _next_seq[key] = seq + 1
            stream.events.append((seq, data))
            del stream.events[: max(0, len(stream.events) - retention)]
            stream.next_seq = max(stream.next_seq, seq + 1)
            self._write(entry)
            return f"{name}.{entry.epoch}.{number}.{seq}"


def _files_factory(cls: type[FilesBackend], directory: str) -> object:
    def factory(spec: str, *, namespace: str) -> FilesBackend:
        # fsync=True, the example's default: each write waits for the disk, as on a server.
        return cls(_ROOT / directory, namespace, fsync=True)

    return factory


lost_updates_across_processes = _files_factory(InProcessLockFiles, "lost-updates")
batches_lost_across_processes = _files_factory(InProcessLockBatches, "lost-batches")
per_process_event_counter = _files_factory(PerProcessEventCounter, "event-counter")
creates_across_processes = _files_factory(CreatesUnderProcessLock, "creates")


_handles_lock = threading.Lock()
_open_handles: dict[tuple[str, str], int] = {}


class CountsHandles(Delegating):
    """A shared memory store that claims ``durable`` and counts the open handles of each
    namespace (``first_opened`` and ``last_closed`` run when the count leaves or reaches 0)."""

    store_name = "memory://teeth-counts-handles"

    def __init__(self, inner: MemoryBackend, key: tuple[str, str]) -> None:
        super().__init__(inner)
        self.key = key
        with _handles_lock:
            _open_handles[key] = _open_handles.get(key, 0) + 1
            first = _open_handles[key] == 1
        if first:
            self.first_opened()

    def first_opened(self) -> None:
        pass

    def last_closed(self) -> None:
        pass

    @hookimpl
    def store_capabilities(self) -> Mapping[str, str]:
        declared = self.inner.store_capabilities()
        return {k: v for k, v in declared.items() if k != Capability.DURABLE}

    @hookimpl
    async def store_close(self) -> None:
        with _handles_lock:
            _open_handles[self.key] -= 1
            last = _open_handles[self.key] == 0
        if last:
            self.last_closed()
        self.inner.store_close()


class ForgetsOnClose(CountsHandles):
    """Drops a namespace's sessions and events with its last handle."""

    store_name = "memory://teeth-forgets-on-close"

    def last_closed(self) -> None:
        self.inner.store_clear()


class RestartsEventIdsOnReopen(CountsHandles):
    """Keeps its stream counter with its handles, starting again at 1 when a namespace is
    opened while no handle of it is open, instead of storing it with the streams."""

    store_name = "memory://teeth-restarts-event-ids"

    def first_opened(self) -> None:
        self.inner._space.next_handle = 1


def _counting_factory(cls: type[CountsHandles]) -> object:
    def factory(spec: str, *, namespace: str) -> CountsHandles:
        return cls(create_backend(cls.store_name, namespace=namespace), (cls.store_name, namespace))

    return factory


forgets_on_close = _counting_factory(ForgetsOnClose)
restarts_event_ids_on_reopen = _counting_factory(RestartsEventIdsOnReopen)


EXPECTED_FAILURES: dict[str, set[str]] = {
    # Its creates and appends race too, but not in every run on a loaded machine: the two
    # backends below break those alone, reliably.
    "lost_updates_across_processes": {"test_processes_lose_no_update"},
    "creates_across_processes": {"test_processes_create_one_winner_per_id"},
    "batches_lost_across_processes": {"test_processes_lose_no_update"},
    "per_process_event_counter": {"test_processes_append_unique_ordered_events"},
    "forgets_on_close": {"test_acknowledged_writes_survive_reopening"},
    "restarts_event_ids_on_reopen": {"test_acknowledged_writes_survive_reopening"},
}

"""Every error sessionstore raises, in one place.

The tree::

    SessionStoreError                 base of everything below
    ├── ConfigurationError            a bad spec, option or plugin (also a ValueError)
    │   ├── UnknownBackendError       no backend is installed under that name or scheme
    │   └── BackendLoadError          the backend cannot be used: import failed, hooks missing
    ├── InvalidSessionError           a bad id, field or argument, refused before any backend
    │                                 sees it (also a ValueError)
    ├── SessionNotFoundError          no live session has that id (never created, deleted, expired)
    ├── SessionExistsError            create_session for an id that is already live
    ├── ConflictError                 compare-and-set refused: another writer got there first
    ├── EventNotFoundError            a replay cursor is unknown, foreign or evicted (``.evicted``)
    ├── CorruptRecordError            a stored record cannot be decoded (names the id)
    │   └── DecryptionError           an encrypted record cannot be decrypted: no key for its
    │                                 key id, altered, copied, or not encrypted at all
    ├── StoreFullError                a bounded backend is full; nothing was dropped to make room
    ├── StoreUnavailableError         the backend cannot be reached, or timed out
    ├── StoreClosedError              the store was used after ``aclose()``
    ├── WrongEventLoopError           the store was used from another event loop or thread than
    │                                 the one it is bound to (also a RuntimeError)
    ├── BackendError                  a backend broke its contract (raised something unexpected)
    ├── TransferError                 moving sessions failed outside any store operation
    │   └── ExportFormatError         an export file is malformed, cut short or too new
    │                                 (also a ValueError)
    └── BenchmarkCheckError           a store gave a wrong answer while it was measured

A backend maps its driver's failures onto these; the facade wraps anything else in
:class:`BackendError`, so no raw driver exception crosses the public API. Messages never contain
passwords: anything that prints a URL goes through :func:`sessionstore.redact_url`.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BackendError",
    "BackendLoadError",
    "BenchmarkCheckError",
    "ConfigurationError",
    "ConflictError",
    "CorruptRecordError",
    "DecryptionError",
    "EventNotFoundError",
    "ExportFormatError",
    "InvalidSessionError",
    "SessionExistsError",
    "SessionNotFoundError",
    "SessionStoreError",
    "StoreClosedError",
    "StoreFullError",
    "StoreUnavailableError",
    "TransferError",
    "UnknownBackendError",
    "WrongEventLoopError",
]


class SessionStoreError(Exception):
    """Base class of every error raised by sessionstore and its backends."""


class ConfigurationError(SessionStoreError, ValueError):
    """A store spec, an option or a plugin is not usable as given."""


class UnknownBackendError(ConfigurationError):
    """No installed backend answers to the requested name or URL scheme.

    ``installed`` lists the backend names that are installed; the message also says which
    distribution to install.
    """

    def __init__(self, name: str, installed: Iterable[str], hint: str) -> None:
        self.name = name
        self.installed = tuple(sorted(installed))
        listed = ", ".join(self.installed) if self.installed else "none"
        super().__init__(f"no sessionstore backend named {name!r} (installed: {listed}); {hint}")


class BackendLoadError(ConfigurationError):
    """A backend is installed but cannot be used: its import failed or it lacks required hooks."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"backend {name!r} cannot be used: {reason}")


class InvalidSessionError(SessionStoreError, ValueError):
    """An id, a field or an argument is invalid; refused before any backend saw it."""


def _ids_text(session_ids: tuple[str, ...]) -> str:
    return ", ".join(repr(i) for i in session_ids)


class SessionNotFoundError(SessionStoreError, LookupError):
    """No live session has this id: it was never created, was deleted, or expired.

    ``session_ids`` names every missing id (one for single-session operations).
    """

    def __init__(self, *session_ids: str) -> None:
        self.session_ids = session_ids
        noun = "session" if len(session_ids) == 1 else "sessions"
        super().__init__(f"{noun} not found: {_ids_text(session_ids)}")

    @property
    def session_id(self) -> str:
        """The first (usually the only) missing id."""
        return self.session_ids[0]


class SessionExistsError(SessionStoreError):
    """``create_session`` was given the id of a session that is already live."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"session already exists: {session_id!r}")


class ConflictError(SessionStoreError):
    """A compare-and-set write was refused: a stored version differs from the one that was read.

    ``session_ids`` names every stale session; when it is raised, nothing was written.
    """

    def __init__(self, *session_ids: str, detail: str = "") -> None:
        self.session_ids = session_ids
        text = f"stale version, re-read and retry: {_ids_text(session_ids)}"
        super().__init__(f"{text} ({detail})" if detail else text)

    @property
    def session_id(self) -> str:
        """The first (usually the only) stale id."""
        return self.session_ids[0]


class EventNotFoundError(SessionStoreError, LookupError):
    """A replay cursor cannot be used.

    ``evicted`` is true when the event existed but fell out of the stream's retention window, so
    events the client never saw may be gone; false when the id is unknown, belongs to another
    session, or its session no longer exists.
    """

    def __init__(self, event_id: str, *, evicted: bool = False) -> None:
        self.event_id = event_id
        self.evicted = evicted
        why = "evicted by the stream's retention bound" if evicted else "unknown to this store"
        super().__init__(f"event {event_id!r} cannot be replayed from: {why}")


class CorruptRecordError(SessionStoreError):
    """A stored record could not be decoded. ``session_id`` names it; ``reason`` says why."""

    def __init__(self, session_id: str, reason: str) -> None:
        self.session_id = session_id
        self.reason = reason
        super().__init__(f"stored record of session {session_id!r} is unreadable: {reason}")


class DecryptionError(CorruptRecordError):
    """:class:`~sessionstore.encryption.EncryptionMiddleware` cannot decrypt a stored record or
    event: no key for its key id, authentication failed (altered, cut short, copied from another
    session or namespace), or it was not encrypted. ``key_id`` is the record's key id (a
    fingerprint, never the key) when it has one. Never carries a key or a cryptography error."""

    def __init__(self, session_id: str, reason: str, *, key_id: str | None = None) -> None:
        self.key_id = key_id
        super().__init__(session_id, reason)


class StoreFullError(SessionStoreError):
    """A bounded store has no room for another live session; nothing was evicted to make room."""


class StoreUnavailableError(SessionStoreError):
    """The backend cannot be reached, refused the operation, or did not answer in time."""


class StoreClosedError(SessionStoreError):
    """The store was used after ``aclose()``."""


class WrongEventLoopError(SessionStoreError, RuntimeError):
    """The store was used from another event loop (or thread) than the one it is bound to.

    A store, with its connections, belongs to the event loop of its first call; calls from any
    other loop are refused before the backend sees them, since the backend's connections and
    transactions cannot be shared between threads or loops. Open one store per thread or event
    loop (``asyncio.run()`` starts a new loop each time).
    """


class BackendError(SessionStoreError):
    """A backend broke its contract: one of its hooks raised something other than these errors.

    ``backend`` and ``hook`` name where it happened; the original exception is ``__cause__``,
    unless its message was withheld (``detail``, said instead of the error's own message).
    """

    def __init__(
        self, backend: str, hook: str, error: BaseException, *, detail: str | None = None
    ) -> None:
        self.backend = backend
        self.hook = hook
        # A driver's message may quote its URL: never repeat a password from it.
        from .urls import redact_text

        said = redact_text(str(error)) if detail is None else detail
        super().__init__(
            f"backend {backend!r} failed in hook {hook!r}: {type(error).__name__}: {said}"
        )


class TransferError(SessionStoreError):
    """Moving sessions failed in a way no store operation reports (a damaged export file, a
    checkpoint of another migration). The message says what to do."""


class ExportFormatError(TransferError, ValueError):
    """An export file is malformed, cut short, or of a newer format version; names the line."""


class BenchmarkCheckError(SessionStoreError):
    """The store gave a wrong answer while it was measured: a fast wrong answer is no figure."""

"""Per-session state for tools: the layer's stable session id and a small JSON object kept in
the session's record in the store.

Inside a tool (or a resource, a prompt, any handler) of a server wrapped by
:class:`~sessionstore.mcp.McpSessions`::

    from sessionstore.mcp import current_session

    @mcp.tool()
    async def remember(note: str) -> str:
        session = current_session()
        await session.modify(lambda state: state.update(note=note))
        return f"noted in {session.id}"

    @mcp.tool()
    async def recall() -> str | None:
        return (await current_session().state()).get("note")

The state lives in the session's record, so it is the same on every instance, and it expires and
is deleted with the session. It is a ``dict`` of JSON data (``str`` keys; ``None``, ``bool``,
``int``, finite ``float``, ``str``, ``list``, ``dict``) of at most :data:`MAX_STATE_BYTES` as
compact JSON. Every write is a compare-and-set on the stored record: two writers never lose each
other's changes, and the layer's own writes (the idle deadline) never undo a tool's.

How the handler finds its session: the layer enters
:func:`~sessionstore.mcp.session_scope` (with the store) around every request, and the SDK's
per-session tasks, where handlers run, inherit it. The SDK's own ``ctx.session_id`` (where it
has one) is the id of the local copy on this instance, which differs from instance to instance:
use :attr:`SessionHandle.id`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from ..errors import (
    CorruptRecordError,
    InvalidSessionError,
    SessionNotFoundError,
    SessionStoreError,
)
from ..models import Session, check_json_value, validate_session_id
from ..store import SessionStore
from ._log import shown_id
from .events import current_session_scope

__all__ = [
    "MAX_STATE_BYTES",
    "STATE_METADATA_KEY",
    "NoSessionError",
    "SessionEndedError",
    "SessionHandle",
    "SessionState",
    "StateFunction",
    "StateTooLargeError",
    "current_session",
]

MAX_STATE_BYTES = 64 * 1024
"""The largest state a session keeps: 64 KiB of compact JSON text with non-ASCII characters
escaped, i.e. ``len(json.dumps(state, separators=(",", ":")))``. A write of a larger state is
refused with :class:`StateTooLargeError` and changes nothing."""

STATE_METADATA_KEY = "mcp_state"
"""The key of a session's metadata where its state is kept, as
``{"version": <int>, "json": <the state's JSON text>}``: a string the store never decodes, so a
state costs the layer's per-request reads almost nothing. The layer's own key
(:data:`~sessionstore.mcp.MCP_METADATA_KEY`) is out of reach of this API."""

_MISSING: Any = object()


class SessionState(NamedTuple):
    """A session's state as read: its ``value`` (a fresh ``dict`` the caller may change) and its
    ``version`` (0 before the first write, then one more on each)."""

    value: dict[str, Any]
    version: int


StateFunction = Callable[
    [dict[str, Any]], "dict[str, Any] | Awaitable[dict[str, Any] | None] | None"
]
"""What :meth:`SessionHandle.modify` takes: a function of the current state that changes it in
place (returning ``None``) or returns the new state; it may be ``async``."""


class NoSessionError(SessionStoreError, RuntimeError):
    """:func:`current_session` was called outside an MCP session of the layer: not inside a
    request (or a task of one) of a server wrapped by :class:`~sessionstore.mcp.McpSessions`,
    or in a request of the 2026 stateless protocol, which has no session."""


class SessionEndedError(SessionNotFoundError):
    """The session ended (its client deleted it, or it expired): its state is gone with it."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.args = (
            f"MCP session {shown_id(session_id)} ended (deleted by its client, or expired); its "
            "state went with it",
        )


class StateTooLargeError(InvalidSessionError):
    """A state over :data:`MAX_STATE_BYTES` was refused; nothing was written."""


def current_session() -> SessionHandle:
    """The MCP session the calling handler serves.

    Raises :class:`NoSessionError` outside one (see its description), with what to do.
    """
    scope = current_session_scope()
    if scope is None:
        raise NoSessionError(
            "current_session() called outside an MCP session: call it inside a request handler "
            "(a tool, resource or prompt) of a server whose app is wrapped by "
            "McpSessions.wrap(); 2026-07-28 protocol requests carry no session"
        )
    if scope.store is None:
        raise NoSessionError(
            f"current_session(): the session scope of {shown_id(scope.session_id)} has no store; "
            "enter session_scope(session_id, store=store) to use it without the layer"
        )
    return SessionHandle(scope.store, scope.session_id)


class SessionHandle:
    """One MCP session's stable id and state, in ``store``.

    Get it with :func:`current_session` inside a handler; build it yourself, from an open store
    and a session id, to read or change a session's state elsewhere (an admin task). Every
    method reads or writes the store: none caches. A session that ended raises
    :class:`SessionEndedError`; a value that is not JSON data, or too large, raises
    :class:`~sessionstore.InvalidSessionError` (:class:`StateTooLargeError`) before anything is
    written; the store's own errors (:class:`~sessionstore.StoreUnavailableError`, ...)
    propagate.
    """

    __slots__ = ("_id", "_store")

    def __init__(self, store: SessionStore, session_id: str) -> None:
        if not isinstance(store, SessionStore):
            raise TypeError(f"store must be a SessionStore, not {type(store).__name__}")
        self._store = store
        self._id = validate_session_id(session_id)

    @property
    def id(self) -> str:
        """The session's id: the ``Mcp-Session-Id`` its client sends, the same on every
        instance."""
        return self._id

    @property
    def store(self) -> SessionStore:
        """The store holding the session (the layer's store, for a handle of
        :func:`current_session`)."""
        return self._store

    def __repr__(self) -> str:
        return f"<SessionHandle {shown_id(self._id)}>"

    async def read(self) -> SessionState:
        """The state and its version, as one read."""
        return _state_of(await self._get())

    async def state(self) -> dict[str, Any]:
        """The state (``{}`` before the first write): a fresh ``dict`` each time."""
        return (await self.read()).value

    async def modify(self, fn: StateFunction) -> SessionState:
        """Change the state with ``fn`` and store it; return the new state and version.

        ``fn`` gets a fresh copy of the current state and changes it in place (returning
        ``None``) or returns the new state; it may be ``async``. When another writer got there
        first, it runs again on the newer state (the store's
        :meth:`~sessionstore.SessionStore.modify_session`, bounded by its ``modify_attempts``,
        then :class:`~sessionstore.ConflictError`), so it should have no other side effects. An
        exception from ``fn`` propagates and nothing is written.
        """
        if not callable(fn):
            raise TypeError(f"modify(fn): fn must be callable, not {type(fn).__name__}")
        written: list[SessionState] = []

        async def change(session: Session) -> None:
            current = _state_of(session)
            result = fn(current.value)
            if inspect.isawaitable(result):
                result = await result
            new = current.value if result is None else result
            written.append(_put(session, new, current.version + 1))

        await self._modify(change)
        return written[-1]

    async def compare_and_set(
        self,
        new: dict[str, Any],
        *,
        expected_version: int | None = None,
        expected_value: dict[str, Any] = _MISSING,
    ) -> bool:
        """Store ``new`` iff the state is still as expected; return whether it was stored.

        Give exactly one of ``expected_version`` (the ``version`` of a :meth:`read`; ``0``: never
        written) or ``expected_value`` (the state as JSON data, compared as JSON: ``1`` is not
        ``1.0`` nor ``True``). On success the state's version is one more than before. Writes of
        the layer (the session's idle deadline) do not count as changes.
        """
        if (expected_version is None) == (expected_value is _MISSING):
            raise TypeError(
                "compare_and_set: give exactly one of expected_version= and expected_value="
            )
        if expected_version is not None and (
            type(expected_version) is not int or expected_version < 0
        ):
            raise InvalidSessionError(
                f"expected_version must be an int >= 0, not {expected_version!r}"
            )
        expected_text = None
        if expected_value is not _MISSING:
            expected_text = _canonical(_checked(expected_value, "expected_value"))
        _encoded(new)  # refuse a bad value before any store round trip

        class Mismatch(Exception):
            pass

        def change(session: Session) -> None:
            current = _state_of(session)
            if expected_version is not None and current.version != expected_version:
                raise Mismatch
            if expected_text is not None and _canonical(current.value) != expected_text:
                raise Mismatch
            _put(session, new, current.version + 1)

        try:
            await self._modify(change)
        except Mismatch:
            return False
        return True

    # -- helpers -----------------------------------------------------------------------------

    async def _get(self) -> Session:
        try:
            return await self._store.get_session(self._id)
        except SessionNotFoundError:
            raise SessionEndedError(self._id) from None

    async def _modify(self, change: Callable[[Session], Any]) -> None:
        try:
            await self._store.modify_session(self._id, change)
        except SessionEndedError:
            raise
        except SessionNotFoundError:
            raise SessionEndedError(self._id) from None


def _checked(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidSessionError(
            f"{what} must be a dict of JSON data (str keys), not {type(value).__name__}"
        )
    check_json_value(value, where=what)
    return value


def _encoded(value: object) -> str:
    """The state's stored text; refuses what is not a JSON object or is too large."""
    state = _checked(value, "state")
    text = json.dumps(state, separators=(",", ":"), allow_nan=False)
    if len(text) > MAX_STATE_BYTES:
        raise StateTooLargeError(
            f"state is {len(text)} bytes as JSON; a session keeps at most {MAX_STATE_BYTES} "
            "(MAX_STATE_BYTES): keep large data elsewhere and its key in the state"
        )
    return text


def _canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)


def _state_of(session: Session) -> SessionState:
    kept = session.metadata.get(STATE_METADATA_KEY)
    if kept is None:
        return SessionState({}, 0)
    version = kept.get("version") if isinstance(kept, dict) else None
    text = kept.get("json") if isinstance(kept, dict) else None
    if type(version) is int and isinstance(text, str) and len(text) <= MAX_STATE_BYTES:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict):
            return SessionState(value, version)
    raise CorruptRecordError(
        session.id, f"metadata[{STATE_METADATA_KEY!r}] is not a state this release wrote"
    )


def _put(session: Session, value: object, version: int) -> SessionState:
    text = _encoded(value)
    metadata = dict(session.metadata)
    metadata[STATE_METADATA_KEY] = {"version": version, "json": text}
    session.metadata = metadata
    return SessionState(json.loads(text), version)

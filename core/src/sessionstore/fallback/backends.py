"""Calling a backend's hooks directly, as the store does, for the fallback's own calls."""

from __future__ import annotations

from types import CoroutineType
from typing import Any

from ..errors import BackendError, SessionStoreError
from ..plugins import HookDispatch, bind_plugins

__all__ = ["BackendHooks"]


class BackendHooks:
    """One backend's hooks, called without any middleware (the fallback's primary and fallback).

    ``name`` is the backend's name, for errors and logs.
    """

    def __init__(self, backend: object, name: str) -> None:
        self.name = name
        self._dispatch = HookDispatch(bind_plugins(backend, name, []))

    async def call(self, hook: str, *args: Any) -> Any:
        """Call ``hook`` with the spec's arguments in order and return its result.

        A coroutine is awaited (a plain-def hook has already answered); an exception that is not
        a :class:`~sessionstore.SessionStoreError` is wrapped in
        :class:`~sessionstore.BackendError` naming the backend and the hook, as the store does.
        """
        try:
            outcome = getattr(self._dispatch, hook)(*args)
            return await outcome if type(outcome) is CoroutineType else outcome
        except SessionStoreError:
            raise
        except Exception as exc:
            raise BackendError(self.name, hook, exc) from exc

"""A backend factory for ``test_hookspec_coverage.py``: the memory backend, recording its hooks.

``pytest --pyargs sessionstore_contract --sessionstore-factory hook_tracing:create_backend`` runs
the contract suite on a shared memory store (``memory://hook-coverage``, so every capability is
there and no test is skipped) whose hook methods write their name, the first time each is called,
to the file named by ``SESSIONSTORE_HOOK_TRACE``. Each hook method is replaced on the instance by
a wrapper with the same name, signature, marker and kind (``async def`` or plain ``def``), so the
core binds and dispatches it exactly as it does the memory backend's own method.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

from sessionstore import hookspecs
from sessionstore_memory import MemoryBackend
from sessionstore_memory import create_backend as create_memory_backend

__all__ = ["HOOKS", "create_backend"]

HOOKS: tuple[str, ...] = tuple(
    name
    for name, value in vars(hookspecs).items()
    if hasattr(value, f"{hookspecs.PROJECT_NAME}_spec")
)
"""Every hook of ``sessionstore.hookspecs``, in the order of the module."""

_recorded: set[str] = set()


def _record(name: str) -> None:
    if name not in _recorded:
        _recorded.add(name)
        with open(os.environ["SESSIONSTORE_HOOK_TRACE"], "a", encoding="utf-8") as trace:
            trace.write(name + "\n")


def _traced(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def traced_async(*args: Any, **kwargs: Any) -> Any:
            _record(name)
            return await method(*args, **kwargs)

        return traced_async

    @functools.wraps(method)  # keeps the signature, and the @hookimpl marker in __dict__
    def traced(*args: Any, **kwargs: Any) -> Any:
        _record(name)
        return method(*args, **kwargs)

    return traced


def _trace_hooks(backend: Any) -> None:
    for name in HOOKS:
        method = getattr(backend, name, None)
        if method is not None:
            setattr(backend, name, _traced(name, method))


def create_backend(spec: str, *, namespace: str, **options: Any) -> MemoryBackend:
    backend = create_memory_backend("memory://hook-coverage", namespace=namespace, **options)
    _trace_hooks(backend)
    return backend


def create_sqlite_backend(spec: str, *, namespace: str, **options: Any) -> Any:
    """The SQLite backend on the file ``SESSIONSTORE_HOOK_TRACE_DB`` names, traced the same way:
    for the optional hooks the memory backend leaves out."""
    from sessionstore_sqlite import create_backend as create_sqlite

    path = os.environ["SESSIONSTORE_HOOK_TRACE_DB"]
    backend = create_sqlite(f"sqlite:///{path}", namespace=namespace, **options)
    _trace_hooks(backend)
    return backend

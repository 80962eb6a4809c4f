"""Middleware: plugins that wrap the backend's hooks.

A middleware is any object with ``@hookimpl(wrapper=True)`` methods named after hooks of
:mod:`sessionstore.hookspecs`. pluggy hands the wrapper the inner result from ``yield``; for an
async hook that is a coroutine, so the wrapper returns a new coroutine that awaits it::

    class LogGets:
        @hookimpl(wrapper=True)
        def session_get(self, session_id):
            inner = yield
            async def logged():
                record = await inner
                log.info("get %s -> %s", session_id, "hit" if record else "miss")
                return record
            return logged()

To treat every operation alike, subclass :class:`OperationMiddleware` and override
:meth:`~OperationMiddleware.around`. Pass middleware as ``open_store(..., middleware=[...])`` or
``store.add_middleware(...)``; the last one given is the outermost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from . import hookspecs
from .hookspecs import hookimpl

__all__ = ["ASYNC_HOOKS", "OperationMiddleware"]

T = TypeVar("T")

ASYNC_HOOKS: tuple[str, ...] = tuple(
    name
    for name, value in vars(hookspecs).items()
    if hasattr(value, f"{hookspecs.PROJECT_NAME}_spec")
    and name not in hookspecs.SYNC_HOOKS
    and name not in hookspecs.OPTIONAL_HOOKS
)
"""The names of every store operation a middleware can wrap (the async hooks every backend has)."""


class OperationMiddleware:
    """Base for middleware that wrap every async operation the same way.

    Subclasses override :meth:`around`; this class supplies a wrapper hook for every name in
    :data:`ASYNC_HOOKS` that routes the call through it.
    """

    async def around(self, operation: str, call: Awaitable[T]) -> T:
        """Await ``call`` (the inner operation named ``operation``) and return its result.

        Override to add behaviour before, after or around it; always await ``call`` exactly once
        or the operation does not happen.
        """
        return await call


def _wrapper(operation: str) -> Callable[..., Generator[None, Any, Any]]:
    def wrap(self: OperationMiddleware) -> Generator[None, Any, Any]:
        inner = yield
        return self.around(operation, inner)

    wrap.__name__ = wrap.__qualname__ = operation
    return hookimpl(wrapper=True)(wrap)


for _operation in ASYNC_HOOKS:
    setattr(OperationMiddleware, _operation, _wrapper(_operation))

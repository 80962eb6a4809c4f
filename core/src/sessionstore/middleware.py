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

A middleware that must know which store it wraps (the namespace, for encryption's associated data
or a span's attributes) defines ``bind_store(*, backend_name, namespace)``: each store calls it
when the middleware is added and registers what it returns (usually a copy bound to that store)
instead, so one middleware object given to several stores, or to ``sibling()`` stores in other
namespaces, serves each with its own namespace. See :func:`bound_middleware`. A bound middleware
that reports on the fallback (telemetry) defines ``observe_fallback(fallback)``: a store opened
with ``fallback=`` calls it with its :class:`~sessionstore.FallbackMiddleware`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from . import hookspecs
from .hookspecs import hookimpl

__all__ = ["ASYNC_HOOKS", "OperationMiddleware", "bound_middleware"]

T = TypeVar("T")

ASYNC_HOOKS: tuple[str, ...] = tuple(
    name
    for name, value in vars(hookspecs).items()
    if hasattr(value, f"{hookspecs.PROJECT_NAME}_spec")
    and name not in hookspecs.SYNC_HOOKS
    and name not in hookspecs.OPTIONAL_HOOKS
)
"""The names of every store operation a middleware can wrap (the async hooks every backend has)."""


def bound_middleware(
    middleware: tuple[object, ...],
    *,
    backend_name: str,
    namespace: str,
    fallback: object | None = None,
) -> tuple[object, ...]:
    """Each of ``middleware`` as a store of ``backend_name`` in ``namespace`` registers it: the
    result of its ``bind_store(backend_name=..., namespace=...)`` where it has one, else itself.
    With ``fallback`` (the store's fallback middleware), each result that has an
    ``observe_fallback`` method is called with it."""
    bound = tuple(
        plugin
        if (bind := getattr(plugin, "bind_store", None)) is None
        else bind(backend_name=backend_name, namespace=namespace)
        for plugin in middleware
    )
    if fallback is not None:
        for plugin in bound:
            if (observe := getattr(plugin, "observe_fallback", None)) is not None:
                observe(fallback)
    return bound


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

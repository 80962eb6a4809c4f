"""How the contract suite opens stores of the backend under test."""

from __future__ import annotations

import asyncio
import importlib
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import pytest

from sessionstore import Capability, SessionStore, open_store
from sessionstore.plugins import BackendFactory

__all__ = ["ContractTarget", "ManualClock", "NotPortableError"]

T = TypeVar("T")


class ManualClock:
    """A clock that moves only when told: pass it as ``open_store(..., clock=clock)``.

    It counts whole microseconds, so many small steps add up exactly.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._micros = round(start * 1_000_000)

    def __call__(self) -> float:
        return self._micros / 1_000_000

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (rounded to the microsecond)."""
        self._micros += round(seconds * 1_000_000)


class NotPortableError(Exception):
    """A :class:`ContractTarget` cannot be rebuilt in another process (see
    :meth:`ContractTarget.recipe`); the message says how to make it portable."""


class ContractTarget:
    """The backend under test: opens stores, each in a fresh scratch namespace by default.

    Build one with :meth:`from_spec` (a backend name or URL, as ``open_store`` takes) or
    :meth:`from_factory` (``"module:callable"``). Extra ``options`` go to every ``open_store``.
    ``middleware`` names callables (``"module:callable"``, e.g.
    ``"sessionstore.compression:CompressionMiddleware"``) each called with no arguments for
    every store opened, the results passed as ``open_store(..., middleware=[...])`` in that
    order: the whole suite then runs through them. The process tests rebuild the same target in
    other OS processes from :meth:`recipe`, so a target meant for them has a spec or an
    importable factory, and JSON options (middleware are named, so they travel).
    """

    def __init__(
        self,
        spec: str | BackendFactory,
        *,
        label: str | None = None,
        middleware: Sequence[str] = (),
        **options: Any,
    ):
        self.spec = spec
        self.label = label or (spec if isinstance(spec, str) else repr(spec))
        self.options = options
        self.middleware = tuple(middleware)
        self._middleware_factories = [
            _imported(path, "--sessionstore-middleware") for path in self.middleware
        ]
        self._capabilities: dict[Capability, str] | None = None
        self._factory_path: str | None = None

    @classmethod
    def from_spec(
        cls, spec: str, *, middleware: Sequence[str] = (), **options: Any
    ) -> ContractTarget:
        return cls(spec, middleware=middleware, **options)

    @classmethod
    def from_factory(
        cls, path: str, *, middleware: Sequence[str] = (), **options: Any
    ) -> ContractTarget:
        """``path`` is ``"package.module:callable"``, a backend factory."""
        factory = _imported(path, "--sessionstore-factory")
        target = cls(factory, label=path, middleware=middleware, **options)
        target._factory_path = path
        return target

    def recipe(self) -> dict[str, Any]:
        """How to open this target in another process, as JSON-serialisable data:
        ``{"spec": ..., "options": {...}}`` or ``{"factory": "module:qualname", "options": ...}``.

        :meth:`from_recipe` rebuilds the target from it. Raises :class:`NotPortableError`, saying
        how to fix it, when the options are not JSON or the factory cannot be imported by name
        (a lambda, a closure, a function of ``__main__``).
        """
        how = (
            f"the contract suite opens {self.label} in other OS processes (it declares "
            f"{Capability.SHARED_PROCESSES.value} or {Capability.DURABLE.value}), so it must be "
            "rebuildable there: give a spec (--sessionstore-backend NAME_OR_URL, "
            "ContractTarget.from_spec) or an importable factory (--sessionstore-factory "
            "module:callable, ContractTarget.from_factory), with options JSON can carry"
        )
        try:
            options = json.loads(json.dumps(self.options))
        except (TypeError, ValueError) as exc:
            raise NotPortableError(f"{how}; its options are not JSON: {exc}") from None
        if options != self.options:
            raise NotPortableError(f"{how}; its options change through JSON: {self.options!r}")
        extra = {"middleware": list(self.middleware)} if self.middleware else {}
        if isinstance(self.spec, str):
            return {"spec": self.spec, "options": options, **extra}
        path = self._factory_path or _importable_path(self.spec)
        if path is None:
            raise NotPortableError(
                f"{how}; its factory {self.spec!r} cannot be imported by name in another process"
            )
        return {"factory": path, "options": options, **extra}

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any]) -> ContractTarget:
        """The target a :meth:`recipe` describes (in this process or another)."""
        options = dict(recipe.get("options") or {})
        middleware = tuple(recipe.get("middleware") or ())
        if "spec" in recipe:
            return cls.from_spec(recipe["spec"], middleware=middleware, **options)
        return cls.from_factory(recipe["factory"], middleware=middleware, **options)

    def open(self, *, namespace: str | None = None, **options: Any) -> SessionStore:
        """Open a store; a fresh ``contract-...`` namespace unless ``namespace`` is given.

        The target's middleware (new ones, for this store) go first, inside any the caller
        passes as ``middleware``."""
        merged = {**self.options, **options}
        if self._middleware_factories:
            made = [make() for make in self._middleware_factories]
            merged["middleware"] = [*made, *merged.get("middleware", ())]
        return open_store(self.spec, namespace=namespace or scratch_namespace(), **merged)

    def run(self, scenario: Callable[[SessionStore], Awaitable[T]], **options: Any) -> T:
        """Run ``scenario(store)`` in a new loop on a fresh namespace; clear and close after."""

        async def main() -> T:
            store = self.open(**options)
            try:
                return await scenario(store)
            finally:
                try:
                    await store.clear()
                finally:
                    await store.aclose()

        return asyncio.run(main())

    @property
    def capabilities(self) -> dict[Capability, str]:
        """The capabilities the backend declares it lacks, with reasons (read once)."""
        if self._capabilities is None:

            async def probe() -> dict[Capability, str]:
                async with self.open() as store:
                    return store.capabilities

            self._capabilities = asyncio.run(probe())
        return self._capabilities

    def require(self, capability: Capability) -> None:
        """Skip the calling test, with the backend's declared reason, if it lacks ``capability``."""
        reason = self.capabilities.get(capability)
        if reason is not None:
            pytest.skip(f"{self.label} lacks {capability.value}: {reason}")


def _imported(path: str, option: str) -> Any:
    """The object ``path`` (``"package.module:name"``, ``name`` may be dotted) names, or a usage
    error saying what is wrong, in the words of ``option``."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise pytest.UsageError(f"{option} {path!r}: expected module:callable")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(f"{option} {path!r}: {exc}") from exc
    if not callable(found):
        raise pytest.UsageError(f"{option} {path!r}: not callable")
    return found


def _importable_path(factory: object) -> str | None:
    """``"module:qualname"`` naming ``factory`` if importing it by that name finds it again."""
    module_name = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None)
    if not module_name or not qualname or module_name == "__main__" or "<" in qualname:
        return None
    try:
        found: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return f"{module_name}:{qualname}" if found is factory else None


def scratch_namespace() -> str:
    """A namespace no other run uses."""
    return f"contract-{secrets.token_hex(8)}"

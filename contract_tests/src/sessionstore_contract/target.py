"""How the contract suite opens stores of the backend under test."""

from __future__ import annotations

import asyncio
import importlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from sessionstore import Capability, SessionStore, open_store
from sessionstore.plugins import BackendFactory

__all__ = ["ContractTarget", "ManualClock"]

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


class ContractTarget:
    """The backend under test: opens stores, each in a fresh scratch namespace by default.

    Build one with :meth:`from_spec` (a backend name or URL, as ``open_store`` takes) or
    :meth:`from_factory` (``"module:callable"``). Extra ``options`` go to every ``open_store``.
    """

    def __init__(self, spec: str | BackendFactory, *, label: str | None = None, **options: Any):
        self.spec = spec
        self.label = label or (spec if isinstance(spec, str) else repr(spec))
        self.options = options
        self._capabilities: dict[Capability, str] | None = None

    @classmethod
    def from_spec(cls, spec: str, **options: Any) -> ContractTarget:
        return cls(spec, **options)

    @classmethod
    def from_factory(cls, path: str, **options: Any) -> ContractTarget:
        """``path`` is ``"package.module:callable"``, a backend factory."""
        module_name, _, attribute = path.partition(":")
        if not module_name or not attribute:
            raise pytest.UsageError(f"--sessionstore-factory {path!r}: expected module:callable")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise pytest.UsageError(f"--sessionstore-factory {path!r}: {exc}") from exc
        return cls(factory, label=path, **options)

    def open(self, *, namespace: str | None = None, **options: Any) -> SessionStore:
        """Open a store; a fresh ``contract-...`` namespace unless ``namespace`` is given."""
        merged = {**self.options, **options}
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


def scratch_namespace() -> str:
    """A namespace no other run uses."""
    return f"contract-{secrets.token_hex(8)}"

"""``SessionStore.count_expired`` and ``sessionstore purge --dry-run`` on a backend that leaves
the optional ``session_count_expired`` hook out: a clear error naming the backend, and a dry run
that says it cannot count (the backends of this repository all offer the hook; their counts are
checked by the contract suite and core/tests/test_cli_shell.py).

Tests that invoke the command are plain ``def``: the command runs its own event loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from click.testing import CliRunner

from sessionstore import ConfigurationError, Session, TransportType, open_store
from sessionstore.cli import cli
from sessionstore.cli.commands import delete
from sessionstore_memory import MemoryBackend
from sessionstore_memory import create_backend as create_memory_backend

STORE = "memory://count-expired-tests"


def cannot_count(spec: str, *, namespace: str, **options: Any) -> MemoryBackend:
    """The shared memory store ``STORE`` as a backend without the optional hook: the attribute
    that shadows it on the instance is no routine, so pluggy registers no implementation."""
    backend = create_memory_backend(STORE, namespace=namespace, **options)
    backend.session_count_expired = None  # type: ignore[assignment,method-assign]
    return backend


def test_count_expired_without_the_hook_names_the_backend() -> None:
    async def scenario() -> None:
        async with open_store(cannot_count, namespace="no-hook") as store:
            assert store.offers_count_expired is False
            with pytest.raises(ConfigurationError) as info:
                await store.count_expired()
            assert store.backend_name in str(info.value)
            assert "session_count_expired" in str(info.value)
        async with open_store(STORE, namespace="no-hook") as offered:
            assert offered.offers_count_expired is True
            assert await offered.count_expired() == 0

    asyncio.run(scenario())


def test_purge_dry_run_says_the_backend_cannot_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command opens its store through ``open_from``: pointed at the factory above, the dry
    run removes nothing, says it cannot count, and reports the live sessions instead."""

    async def seed() -> None:
        async with open_store(STORE, namespace="dry", ttl=3600) as store:
            for session_id in ("a", "b"):
                await store.create_session(Session(id=session_id, transport=TransportType.HTTP))

    asyncio.run(seed())
    monkeypatch.setattr(
        delete,
        "open_from",
        lambda url, namespace, options: open_store(cannot_count, namespace=namespace, **options),
    )
    runner = CliRunner()
    text = runner.invoke(cli, ["purge", "--dry-run", "-s", STORE, "-n", "dry"])
    assert text.exit_code == 0, text.output
    assert "cannot count its expired sessions" in text.stdout
    assert "2 live sessions" in text.stdout
    as_json = runner.invoke(cli, ["purge", "--dry-run", "--json", "-s", STORE, "-n", "dry"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {"dry_run": True, "purged": None, "live": 2}

"""Fixtures of the core tests: an async test runner, stores, fake installed distributions.

``async def`` tests run in a fresh event loop each (the workspace's root conftest.py). Nothing
is mocked: stores run on the memory backend or on
:class:`core_testkit.DictBackend`, a complete backend made of plain dicts that tests can reach into.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from core_testkit import DictBackend, InstallDistribution

from sessionstore import SessionStore, open_store


@pytest.fixture
def dict_backend() -> DictBackend:
    return DictBackend()


@pytest.fixture
def store() -> Iterator[SessionStore]:
    """A private memory store, closed after the test."""
    opened = open_store("memory")
    yield opened
    asyncio.run(opened.aclose())


@pytest.fixture
def install_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InstallDistribution]:
    """Install a fake third-party distribution for this test only.

    ``install("fake_backend", {"fakedb": "fake_mod:create"}, {"fake_mod.py": "..."})`` writes a
    ``fake_backend-1.0.dist-info`` (METADATA and entry_points.txt registering the names in group
    ``sessionstore.backends``) and the module files into a directory put first on ``sys.path``,
    exactly as pip would leave them in site-packages.
    """
    modules: list[str] = []

    def install(
        distribution: str, entry_points: Mapping[str, str], files: Mapping[str, str]
    ) -> Path:
        site = tmp_path / f"site-{distribution}"
        info = site / f"{distribution}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n", encoding="utf-8"
        )
        lines = ["[sessionstore.backends]", *(f"{k} = {v}" for k, v in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for name, source in files.items():
            (site / name).write_text(textwrap.dedent(source), encoding="utf-8")
            modules.append(name.removesuffix(".py"))
        monkeypatch.syspath_prepend(str(site))
        return site

    yield install
    for module in modules:
        sys.modules.pop(module, None)

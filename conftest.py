"""Shared by every test directory of the workspace: ``async def`` tests without a plugin.

There is no pytest-asyncio here: each ``async def`` test runs to completion in a fresh event loop
with ``asyncio.run``, so async fixtures are not supported; fixtures stay plain.

``SESSIONSTORE_TEST_LOOP=uvloop`` runs them (and everything else in the process that makes an event
loop through asyncio's policy, such as the contract suite's runs) on uvloop's event loop instead,
and checks that each ``async def`` test did; the default is ``asyncio``. The report's header names
the loop.

Also here: the ``check_on_fast_profile`` fixture, for the tests of ``sessionstore check``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Coroutine
from typing import Any

import pytest

# `make long` sets it: the contract suite's runs in tests use Hypothesis's default profile.
FULL_CONTRACT = os.environ.get("SESSIONSTORE_FULL_CONTRACT", "").strip() == "1"

TEST_LOOP = os.environ.get("SESSIONSTORE_TEST_LOOP", "").strip() or "asyncio"
if TEST_LOOP == "uvloop":
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
elif TEST_LOOP != "asyncio":
    raise pytest.UsageError(
        f"SESSIONSTORE_TEST_LOOP must be 'asyncio' or 'uvloop', not {TEST_LOOP!r}"
    )


def pytest_report_header() -> str:
    return f"event loop: {TEST_LOOP}"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test to completion with ``asyncio.run``."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(_on_the_test_loop(pyfuncitem.obj(**arguments)))
    return True


async def _on_the_test_loop(test: Coroutine[Any, Any, object]) -> None:
    loop = type(asyncio.get_running_loop())
    if (loop.__module__.split(".")[0] == "uvloop") != (TEST_LOOP == "uvloop"):
        test.close()
        raise AssertionError(
            f"the test ran on {loop.__module__}.{loop.__qualname__}, not {TEST_LOOP}"
        )
    await test


_FAST_PROFILE_PLUGIN = """\
from hypothesis import settings

import sessionstore_contract.plugin  # registers the profile

settings.load_profile("sessionstore-fast")
"""


@pytest.fixture
def check_on_fast_profile(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> bool:
    """``sessionstore check`` in this test runs the contract suite on its ``sessionstore-fast``
    profile (every deterministic test, 10 examples per randomized one) instead of Hypothesis's
    default: the command's pytest loads a plugin (``PYTEST_PLUGINS``) that loads the profile.
    The backends' own contract runs keep the default profile; with
    ``SESSIONSTORE_FULL_CONTRACT=1`` (``make long``) nothing changes here. Returns whether the
    fast profile is on."""
    if FULL_CONTRACT:
        return False
    folder = tmp_path_factory.mktemp("fast-profile")
    (folder / "sessionstore_fast_profile.py").write_text(_FAST_PROFILE_PLUGIN, encoding="utf-8")
    path = [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    plugins = [*filter(None, [os.environ.get("PYTEST_PLUGINS")]), "sessionstore_fast_profile"]
    monkeypatch.setenv("PYTEST_PLUGINS", ",".join(plugins))
    return True

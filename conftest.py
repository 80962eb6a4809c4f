"""Shared by every test directory of the workspace: ``async def`` tests without a plugin.

There is no pytest-asyncio here: each ``async def`` test runs to completion in a fresh event loop
with ``asyncio.run``, so async fixtures are not supported; fixtures stay plain.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test to completion with ``asyncio.run``."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**arguments))
    return True

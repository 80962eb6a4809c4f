"""A pytest plugin that ``sessionstore check`` loads into its run of the contract suite: it reports
the run's progress, one line per event, on the file descriptor ``SESSIONSTORE_CHECK_PROGRESS_FD``
names (``total N`` once the tests are collected, then ``done`` after each test). Without that
variable it does nothing. Not part of the public API."""

from __future__ import annotations

import contextlib
import os
from typing import Any

PROGRESS_FD = "SESSIONSTORE_CHECK_PROGRESS_FD"


def _report(line: str) -> None:
    descriptor = os.environ.get(PROGRESS_FD)
    if not descriptor:
        return
    # The command may have stopped listening: the run goes on regardless.
    with contextlib.suppress(OSError, ValueError):
        os.write(int(descriptor), f"{line}\n".encode("ascii"))


def pytest_collection_finish(session: Any) -> None:
    _report(f"total {len(session.items)}")


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    _report("done")

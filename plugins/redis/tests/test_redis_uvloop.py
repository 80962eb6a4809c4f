"""The Redis backend on uvloop's event loop, the one uvicorn runs when it is installed.

The backend reads replies with a protocol of its own that takes over each connection's transport
(``sessionstore_redis.wire``), and a lone command polls the loop for its reply
(``sessionstore_redis.spinning``): both lean on how a loop's transports behave. So the modules
that exercise them, and the whole contract suite on one server, run again here on uvloop, in a
pytest of their own with ``SESSIONSTORE_TEST_LOOP=uvloop`` (the workspace's conftest.py then
makes every event loop of that process a uvloop one, and fails any ``async def`` test that ran on
another; the contract's process-race workers are fresh interpreters, on asyncio's loop). The
contract runs on
its ``sessionstore-fast`` profile (every deterministic test, fewer examples of the randomized
ones): what is tested here is the loop, and the examples' variety is tested on asyncio's.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from redis_servers import redis_server_binary

from sessionstore_contract import skip_or_fail

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
MODULES = [
    "test_redis_wire.py",
    "test_redis_spinning.py",
    "test_redis_coalescing.py",
    "test_redis_direct.py",
    "test_redis_close.py",
    "test_deadlines.py",
    "test_redis_contract.py::TestRedisSingleNode",
]
LIMIT = 900  # seconds: a generous bound on the run, which takes a minute or two


def test_the_wire_level_tests_and_the_contract_pass_on_uvloop() -> None:
    if redis_server_binary() is None:
        skip_or_fail("redis-server not found on PATH: install redis-server to run the Redis tests")
    if importlib.util.find_spec("uvloop") is None:
        skip_or_fail("uvloop is not installed (it is pinned in requirements/dev.txt)")
    env = {**os.environ, "SESSIONSTORE_TEST_LOOP": "uvloop"}
    env.pop("PYTEST_XDIST_WORKER", None)
    # A session of its own: on a timeout the whole group goes, the servers it started included.
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
        + ["--hypothesis-profile", "sessionstore-fast"]
        + [str(HERE / module) for module in MODULES],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = child.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
        raise AssertionError(f"the uvloop run took over {LIMIT} s:\n{output[-6000:]}") from None
    assert child.returncode == 0, output[-6000:]
    assert "event loop: uvloop" in output, output[:2000]
    passed = re.search(r"(\d+) passed", output)
    assert passed is not None, output[-2000:]
    assert int(passed[1]) > 100, output[-2000:]
    assert "skipped" not in output.splitlines()[-1], output[-2000:]

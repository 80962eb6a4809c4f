"""``--sessionstore-middleware``: the suite runs through the named middleware, every store with
new instances, in other processes too (the recipe carries them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sessionstore import Session, TransportType
from sessionstore.transforms import PayloadTransform
from sessionstore_contract import ContractTarget

HERE = Path(__file__).parent


class Reversing(PayloadTransform):
    """Stores every payload reversed: harmless when it reads them back the same way."""

    made = 0

    def __init__(self) -> None:
        Reversing.made += 1

    def seal_payload(self, session_id: str, payload: bytes) -> bytes:
        return payload[::-1]

    def open_payload(self, session_id: str, payload: bytes) -> bytes:
        return payload[::-1]


class Forgetful(Reversing):
    """Stores payloads reversed but forgets to turn them back: every read breaks."""

    def open_payload(self, session_id: str, payload: bytes) -> bytes:
        return payload


async def test_each_store_gets_new_middleware_and_the_recipe_carries_them() -> None:
    path = f"{__name__}:Reversing"
    spec = "memory://middleware-option"
    target = ContractTarget.from_spec(spec, middleware=[path])
    before = Reversing.made
    async with (
        target.open(namespace="n") as store,
        ContractTarget(spec).open(namespace="n") as plain,
    ):
        await store.create_session(Session(id="s", transport=TransportType.HTTP))
        assert (await store.get_session("s")).id == "s"
        stored = (await plain.dump_session("s")).record.payload
    assert stored[-1:] == b"\x92"  # the envelope's first byte, last: stored reversed
    assert Reversing.made == before + 1
    recipe = target.recipe()
    assert recipe["middleware"] == [path]
    assert ContractTarget.from_recipe(recipe).middleware == (path,)


def test_a_middleware_that_cannot_be_imported_is_a_usage_error() -> None:
    with pytest.raises(pytest.UsageError, match="--sessionstore-middleware 'nowhere:thing'"):
        ContractTarget.from_spec("memory", middleware=["nowhere:thing"])
    with pytest.raises(pytest.UsageError, match="expected module:callable"):
        ContractTarget.from_spec("memory", middleware=["no_colon"])


def test_the_suite_runs_through_the_middleware_given_on_the_command_line(tmp_path: Path) -> None:
    plan = [
        [
            *("-p", "no:cacheprovider", "-q", "--pyargs", "sessionstore_contract"),
            *("--sessionstore-backend", "memory", "-k", "test_roundtrip_create_get"),
            *("--sessionstore-middleware", f"test_middleware_option:{middleware}"),
        ]
        for middleware in ("Reversing", "Forgetful")
    ]
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    python_path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    process = subprocess.run(
        [sys.executable, str(HERE / "suite_runner.py"), str(plan_file)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": python_path},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    faithful, broken = json.loads(process.stdout)
    assert faithful["returncode"] == 0, faithful["output"][-2000:]
    assert broken["returncode"] == 1, broken["output"][-2000:]
    assert "CorruptRecordError" in broken["output"]

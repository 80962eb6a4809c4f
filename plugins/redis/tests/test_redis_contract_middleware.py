"""The contract suite on Redis through the payload middleware, as a backend author would run it
(``--sessionstore-middleware``): encryption and compression stacked (compression outermost) on the
sessionstore-fast profile; with ``SESSIONSTORE_FULL_CONTRACT=1`` (``make long``) encryption,
compression and both, each on Hypothesis's default profile. The runs go through
``contract_tests/tests/suite_runner.py`` in one interpreter, with a public test key in its
environment only."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).parents[3] / "contract_tests" / "tests" / "suite_runner.py"
TEST_KEYS = "1ohJgZjND7a72iLUQbp1PaZtgVM49oY2r9QklQqzJUI="  # public: protects nothing
ENCRYPTED = [
    "--sessionstore-middleware",
    "sessionstore.encryption:EncryptionMiddleware.from_environment",
]
COMPRESSED = ["--sessionstore-middleware", "sessionstore.compression:CompressionMiddleware"]


def test_the_contract_holds_through_encryption_and_compression(
    redis_url: str, tmp_path: Path
) -> None:
    full = os.environ.get("SESSIONSTORE_FULL_CONTRACT") == "1"
    stacks = [ENCRYPTED, COMPRESSED, ENCRYPTED + COMPRESSED] if full else [ENCRYPTED + COMPRESSED]
    profile = [] if full else ["--hypothesis-profile", "sessionstore-fast"]
    plan = [
        [
            "-p",
            "no:cacheprovider",
            "-q",
            "-rfE",
            "--pyargs",
            "sessionstore_contract",
            "--sessionstore-backend",
            redis_url,
            *profile,
            *stack,
        ]
        for stack in stacks
    ]
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    process = subprocess.run(
        [sys.executable, str(RUNNER), str(plan_file)],
        env={**os.environ, "SESSIONSTORE_ENCRYPTION_KEYS": TEST_KEYS},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    for arguments, run in zip(plan, json.loads(process.stdout), strict=True):
        assert run["returncode"] == 0, f"{arguments[-3:]}:\n{run['output'][-4000:]}"
        assert re.search(r"\d+ passed", run["output"]), run["output"][-2000:]

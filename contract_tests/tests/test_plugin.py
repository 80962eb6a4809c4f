"""The contract suite as a pytest plugin: options, errors, declared skips, subclassing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sessionstore_contract import ContractOverrideError, StoreContract


def _pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_overriding_a_contract_test_without_xfail_is_refused() -> None:
    with pytest.raises(ContractOverrideError, match=r"test_stale_update_raises_conflict"):

        class Cheating(StoreContract):
            def test_stale_update_raises_conflict(self) -> None:  # type: ignore[override]
                pass

    with pytest.raises(ContractOverrideError):

        class NoReason(StoreContract):
            @pytest.mark.xfail
            def test_stale_update_raises_conflict(self) -> None:  # type: ignore[override]
                pass


def test_overriding_with_xfail_and_a_reason_is_allowed() -> None:
    class Honest(StoreContract):
        @pytest.mark.xfail(reason="this backend keeps no versions")
        def test_stale_update_raises_conflict(self) -> None:  # type: ignore[override]
            pass

    assert "test_stale_update_raises_conflict" in vars(Honest)


def test_running_without_a_backend_is_a_usage_error(tmp_path: Path) -> None:
    run = _pytest("--pyargs", "sessionstore_contract", "-q", cwd=tmp_path)
    assert run.returncode != 0
    assert "--sessionstore-backend NAME_OR_URL" in run.stdout + run.stderr


def test_an_unknown_backend_is_named_with_the_installed_ones(tmp_path: Path) -> None:
    run = _pytest(
        "--pyargs",
        "sessionstore_contract",
        "-q",
        "-x",
        "--sessionstore-backend",
        "nosuch://x",
        cwd=tmp_path,
    )
    assert run.returncode == 1
    assert "no sessionstore backend named 'nosuch'" in run.stdout
    assert "memory" in run.stdout


def test_missing_capability_skips_with_the_declared_reason(tmp_path: Path) -> None:
    run = _pytest(
        "--pyargs",
        "sessionstore_contract",
        "-q",
        "-rs",
        "-k",
        "across_handles",
        "--sessionstore-backend",
        "memory",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout
    assert "1 skipped" in run.stdout
    assert "memory lacks shared_handles: each open_store('memory') is a private store" in run.stdout


def test_backend_options_reach_the_backend(tmp_path: Path) -> None:
    accepted = _pytest(
        "--pyargs",
        "sessionstore_contract",
        "-q",
        "-k",
        "batch_get_keeps",  # a few sessions (the size-limit test needs thousands)
        "--sessionstore-backend",
        "memory",
        "--sessionstore-option",
        "max_sessions=1000",
        cwd=tmp_path,
    )
    assert accepted.returncode == 0, accepted.stdout
    refused = _pytest(
        "--pyargs",
        "sessionstore_contract",
        "-q",
        "-k",
        "batch_get",
        "--sessionstore-backend",
        "memory",
        "--sessionstore-option",
        "max_sessions=0",
        cwd=tmp_path,
    )
    assert refused.returncode == 1
    assert "max_sessions must be an int >= 1" in refused.stdout


def test_a_backend_author_subclasses_the_contract(tmp_path: Path) -> None:
    (tmp_path / "test_my_backend.py").write_text(
        "import pytest\n"
        "from sessionstore_contract import ContractTarget, StoreContract\n\n"
        "@pytest.fixture(scope='session')\n"
        "def sessionstore_target():\n"
        "    return ContractTarget.from_spec('memory://author')\n\n"
        "class TestMyBackend(StoreContract):\n"
        "    @pytest.mark.xfail(reason='demonstrating an allowed override', strict=True)\n"
        "    def test_delete_reports_whether_it_existed(self, sessionstore_target):\n"
        "        assert False\n"
    )
    run = _pytest(
        "-q", "-k", "roundtrip and not size_limit or stale or delete_reports", cwd=tmp_path
    )
    assert run.returncode == 0, run.stdout
    assert re.search(r"\b5 passed, \d+ deselected, 1 xfailed in", run.stdout), run.stdout

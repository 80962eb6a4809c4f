"""sessionstore-contract: the contract suite every sessionstore backend must pass.

Run it from the command line (``pytest --pyargs sessionstore_contract --sessionstore-backend
NAME_OR_URL``) or subclass :class:`StoreContract` in your own tests and provide a
``sessionstore_target`` fixture returning a :class:`ContractTarget`.

It also ships what its concurrency tests are made of, for a backend's own tests:
:func:`check` / :func:`assert_linearizable` decide whether a history of :class:`Operation` values
is linearizable against a sequential model (:class:`StoreModel` is the contract as one, and
:class:`RecordingClient` records a store's operations as such a history), and
:func:`run_in_processes` runs a scenario in several OS processes at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .histories import RecordingClient, StoreModel
    from .linearizability import (
        Operation,
        SearchLimitExceeded,
        Verdict,
        assert_linearizable,
        check,
        check_by_key,
    )
    from .processes import run_in_processes
    from .servers import in_ci, skip_or_fail
    from .stateful import run_state_machine
    from .suite import ContractOverrideError, StoreContract
    from .target import ContractTarget, ManualClock

__all__ = [
    "ContractOverrideError",
    "ContractTarget",
    "ManualClock",
    "Operation",
    "RecordingClient",
    "SearchLimitExceeded",
    "StoreContract",
    "StoreModel",
    "Verdict",
    "assert_linearizable",
    "check",
    "check_by_key",
    "in_ci",
    "run_in_processes",
    "run_state_machine",
    "skip_or_fail",
]

# Imported on first use, not with the package: pytest imports this package when it loads the
# plugin, before --hypothesis-profile is applied, and Hypothesis settings objects copy the active
# profile when they are created.
_HOMES = {
    "ContractOverrideError": "suite",
    "StoreContract": "suite",
    "run_state_machine": "stateful",
    "ContractTarget": "target",
    "ManualClock": "target",
    "in_ci": "servers",
    "Operation": "linearizability",
    "SearchLimitExceeded": "linearizability",
    "Verdict": "linearizability",
    "assert_linearizable": "linearizability",
    "check": "linearizability",
    "check_by_key": "linearizability",
    "RecordingClient": "histories",
    "StoreModel": "histories",
    "run_in_processes": "processes",
    "skip_or_fail": "servers",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)

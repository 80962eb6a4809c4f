"""sessionstore-contract: the contract suite every sessionstore backend must pass.

Run it from the command line (``pytest --pyargs sessionstore_contract --sessionstore-backend
NAME_OR_URL``) or subclass :class:`StoreContract` in your own tests and provide a
``sessionstore_target`` fixture returning a :class:`ContractTarget`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .servers import in_ci, skip_or_fail
    from .stateful import run_state_machine
    from .suite import ContractOverrideError, StoreContract
    from .target import ContractTarget, ManualClock

__all__ = [
    "ContractOverrideError",
    "ContractTarget",
    "ManualClock",
    "StoreContract",
    "in_ci",
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
    "skip_or_fail": "servers",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)

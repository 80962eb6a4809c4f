"""sessionstore-contract: the contract suite every sessionstore backend must pass.

Run it from the command line (``pytest --pyargs sessionstore_contract --sessionstore-backend
NAME_OR_URL``) or subclass :class:`StoreContract` in your own tests and provide a
``sessionstore_target`` fixture returning a :class:`ContractTarget`.
"""

from .stateful import run_state_machine
from .suite import ContractOverrideError, StoreContract
from .target import ContractTarget, ManualClock

__all__ = [
    "ContractOverrideError",
    "ContractTarget",
    "ManualClock",
    "StoreContract",
    "run_state_machine",
]

"""Collected by ``pytest --pyargs sessionstore_contract``: the whole contract, on the backend
chosen with ``--sessionstore-backend`` or ``--sessionstore-factory``."""

from sessionstore_contract.suite import StoreContract


class TestContract(StoreContract):
    """Every contract test against the command line's backend."""

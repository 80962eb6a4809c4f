"""The whole contract suite, as a backend author runs it, against a real PostgreSQL server, in a
fresh database of this test session (see conftest.py for where the server comes from)."""

from __future__ import annotations

import pytest

from sessionstore_contract import ContractTarget, StoreContract


class TestPostgres(StoreContract):
    @pytest.fixture(scope="class")
    @classmethod
    def sessionstore_target(cls, postgres_url: str) -> ContractTarget:
        return ContractTarget.from_spec(postgres_url)
